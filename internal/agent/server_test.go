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
	h := start(t, testConfig(t, "10.244.1.0/24"), bird)
	reloads := 0
	var reloadErr error
	srv := httptest.NewServer(h.a.Handler(func() error { reloads++; return reloadErr }))
	defer srv.Close()

	if code, body := get(t, srv, "GET", agentapi.PathHealthz); code != 200 || body != "ok\n" {
		t.Errorf("healthz = %d %q", code, body)
	}
	h.waitStatus("failure", func(s agentapi.Status) bool { return s.LastApply.Result == agentapi.ResultFailed })
	if code, body := get(t, srv, "GET", agentapi.PathReadyz); code != 503 || !strings.Contains(body, "bird does not answer") {
		t.Errorf("readyz with BIRD down = %d %q", code, body)
	}
	bird.set(func(b *fakeBird) { b.down = false })
	h.waitStatus("applied", applied("10.244.1.0/24"))
	if code, _ := get(t, srv, "GET", agentapi.PathReadyz); code != 200 {
		t.Errorf("readyz after apply = %d", code)
	}

	code, body := get(t, srv, "GET", agentapi.PathMetrics)
	for _, want := range []string{
		`roost_applies_total{result="failed"} `, `roost_applies_total{result="ok"} `,
		"roost_announced_prefixes 1", "roost_desired_prefixes 1", "roost_bird_up 1",
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
	var cf agentapi.Config
	_, body = get(t, srv, "GET", agentapi.PathConfig)
	if err := json.Unmarshal([]byte(body), &cf); err != nil || !strings.HasSuffix(cf.File, "/bird.conf") || !strings.Contains(cf.Rendered, "route 10.244.1.0/24 blackhole;") {
		t.Errorf("config = %+v (%v)", cf, err)
	}

	bird.take()
	if code, _ := get(t, srv, "POST", agentapi.PathReload); code != 200 || reloads != 1 {
		t.Errorf("reload = %d, reloads %d", code, reloads)
	}
	if got := bird.take(); len(got) != 1 || got[0] != "configure bird.conf [10.244.1.0/24]" {
		t.Errorf("reload caused %q, want one configure", got)
	}
	reloadErr = errors.New("config /etc/roost/agent.yaml: asn: must be set")
	if code, body := get(t, srv, "POST", agentapi.PathReload); code != 400 || !strings.Contains(body, "asn: must be set") {
		t.Errorf("failed reload = %d %q", code, body)
	}
	if code, _ := get(t, srv, "GET", agentapi.PathReload); code != http.StatusMethodNotAllowed {
		t.Errorf("GET reload = %d", code)
	}
}
