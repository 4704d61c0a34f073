package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/loaderapi"
	"github.com/roost-net/roost/internal/testenv"
)

// Outside the node: a client network on the node's uplink. vm is an
// external workload with app=employee; the stranger is in no source, so
// world to policy.
const (
	uplinkNodeIP = "198.51.100.1"
	vmIP         = "198.51.100.2"
	dbVIP        = "192.0.2.10"
	dbNodePort   = 30079
	servicesVIP  = `services:
  - name: db
    externalIPs: [192.0.2.10]
    ports: [{name: redis, port: 6379, targetPort: 6379, nodePort: 30079}]
    backends: [{ip: 10.244.1.10, node: node1}]
`
)

// TestPrivilegedLoaderUplink runs the roost-loader binary with xdpLB on the
// node's uplink and a services file giving db a VIP and a node port:
// an external workload with app=employee reaches db through both, a
// client in no source is dropped by db's policy (the backend sees the real
// client), the uplink section of /v1/services, roostctl services and
// /metrics say so, and a killed loader leaves the VIP served until the next
// one adopts the pins.
func TestPrivilegedLoaderUplink(t *testing.T) {
	n := newNode(t)
	vm, stranger := testenv.NetNS(t, "rlvm"), testenv.NetNS(t, "rlvm")
	uplink := testenv.Name("u")
	testenv.Run(t, "ip", "link", "add", uplink, "type", "veth", "peer", "name", uplink+"p")
	testenv.Run(t, "ip", "link", "set", uplink, "netns", n.ns)
	testenv.Run(t, "ip", "-n", n.ns, "addr", "add", uplinkNodeIP+"/24", "dev", uplink)
	testenv.Run(t, "ip", "-n", n.ns, "link", "set", uplink, "up")
	// vm is on the uplink's subnet; the stranger behind vm, which
	// routes for it (no bridge needed).
	testenv.Run(t, "ip", "link", "set", uplink+"p", "netns", vm)
	testenv.Run(t, "ip", "-n", vm, "addr", "add", vmIP+"/24", "dev", uplink+"p")
	testenv.Run(t, "ip", "-n", vm, "link", "set", uplink+"p", "up")
	testenv.Run(t, "ip", "-n", vm, "route", "add", "default", "via", uplinkNodeIP)
	testenv.Run(t, "ip", "netns", "exec", vm, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	testenv.Veth(t, vm, testenv.Name("s"), "198.51.101.1/24", stranger, testenv.Name("s"), "198.51.101.2/24")
	testenv.Run(t, "ip", "-n", stranger, "route", "add", "default", "via", "198.51.101.1")
	testenv.Run(t, "ip", "-n", n.ns, "route", "add", "198.51.101.0/24", "via", vmIP)
	strangerAddr := "198.51.101.2"

	dir := filepath.Dir(n.config)
	n.writeFile(t, filepath.Join(dir, "endpoints.yaml"), endpointsYAML+fmt.Sprintf("  - name: vm\n    ips: [%s]\n    labels: {app: employee}\n", vmIP))
	svcFile := filepath.Join(dir, "services.yaml")
	n.writeFile(t, svcFile, servicesVIP)
	conf, err := os.ReadFile(n.config)
	if err != nil {
		t.Fatal(err)
	}
	n.writeFile(t, n.config, string(conf)+fmt.Sprintf("servicesFile: %s\nxdpLB: {enabled: true, interfaces: [%s]}\n", svcFile, uplink))
	testenv.ServeHello(t, n.db, dbRedis)
	n.start(t)
	n.waitEnforced(t)

	vip := dbVIP + ":6379"
	nodePort := fmt.Sprintf("%s:%d", uplinkNodeIP, dbNodePort)
	served := func(step string) {
		t.Helper()
		for _, front := range []string{vip, nodePort} {
			var err error
			for range 40 { // the first sync follows the start
				if err = testenv.ConnectHello(vm, front, time.Second); err == nil {
					break
				}
				time.Sleep(250 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("%s: vm -> %s: %v", step, front, err)
			}
		}
		if err := testenv.ConnectHello(stranger, vip, time.Second); !errors.Is(err, testenv.ErrDropped) {
			t.Errorf("%s: %s -> %s: %v, want dropped by db's policy", step, strangerAddr, vip, err)
		}
	}
	served("started")
	// Dropped by db's policy, which saw the stranger's own address.
	if out, err := n.roostctl("drops"); err != nil || !strings.Contains(out, strangerAddr) {
		t.Errorf("roostctl drops: %v: no drop from %s:\n%s", err, strangerAddr, out)
	}

	var st loaderapi.Services
	if err := getJSON(apiAddr, "/v1/services", n.ns, &st); err != nil {
		t.Fatal(err)
	}
	u := st.Uplink
	if u == nil || u.Interfaces[uplink] != "generic" || u.Algorithm != "maglev" || u.MaglevSize != 65537 || u.Counters["local"] == 0 || u.Counters["reply-translated"] == 0 {
		t.Fatalf("GET /v1/services: uplink %+v", u)
	}
	kinds := map[string]string{}
	for _, f := range u.Frontends {
		kinds[f.Frontend] = f.Kind
	}
	for front, kind := range map[string]string{"tcp/" + vip: "vip", "tcp/" + nodePort: "nodeport", fmt.Sprintf("tcp/0.0.0.0:%d", dbNodePort): "nodeport"} {
		if kinds[front] != kind {
			t.Errorf("uplink frontend %s: kind %q, want %q (frontends %v)", front, kinds[front], kind, kinds)
		}
	}
	if out, err := n.roostctl("services"); err != nil || !strings.Contains(out, "uplink load balancer") || !strings.Contains(out, "tcp/"+vip) {
		t.Errorf("roostctl services: %v\n%s", err, out)
	}
	metrics, err := getBody(apiAddr, loaderapi.PathMetrics, n.ns)
	for _, want := range []string{`roost_uplink_lb_frontend_packets_total{frontend="tcp/` + vip + `",kind="vip"}`, `roost_uplink_lb_packets_total{reason="local"}`} {
		if err != nil || !strings.Contains(string(metrics), want) {
			t.Errorf("GET /metrics: %v: no %s", err, want)
		}
	}

	// The loader killed: the programs stay attached, the VIP served; the
	// next loader adopts the pins.
	n.kill()
	served("no loader")
	n.start(t)
	n.waitEnforced(t)
	served("restarted")
}
