package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/roost-net/roost/internal/loaderapi"
)

func TestServicesCommand(t *testing.T) {
	st := loaderapi.Services{
		File: "/etc/roost/services.yaml", Services: 1,
		Frontends: []loaderapi.ServiceFrontend{
			{Frontend: "tcp/10.96.0.10:6379", Backends: []string{"10.244.1.10:6379", "10.244.2.12:6379"}, Affinity: "3h0m0s", Connections: 4242},
			{Frontend: "udp/10.96.0.10:53", Backends: []string{}},
		},
		Error:    "services.yaml:3: services[0].clusterIPs[0]: bad",
		Counters: map[string]uint64{"translated": 12, "no-backend": 1},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/services", func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(st) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	out, err := roostctl("--loader", srv.URL, "services")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"services file: /etc/roost/services.yaml (1 services)",
		"last change refused (the last good set is served): services.yaml:3",
		"tcp/10.96.0.10:6379", "10.244.1.10:6379,10.244.2.12:6379", "3h0m0s",
		"udp/10.96.0.10:53", "(none: refused)", "translated", "12", "no-backend", "CONNECTIONS", "4242"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, err = roostctl("--loader", srv.URL, "services", "-o", "json")
	var got loaderapi.Services
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || got.Counters["translated"] != 12 || len(got.Frontends) != 2 {
		t.Errorf("services -o json: %v\n%s", err, out)
	}

	// A loader without the socket load balancer serves no /v1/services.
	empty := httptest.NewServer(http.NewServeMux())
	t.Cleanup(empty.Close)
	if _, err := roostctl("--loader", empty.URL, "services"); err == nil || !strings.Contains(err.Error(), "socketLB.enabled") {
		t.Errorf("no socket load balancer: %v, want it named", err)
	}
}
