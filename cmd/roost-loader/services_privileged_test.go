package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/loaderapi"
	"github.com/roost-net/roost/internal/socklb"
	"github.com/roost-net/roost/internal/testenv"
)

// The service of these tests: db's 6379 behind a cluster IP that is on no
// interface, reached only through the socket load balancer.
const (
	dbClusterIP = "10.96.0.10"
	servicesDB  = `services:
  - name: db
    clusterIPs: [10.96.0.10]
    ports: [{name: redis, port: 6379, targetPort: 6379}]
    backends: [{ip: 10.244.1.10, node: node1}]
`
)

// TestPrivilegedLoaderServices runs roost-loader with the socket load
// balancer attached to a cgroup holding only the test process, and the
// services file naming db behind a cluster IP: employee reaches db by the
// cluster IP, and guest, translated the same way, is still dropped by db's
// policy, which sees guest's own address (no NAT). A change of the file is
// served without a restart; the loader killed, the service still is; a new
// loader adopts the pins.
func TestPrivilegedLoaderServices(t *testing.T) {
	n := newNode(t)
	root, err := socklb.CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	cgroup := testenv.Cgroup(t, root)
	// ip netns exec mounts a sysfs of its own, without the cgroup mounts
	// under it: the loader gets the hierarchy mounted once more, outside
	// /sys, as a container would be given the host's.
	cgMount := t.TempDir()
	testenv.Run(t, "mount", "-t", "cgroup2", "none", cgMount)
	t.Cleanup(func() { testenv.Run(t, "umount", cgMount) })
	loaderCgroup := filepath.Join(cgMount, filepath.Base(cgroup))
	// The loader, started from the test, is in the cgroup too: it must be
	// gone before the cgroup is removed.
	t.Cleanup(n.kill)
	svcFile := filepath.Join(filepath.Dir(n.config), "services.yaml")
	n.writeFile(t, svcFile, servicesDB)
	conf, err := os.ReadFile(n.config)
	if err != nil {
		t.Fatal(err)
	}
	n.writeFile(t, n.config, string(conf)+fmt.Sprintf("servicesFile: %s\nsocketLB: {enabled: true, cgroup: %s}\n", svcFile, loaderCgroup))
	testenv.ServeHello(t, n.db, dbRedis)
	n.start(t)
	n.waitEnforced(t)

	front := dbClusterIP + ":6379"
	served := func(step string) {
		t.Helper()
		var err error
		for range 40 { // the first sync follows the start
			if err = testenv.ConnectHello(n.employee, front, time.Second); err == nil {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("%s: employee -> %s: %v", step, front, err)
		}
		if err := testenv.ConnectHello(n.guest, front, time.Second); !errors.Is(err, testenv.ErrDropped) {
			t.Errorf("%s: guest -> %s: %v, want dropped by db's policy", step, front, err)
		}
	}
	served("started")

	var st loaderapi.Services
	if err := getJSON(apiAddr, "/v1/services", n.ns, &st); err != nil {
		t.Fatal(err)
	}
	if st.Services != 1 || len(st.Frontends) != 1 || st.Frontends[0].Frontend != "tcp/"+front ||
		strings.Join(st.Frontends[0].Backends, ",") != dbRedis || st.Counters["translated"] == 0 {
		t.Errorf("GET /v1/services: %+v", st)
	}

	if out, err := n.roostctl("services"); err != nil || !strings.Contains(out, "tcp/"+front) || !strings.Contains(out, dbRedis) {
		t.Errorf("roostctl services: %v\n%s", err, out)
	}
	// /metrics has the socket load balancer's beside the policy's.
	metrics, err := getBody(apiAddr, loaderapi.PathMetrics, n.ns)
	for _, want := range []string{`roost_socket_lb_frontend_connections_total{frontend="tcp/` + front + `"}`,
		`roost_socket_lb_operations_total{reason="translated"}`, "roost_policy_ready 1"} {
		if err != nil || !strings.Contains(string(metrics), want) {
			t.Errorf("GET /metrics: %v: no %s:\n%s", err, want, metrics)
		}
	}

	// No backend: refused. Back: served, with no restart.
	n.writeFile(t, svcFile, strings.Replace(servicesDB, "backends: [{ip: 10.244.1.10, node: node1}]", "backends: []", 1))
	n.waitFor(t, "refused without backends", func() (bool, string) {
		err := testenv.ConnectHello(n.employee, front, time.Second)
		return err != nil && strings.Contains(err.Error(), "connection refused"), fmt.Sprint(err)
	})
	n.writeFile(t, svcFile, servicesDB)
	served("backend back")

	// A broken file keeps the last good set served.
	n.writeFile(t, svcFile, "services:\n  - name: db\n    clusterIPs: [10.96.0.999]\n")
	n.waitFor(t, "the broken file in /v1/services", func() (bool, string) {
		var st loaderapi.Services
		err := getJSON(apiAddr, "/v1/services", n.ns, &st)
		return err == nil && strings.Contains(st.Error, "clusterIPs"), fmt.Sprintf("%+v %v", st, err)
	})
	served("broken file")
	n.writeFile(t, svcFile, servicesDB)

	// The loader killed: the programs stay attached, the service served.
	n.kill()
	served("no loader")
	n.start(t)
	n.waitEnforced(t)
	served("restarted")
}

// getJSON GETs path from addr inside namespace ns and decodes the answer
// into v.
func getJSON(addr, path, ns string, v any) error {
	b, err := getBody(addr, path, ns)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// getBody GETs path from addr inside namespace ns. (http.Client dials on
// goroutines of its own, outside ns.)
func getBody(addr, path, ns string) ([]byte, error) {
	var c net.Conn
	if err := testenv.InNetNS(ns, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	}); err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET http://%s%s: %s: %s", addr, path, resp.Status, b)
	}
	return b, nil
}
