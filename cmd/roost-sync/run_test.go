package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/globalview"
	"github.com/roost-net/roost/internal/testenv"
)

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// config writes a sync.yaml with the given etcd endpoint and workloads
// file, plus extra, and returns its path.
func config(t *testing.T, endpoint, workloadsFile, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sync.yaml")
	writeFile(t, path, "name: lab\netcd: {endpoints: ['"+endpoint+"']}\nworkloadsFile: '"+workloadsFile+"'\n"+extra)
	return path
}

func TestHelp(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"--help"}, &out, &errb)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run --help = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"registers workloads outside Kubernetes", "PUT    /v1/workloads/NAMESPACE/NAME", "-dry-run", "-log-format"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("--help does not say %q:\n%s", want, errb.String())
		}
	}
}

func TestDryRun(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, "workloads:\n  - name: vm1\n    ips: [10.0.9.10, 'fd00:0:9::10']\n    labels: {app: employee}\n")
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "workloads:\n  - name: vm1\n    ips: [10.0.9.10]\n  - name: vm2\n    ips: [10.0.9.10]\n    labels: {io.cilium.k8s.policy.cluster: x}\n")
	tests := []struct {
		name     string
		args     []string
		wantErrs []string // each must be in the error; none for success
		wantOut  []string
	}{
		{
			name: "good",
			args: []string{"--dry-run", "--config", config(t, "http://10.0.8.10:2379", good, "cluster: prod\n")},
			wantOut: []string{
				"origin sync:lab, cluster prod, etcd http://10.0.8.10:2379\n",
				"workloads file " + good + ": 1 workloads\n",
				"  default/vm1  10.0.9.10, fd00:0:9::10\n    app=employee\n    io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=default\n" +
					"    io.cilium.k8s.policy.cluster=prod\n    io.kubernetes.pod.namespace=default\n",
			},
		},
		{
			name:    "missing workloads file",
			args:    []string{"--dry-run", "--config", config(t, "http://10.0.8.10:2379", filepath.Join(dir, "none.yaml"), "")},
			wantOut: []string{"origin sync:lab, cluster none", "none.yaml: missing, no workloads"},
		},
		{
			name: "bad workloads file",
			args: []string{"--dry-run", "--config", config(t, "http://10.0.8.10:2379", bad, "")},
			wantErrs: []string{
				bad + ":5: workloads[1].ips[0]: 10.0.9.10 is already an address of workload default/vm1",
				bad + ":6: workloads[1].labels.io.cilium.k8s.policy.cluster: keys under io.cilium.k8s. are derived",
			},
		},
		{
			name:     "bad config",
			args:     []string{"--dry-run", "--config", config(t, "etcd:2379", good, "leaseTTL: 1s\nlisten: nowhere\n")},
			wantErrs: []string{"config ", `etcd.endpoints[0]: "etcd:2379" must be a URL`, "leaseTTL: 1s must be whole seconds", `listen: "nowhere" is not host:port`},
		},
		{
			name:     "unknown config field",
			args:     []string{"--dry-run", "--config", config(t, "http://e:2379", good, "heartbeat: 10s\n")},
			wantErrs: []string{"line 4: field heartbeat not found"},
		},
		{name: "missing config", args: []string{"--dry-run", "--config", "/nonexistent/sync.yaml"}, wantErrs: []string{"/nonexistent/sync.yaml"}},
		{name: "bad log format", args: []string{"--log-format", "xml"}, wantErrs: []string{`--log-format "xml": want text or json`}},
		{name: "arguments", args: []string{"--dry-run", "extra"}, wantErrs: []string{`unexpected arguments ["extra"]`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(context.Background(), tt.args, &out, &errb)
			if len(tt.wantErrs) == 0 && err != nil {
				t.Fatalf("err = %v", err)
			}
			for _, w := range tt.wantErrs {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v\nwant it to contain %q", err, w)
				}
			}
			if len(tt.wantErrs) > 0 && out.Len() > 0 {
				t.Errorf("a failed dry run printed:\n%s", out.String())
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output:\n%s\nwant it to contain %q", out.String(), w)
				}
			}
		})
	}
}

// TestRun runs roost-sync against a real etcd: a workload registered over
// HTTP reaches a subscriber of the global view, and run returns when its
// context ends.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd; skipped with -short")
	}
	e := testenv.StartEtcd(t, 1)
	workloads := filepath.Join(t.TempDir(), "workloads.yaml")
	writeFile(t, workloads, "workloads:\n  - {name: vm1, ips: [10.0.9.10], labels: {app: employee}}\n")
	path := config(t, e.Endpoints[0], workloads, "listen: 127.0.0.1:0\nleaseTTL: 3s\n")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out bytes.Buffer
	var logs testenv.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--config", path, "--log-format", "json"}, &out, &logs) }()

	// The log says where it listens.
	var url string
	deadline := time.Now().Add(20 * time.Second)
	for url == "" {
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			var line struct{ Msg, Listen string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "roost-sync started" {
				url = "http://" + line.Listen
			}
		}
		select {
		case err := <-done:
			t.Fatalf("run = %v before it started; log:\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no start in the log within 20s:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	cfg := globalview.Default()
	cfg.Endpoints = e.Endpoints
	c, err := globalview.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	views := make(chan globalview.View, 100)
	sub := globalview.NewSubscriber(c, globalview.SubscriberOptions{}, func(v globalview.View) {
		select {
		case views <- v:
		default:
		}
	})
	sctx, scancel := context.WithCancel(context.Background())
	subDone := make(chan struct{})
	go func() { defer close(subDone); _ = sub.Run(sctx) }()
	defer func() { scancel(); <-subDone }()

	req, _ := http.NewRequest("PUT", url+"/v1/workloads/default/vm2", strings.NewReader(`{"ips":["10.0.9.20"],"labels":{"app":"web"}}`))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %s %s", resp.Status, body)
	}
	timeout := time.After(20 * time.Second)
	for seen := false; !seen; {
		select {
		case v := <-views:
			vm1, ok1 := v.Endpoints["sync:lab/default/vm1"]
			vm2, ok2 := v.Endpoints["sync:lab/default/vm2"]
			seen = ok1 && ok2 && vm1.Labels["app"] == "employee" && vm2.Labels["app"] == "web"
		case <-timeout:
			t.Fatalf("vm1 and vm2 not in the global view within 20s; log:\n%s", logs.String())
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run = %v after its context ended, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run still running 10s after its context ended")
	}
	if out.Len() > 0 {
		t.Errorf("run wrote to stdout: %s", out.String())
	}
}
