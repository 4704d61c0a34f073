package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/roost-net/roost/internal/loaderapi"
)

// fakeServices serves st at /v1/services, as roost-loader does.
func fakeServices(t *testing.T, st loaderapi.Services) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/services", func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(st) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func socketServices() loaderapi.Services {
	return loaderapi.Services{
		File: "/etc/roost/services.yaml", Services: 1,
		Frontends: []loaderapi.ServiceFrontend{
			{Frontend: "tcp/10.96.0.10:6379", Backends: []string{"10.244.1.10:6379", "10.244.2.12:6379"}, Affinity: "3h0m0s", Connections: 4242},
			{Frontend: "udp/10.96.0.10:53", Backends: []string{}},
		},
		Error:    "services.yaml:3: services[0].clusterIPs[0]: bad",
		Counters: map[string]uint64{"translated": 12, "no-backend": 1},
	}
}

func testUplink() *loaderapi.Uplink {
	return &loaderapi.Uplink{
		Interfaces: map[string]string{"eth1": "generic", "eth0": "native"},
		Algorithm:  "maglev", MaglevSize: 65537, Flows: 3,
		Frontends: []loaderapi.UplinkFrontend{
			{Frontend: "tcp/192.0.2.10:6379", Kind: "vip", Affinity: true, Backends: []loaderapi.UplinkBackend{
				{Addr: "10.244.1.10:6379", Local: true, State: "active"},
				{Addr: "10.244.2.12:6379", State: "draining"},
			}, Packets: 1200, Bytes: 98304, Connections: 14},
			{Frontend: "tcp/0.0.0.0:30080", Kind: "nodeport", Backends: []loaderapi.UplinkBackend{
				{Addr: "10.244.1.11:8080", Local: true, State: "active"},
			}, Packets: 10, Bytes: 600, Connections: 1},
			{Frontend: "udp/192.0.2.11:53", Kind: "vip", Backends: []loaderapi.UplinkBackend{}},
		},
		Counters: map[string]uint64{"pass": 90000, "local": 1150, "encapsulated": 60, "decapsulated": 0, "no-backend": 2,
			"not-served": 7, "decap-unknown-backend": 0, "malformed": 0, "reply-translated": 1100, "error": 0},
	}
}

func TestServicesCommand(t *testing.T) {
	st := socketServices()
	srv := fakeServices(t, st)

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
	// Without the uplink load balancer, no section of it, and the socket
	// one as it always was, without a heading.
	for _, unwanted := range []string{"uplink", "socket load balancer"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("output has %q without an uplink:\n%s", unwanted, out)
		}
	}
	out, err = roostctl("--loader", srv.URL, "services", "-o", "json")
	var got loaderapi.Services
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || got.Counters["translated"] != 12 || len(got.Frontends) != 2 {
		t.Errorf("services -o json: %v\n%s", err, out)
	}
	if strings.Contains(out, `"uplink"`) {
		t.Errorf("services -o json has an uplink without one:\n%s", out)
	}

	// A loader with neither load balancer serves no /v1/services.
	empty := httptest.NewServer(http.NewServeMux())
	t.Cleanup(empty.Close)
	_, err = roostctl("--loader", empty.URL, "services")
	if err == nil || !strings.HasPrefix(err.Error(), "roost-loader load-balances no services (socketLB.enabled and xdpLB.enabled in loader.yaml are both false): loader /v1/services: 404") {
		t.Errorf("no load balancer: %v, want both named", err)
	}
}

// TestServicesCommandUplink checks the output with both load balancers,
// and with the uplink one alone, line by line (runs of spaces folded), and
// that -o json carries the uplink whole.
func TestServicesCommandUplink(t *testing.T) {
	uplinkLines := []string{
		"uplink load balancer: maglev, table size 65537, 3 flows in the connection table",
		"interfaces: eth0 (native), eth1 (generic)",
		"FRONTEND KIND AFFINITY BACKENDS PACKETS CONNECTIONS",
		"tcp/192.0.2.10:6379 vip ClientIP 10.244.1.10:6379 (local, active), 10.244.2.12:6379 (remote, draining) 1200 (96.0 KiB) 14",
		"tcp/0.0.0.0:30080 nodeport - 10.244.1.11:8080 (local, active) 10 (600 B) 1",
		"udp/192.0.2.11:53 vip - (none: dropped) 0 (0 B) 0",
		"counters:",
		"decap-unknown-backend 0",
		"decapsulated 0",
		"encapsulated 60",
		"error 0",
		"local 1150",
		"malformed 0",
		"no-backend 2",
		"not-served 7",
		"pass 90000",
		"reply-translated 1100",
	}
	both := socketServices()
	both.Error, both.Services = "", 3
	both.Notes = []string{"service default/web: port http: backend 10.244.3.3 has no port http"}
	both.Uplink = testUplink()
	uplinkOnly := loaderapi.Services{File: "/etc/roost/services.yaml", Services: 2, Frontends: []loaderapi.ServiceFrontend{}, Uplink: testUplink()}
	tests := []struct {
		name string
		st   loaderapi.Services
		want []string
	}{
		{"both", both, append([]string{
			"services file: /etc/roost/services.yaml (3 services)",
			"note: service default/web: port http: backend 10.244.3.3 has no port http",
			"",
			"socket load balancer:",
			"FRONTEND BACKENDS AFFINITY CONNECTIONS",
			"tcp/10.96.0.10:6379 10.244.1.10:6379,10.244.2.12:6379 3h0m0s 4242",
			"udp/10.96.0.10:53 (none: refused) - 0",
			"counters:",
			"no-backend 1",
			"translated 12",
			"",
		}, uplinkLines...)},
		{"uplink only", uplinkOnly, append([]string{
			"services file: /etc/roost/services.yaml (2 services)",
			"",
		}, uplinkLines...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeServices(t, tt.st)
			out, err := roostctl("--loader", srv.URL, "services")
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			var got []string
			for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
				got = append(got, strings.Join(strings.Fields(line), " "))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("output (-want +got):\n%s\nfull output:\n%s", diff, out)
			}

			out, err = roostctl("--loader", srv.URL, "services", "-o", "json")
			var doc loaderapi.Services
			if err != nil || json.Unmarshal([]byte(out), &doc) != nil {
				t.Fatalf("services -o json: %v\n%s", err, out)
			}
			if diff := cmp.Diff(tt.st.Uplink, doc.Uplink); diff != "" {
				t.Errorf("services -o json: uplink (-want +got):\n%s", diff)
			}
			for _, want := range []string{`"uplink": {`, `"maglevSize": 65537`, `"kind": "nodeport"`, `"state": "draining"`, `"connections": 14`} {
				if !strings.Contains(out, want) {
					t.Errorf("services -o json lacks %s:\n%s", want, out)
				}
			}
		})
	}
}
