package agent

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/roost-net/roost/internal/agentapi"
)

func get(t *testing.T, srv *httptest.Server, method, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestHTTPAPI(t *testing.T) {
	bird := &fakeBird{boot: "b1", down: true}
	cfg := testConfig(t, "10.244.1.0/24")
	cfg.Peers[0].Password = "s3cret-md5"
	h := start(t, cfg, bird)
	reloads := 0
	var reloadErr error
	srv := httptest.NewServer(h.a.Handler())
	defer srv.Close()
	ctl := httptest.NewServer(h.a.ControlHandler(func() error { reloads++; return reloadErr }))
	defer ctl.Close()

	if code, body := get(t, srv, "GET", agentapi.PathHealthz); code != 200 || body != "ok\n" {
		t.Errorf("healthz = %d %q", code, body)
	}
	h.waitStatus("failure", func(s agentapi.Status) bool { return s.LastApply.Result == agentapi.ResultFailed })
	if code, body := get(t, srv, "GET", agentapi.PathReadyz); code != 503 || !strings.Contains(body, "bird does not answer") {
		t.Errorf("readyz with BIRD down = %d %q", code, body)
	}
	bird.set(func(b *fakeBird) { b.down = false })
	h.waitStatus("applied", applied("10.244.1.0/24"))
	h.waitStatus("exported", func(s agentapi.Status) bool { return s.Peers[0].Exported == 1 })
	if code, _ := get(t, srv, "GET", agentapi.PathReadyz); code != 200 {
		t.Errorf("readyz after apply = %d", code)
	}

	code, body := get(t, srv, "GET", agentapi.PathMetrics)
	for _, want := range []string{
		`roost_applies_total{result="failed"} `, `roost_applies_total{result="ok"} `,
		`roost_announced_prefixes{family="ipv4"} 1`, `roost_desired_prefixes{family="ipv4"} 1`, "roost_bird_up 1",
		"roost_agent_ready 1", "roost_apply_failures 0", "roost_bird_rollbacks_total 0",
		`roost_bgp_exported_prefixes{family="ipv4",neighbor="10.0.1.1",peer="tor1"} 1`,
		`roost_bgp_session_established{neighbor="10.0.1.1",peer="tor1"} 1`,
		`roost_bgp_session_state{neighbor="10.0.1.1",peer="tor1",state="Established"} 1`,
		"roost_last_apply_duration_seconds", "roost_apply_duration_seconds_bucket", "process_resident_memory_bytes",
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	var st agentapi.Status
	_, body = get(t, srv, "GET", agentapi.PathStatus)
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.Node != "node1" || len(st.Desired) != 1 || !st.Ready || st.Bird.Version != "2.0.12" {
		t.Errorf("status = %+v (%v)", st, err)
	}
	// The TCP listener serves neither the config nor reload.
	for _, p := range []string{"GET " + agentapi.PathConfig, "POST " + agentapi.PathReload} {
		method, path, _ := strings.Cut(p, " ")
		if code, body := get(t, srv, method, path); code != http.StatusNotFound && code != http.StatusMethodNotAllowed {
			t.Errorf("TCP %s = %d %q, want not served", p, code, body)
		}
	}
	// No secret in anything the TCP listener serves.
	for _, p := range []string{agentapi.PathStatus, agentapi.PathMetrics, agentapi.PathReadyz} {
		if _, body := get(t, srv, "GET", p); strings.Contains(body, "s3cret") {
			t.Errorf("%s shows the password", p)
		}
	}

	var cf agentapi.Config
	_, body = get(t, ctl, "GET", agentapi.PathConfig)
	if err := json.Unmarshal([]byte(body), &cf); err != nil || !strings.HasSuffix(cf.File, "/bird.conf") || !strings.Contains(cf.Rendered, "route 10.244.1.0/24 blackhole;") {
		t.Errorf("config = %+v (%v)", cf, err)
	}
	if strings.Contains(cf.Rendered, "s3cret") || !strings.Contains(cf.Rendered, `password "`+agentapi.Redacted+`"`) {
		t.Errorf("config not redacted:\n%s", cf.Rendered)
	}

	bird.take()
	if code, _ := get(t, ctl, "POST", agentapi.PathReload); code != 200 || reloads != 1 {
		t.Errorf("reload = %d, reloads %d", code, reloads)
	}
	if got := bird.take(); len(got) != 2 || !strings.HasPrefix(got[0], "configure tmp [10.244.1.0/24]") {
		t.Errorf("reload caused %q, want one configure and confirm", got)
	}
	reloadErr = errors.New("config /etc/roost/agent.yaml: asn: must be set")
	if code, body := get(t, ctl, "POST", agentapi.PathReload); code != 400 || !strings.Contains(body, "asn: must be set") {
		t.Errorf("failed reload = %d %q", code, body)
	}
	if code, _ := get(t, ctl, "GET", agentapi.PathReload); code != http.StatusMethodNotAllowed {
		t.Errorf("GET reload = %d", code)
	}
}

func TestMetricsWhenBirdDown(t *testing.T) {
	bird := &fakeBird{boot: "b1"}
	h := start(t, testConfig(t, "10.244.1.0/24"), bird)
	h.waitStatus("applied", applied("10.244.1.0/24"))
	srv := httptest.NewServer(h.a.Handler())
	defer srv.Close()
	bird.set(func(b *fakeBird) { b.down = true })
	h.waitStatus("bird down", func(s agentapi.Status) bool { return !s.Bird.Up })
	_, body := get(t, srv, "GET", agentapi.PathMetrics)
	if strings.Contains(body, "roost_bgp_session_established{") || strings.Contains(body, "roost_bgp_exported_prefixes{") {
		t.Errorf("session metrics still reported with BIRD down:\n%s", body)
	}
	for _, want := range []string{"roost_bird_up 0", "roost_agent_ready 0", `roost_bgp_session_state{neighbor="10.0.1.1",peer="tor1",state="unknown"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
