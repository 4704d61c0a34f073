package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/testenv"
)

// TestPillarKeysChecked renders the formula with a real salt-call: a pillar
// key the formula does not know fails the run when the states render (so
// state.show_sls and test=True fail too), naming the key and the nearest
// known one; a good pillar renders.
func TestPillarKeysChecked(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	s := newSalt(t, repo)
	good := func() map[string]any {
		return map[string]any{
			"asn": 65101, "router_id": "10.0.1.2", "pod_cidrs": []string{"10.244.1.0/24"},
			"peers": []map[string]any{{"name": "tor1", "address": "10.0.1.1", "asn": 65000, "hold_time": 9}},
			"agent": map[string]any{"blackhole_routes": true},
		}
	}
	// salt/pillar.example, which documents every key, passes the check.
	example, err := os.ReadFile(filepath.Join(repo, "salt", "pillar.example"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(s.pillars, "roost.sls"), string(example))
	if r := s.apply(t, "state.show_sls", "roost.config"); r.err != nil {
		t.Fatalf("salt/pillar.example does not render: %v\n%s", r.err, r.out)
	}
	s.setPillar(t, good())
	if r := s.apply(t, "state.show_sls", "roost.config"); r.err != nil {
		t.Fatalf("a good pillar does not render: %v\n%s", r.err, r.out)
	}
	tests := []struct {
		name   string
		change func(map[string]any)
		want   string
	}{
		{"top level", func(p map[string]any) { p["pod_cidr"] = p["pod_cidrs"]; delete(p, "pod_cidrs") },
			"roost:pod_cidr is not a key of the roost formula (did you mean roost:pod_cidrs?)"},
		{"nested", func(p map[string]any) { p["agent"] = map[string]any{"blackhole-routes": false} },
			"roost:agent:blackhole-routes is not a key of the roost formula (did you mean roost:agent:blackhole_routes?)"},
		{"peer", func(p map[string]any) { p["peers"].([]map[string]any)[0]["holdtime"] = 9 },
			"roost:peers:0:holdtime is not a key of the roost formula (did you mean roost:peers:0:hold_time?)"},
		{"peer nested", func(p map[string]any) { p["peers"].([]map[string]any)[0]["bfd"] = map[string]any{"intervall": "50ms"} },
			"roost:peers:0:bfd:intervall is not a key of the roost formula (did you mean roost:peers:0:bfd:interval?)"},
		{"two levels down", func(p map[string]any) {
			p["loader"] = map[string]any{"xdp_lb": map[string]any{"interface": []string{"eth0"}}}
		},
			"roost:loader:xdp_lb:interface is not a key of the roost formula (did you mean roost:loader:xdp_lb:interfaces?)"},
		{"not a mapping", func(p map[string]any) { p["peers"].([]map[string]any)[0]["graceful_restart"] = false },
			"roost:peers:0:graceful_restart must be a mapping"},
		{"letters swapped", func(p map[string]any) { p["dokcer"] = map[string]any{} },
			"roost:dokcer is not a key of the roost formula (did you mean roost:docker?)"},
		{"nothing close", func(p map[string]any) { p["zzz"] = 1 },
			"roost:zzz is not a key of the roost formula (known: agent, asn,"},
		{"global view's etcd", func(p map[string]any) {
			p["loader"] = map[string]any{"global_view": map[string]any{"etcd": map[string]any{"caFile": "/etc/roost/etcd/ca.pem"}}}
		},
			"roost:loader:global_view:etcd:caFile is not a key of the roost formula (did you mean roost:loader:global_view:etcd:ca_file?)"},
		{"sync", func(p map[string]any) { p["sync"] = map[string]any{"leaseTTL": "30s"} },
			"roost:sync:leaseTTL is not a key of the roost formula (did you mean roost:sync:lease_ttl?)"},
		{"sync's etcd", func(p map[string]any) {
			p["sync"] = map[string]any{"etcd": map[string]any{"endpoint": []string{"https://e:2379"}}}
		},
			"roost:sync:etcd:endpoint is not a key of the roost formula (did you mean roost:sync:etcd:endpoints?)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := good()
			tt.change(p)
			s.setPillar(t, p)
			for _, args := range [][]string{{"state.show_sls", "roost.config"}, {"state.apply", "roost", "test=True"}} {
				r := s.apply(t, args...)
				if r.err == nil || !strings.Contains(r.out, tt.want) {
					t.Errorf("%s: %v, want it refused with %q\n%s", strings.Join(args, " "), r.err, tt.want, r.out)
				}
				if len(r.changed()) > 0 {
					t.Errorf("%s changed or would change %v", strings.Join(args, " "), r.changed())
				}
			}
		})
	}
}

// fullPillar sets every key of a peer, and the communities, VIPs, drain,
// services and load balancers, each to a value other than its default.
func fullPillar() map[string]any {
	return map[string]any{
		"node": "node1", "asn": 65101, "router_id": "10.0.1.2", "pod_cidrs": []string{"10.244.1.0/24"},
		"peers": []map[string]any{
			{
				"name": "tor1", "address": "10.0.1.1", "asn": 65000, "password": "s3cret", "hold_time": 9,
				"keepalive_time": 3, "connect_retry_time": 5, "multihop": 2, "source_address": "10.0.1.2",
				"port": 1179, "passive": true, "med": 0,
				"bfd":              map[string]any{"interval": "50ms", "multiplier": 5},
				"graceful_restart": map[string]any{"enabled": true, "restart_time": 90},
				"communities":      []string{"65000:7", "4200000000:1:2"},
			},
			{
				"name": "tor2", "address": "fd00::1", "asn": 65000, "extended_next_hop": true,
				"bfd": map[string]any{}, "graceful_restart": map[string]any{"enabled": false},
			},
		},
		"communities": map[string]any{"pod_cidr": []string{"65000:100"}, "vip": []string{"65000:200"}},
		"vips":        map[string]any{"services": true, "table": 200},
		"drain":       map[string]any{"wait": "10s"},
		"services": []map[string]any{{
			"name": "db", "externalIPs": []string{"192.0.2.10"},
			"ports":          []map[string]any{{"name": "redis", "port": 6379}},
			"bgpCommunities": []string{"65000:300"},
			"backends":       []map[string]any{{"ip": "10.244.1.10", "node": "node1"}},
		}},
		"loader": map[string]any{
			"cluster":   "prod",
			"socket_lb": map[string]any{"enabled": true, "cgroup": "/sys/fs/cgroup/system.slice"},
			"xdp_lb":    map[string]any{"enabled": true, "interfaces": []string{"eth0", "eth1"}, "mode": "generic", "source_ipv4": "10.0.1.2"},
			"global_view": map[string]any{
				"enabled": true,
				"etcd": map[string]any{
					"endpoints": []string{"https://10.0.0.5:2379", "https://10.0.0.6:2379"},
					"ca_file":   "/etc/roost/etcd/ca.pem", "cert_file": "/etc/roost/etcd/client.pem", "key_file": "/etc/roost/etcd/client-key.pem",
					"dial_timeout": "2s", "request_timeout": "3s", "prefix": "/lab/v1/",
				},
				"publish": false, "publish_ttl": "20s", "sync_timeout": "45s",
			},
		},
		"sync": map[string]any{
			"enabled": true, "name": "vms",
			"etcd": map[string]any{
				"endpoints": []string{"https://10.0.0.5:2379"},
				"ca_file":   "/etc/roost/etcd/ca.pem", "cert_file": "/etc/roost/etcd/sync.pem", "key_file": "/etc/roost/etcd/sync-key.pem",
				"dial_timeout": "4s", "request_timeout": "6s", "prefix": "/lab/v1/",
			},
			"listen": "127.0.0.1:9582", "lease_ttl": "20s", "heartbeat_timeout": "15s", "cluster": "prod",
			"workloads": []map[string]any{
				{"name": "vm2", "namespace": "vms", "ips": []string{"192.168.50.20", "fd00:50::20"}, "labels": map[string]string{"app": "employee"}},
			},
		},
	}
}

// etcdFiles are the etcd TLS files fullPillar names, under /etc/roost.
var etcdFiles = []string{"etcd/ca.pem", "etcd/client.pem", "etcd/client-key.pem", "etcd/sync.pem", "etcd/sync-key.pem"}

// render renders the formula's template files/NAME.jinja with the pillar
// in place into dir/NAME, as roost.config stages it, and returns its path.
func (s *salt) render(t *testing.T, dir, name string) string {
	t.Helper()
	dest := filepath.Join(dir, name)
	r := s.apply(t, "cp.get_template", "salt://roost/files/"+name+".jinja", dest)
	if _, err := os.Stat(dest); r.err != nil || err != nil {
		t.Fatalf("rendering %s: %v %v\n%s", name, r.err, err, r.out)
	}
	return dest
}

// renderSet renders agent.yaml, loader.yaml, endpoints.yaml and
// services.yaml (and, with sync, sync.yaml and workloads.yaml) into a new
// directory that stands for /etc/roost, with the etcd TLS files of
// etcdFiles in it: the paths in loader.yaml and sync.yaml are moved there,
// as roost-check mounts the staged set, TLS files and all, at /etc/roost.
func (s *salt) renderSet(t *testing.T, sync bool) string {
	t.Helper()
	dir := t.TempDir()
	names := []string{"agent.yaml", "loader.yaml", "endpoints.yaml", "services.yaml"}
	if sync {
		names = append(names, "sync.yaml", "workloads.yaml")
	}
	for _, name := range names {
		s.render(t, dir, name)
	}
	if err := os.Mkdir(filepath.Join(dir, "policies"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"loader.yaml", "sync.yaml"} {
		if path := filepath.Join(dir, name); slices.Contains(names, name) {
			writeFile(t, path, strings.ReplaceAll(mustRead(t, path), "/etc/roost/", dir+"/"))
		}
	}
	placeEtcdFiles(t, dir)
	return dir
}

// placeEtcdFiles writes the files of etcdFiles into dir, which stands for
// /etc/roost: a CA's certificate, and client certificates and keys it
// signed.
func placeEtcdFiles(t *testing.T, dir string) {
	t.Helper()
	ca := testenv.NewCA(t)
	client, clientKey := ca.Issue(t, "roost-loader", false)
	sync, syncKey := ca.Issue(t, "roost-sync", false)
	if err := os.MkdirAll(filepath.Join(dir, "etcd"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i, src := range []string{ca.CertFile, client, clientKey, sync, syncKey} {
		if err := os.WriteFile(filepath.Join(dir, etcdFiles[i]), []byte(mustRead(t, src)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// dryRun runs a binary's --dry-run on config.
func dryRun(bin, binary, config string) (string, error) {
	out, err := exec.Command(filepath.Join(bin, binary), "--dry-run", "--config", config).CombinedOutput()
	return string(out), err
}

// readYAML decodes the YAML file at path.
func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(mustRead(t, path)), &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// TestPillarRendersEveryKey renders the formula's config files with a real
// salt-call from a pillar that sets every key: each lands in agent.yaml,
// loader.yaml and services.yaml under its own name, and the binaries'
// --dry-run (what roost-check runs on the staged set) accepts the set and
// renders the options into bird.conf. A bad value is refused by the
// dry-run with its field path, and salt/pillar.example renders a set the
// dry-runs accept too.
func TestPillarRendersEveryKey(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	s := newSalt(t, repo)
	bin := buildBinaries(t)

	s.setPillar(t, fullPillar())
	dir := s.renderSet(t, true)
	agent := readYAML(t, filepath.Join(dir, "agent.yaml"))
	wantAgent := map[string]any{
		"peers": []any{
			map[string]any{
				"name": "tor1", "address": "10.0.1.1", "asn": 65000, "password": "s3cret", "holdTime": 9,
				"keepaliveTime": 3, "connectRetryTime": 5, "multihop": 2, "sourceAddress": "10.0.1.2",
				"port": 1179, "passive": true, "med": 0,
				"bfd":             map[string]any{"interval": "50ms", "multiplier": 5},
				"gracefulRestart": map[string]any{"enabled": true, "restartTime": 90},
				"communities":     []any{"65000:7", "4200000000:1:2"},
			},
			map[string]any{
				"name": "tor2", "address": "fd00::1", "asn": 65000, "extendedNextHop": true,
				"bfd": map[string]any{}, "gracefulRestart": map[string]any{"enabled": false},
			},
		},
		"communities": map[string]any{"podCIDR": []any{"65000:100"}, "vip": []any{"65000:200"}},
		"vips":        map[string]any{"servicesFile": "/etc/roost/services.yaml", "kubernetes": false, "table": 200},
		"drain":       map[string]any{"wait": "10s", "stateFile": "/var/lib/roost/drain.json"},
	}
	for key, want := range wantAgent {
		if !reflect.DeepEqual(agent[key], want) {
			t.Errorf("agent.yaml %s = %#v, want %#v", key, agent[key], want)
		}
	}
	loader := readYAML(t, filepath.Join(dir, "loader.yaml"))
	wantLoader := map[string]any{
		"servicesFile": dir + "/services.yaml",
		"socketLB":     map[string]any{"enabled": true, "cgroup": "/host/sys/fs/cgroup/system.slice"},
		"xdpLB": map[string]any{"enabled": true, "interfaces": []any{"eth0", "eth1"}, "mode": "generic",
			"maglevSize": 65537, "sourceIPv4": "10.0.1.2"},
		"cluster": "prod",
		"globalView": map[string]any{
			"etcd": map[string]any{
				"endpoints": []any{"https://10.0.0.5:2379", "https://10.0.0.6:2379"},
				"caFile":    dir + "/etcd/ca.pem", "certFile": dir + "/etcd/client.pem", "keyFile": dir + "/etcd/client-key.pem",
				"dialTimeout": "2s", "requestTimeout": "3s", "prefix": "/lab/v1/",
			},
			"publish": false, "publishTTL": "20s", "syncTimeout": "45s",
		},
	}
	for key, want := range wantLoader {
		if !reflect.DeepEqual(loader[key], want) {
			t.Errorf("loader.yaml %s = %#v, want %#v", key, loader[key], want)
		}
	}
	if got := readYAML(t, filepath.Join(dir, "services.yaml"))["services"]; len(got.([]any)) != 1 {
		t.Errorf("services.yaml services = %#v, want the pillar's one service", got)
	}
	wantSync := map[string]any{
		"name": "vms",
		"etcd": map[string]any{
			"endpoints": []any{"https://10.0.0.5:2379"},
			"caFile":    dir + "/etcd/ca.pem", "certFile": dir + "/etcd/sync.pem", "keyFile": dir + "/etcd/sync-key.pem",
			"dialTimeout": "4s", "requestTimeout": "6s", "prefix": "/lab/v1/",
		},
		"workloadsFile": dir + "/workloads.yaml",
		"listen":        "127.0.0.1:9582", "leaseTTL": "20s", "heartbeatTimeout": "15s", "cluster": "prod",
	}
	if got := readYAML(t, filepath.Join(dir, "sync.yaml")); !reflect.DeepEqual(got, wantSync) {
		t.Errorf("sync.yaml = %#v, want %#v", got, wantSync)
	}
	wantWorkloads := []any{map[string]any{"name": "vm2", "namespace": "vms", "ips": []any{"192.168.50.20", "fd00:50::20"},
		"labels": map[string]any{"app": "employee"}}}
	if got := readYAML(t, filepath.Join(dir, "workloads.yaml"))["workloads"]; !reflect.DeepEqual(got, wantWorkloads) {
		t.Errorf("workloads.yaml workloads = %#v, want %#v", got, wantWorkloads)
	}
	env := mustRead(t, s.render(t, t.TempDir(), "compose.env"))
	for _, want := range []string{"\nCOMPOSE_PROFILES=sync\n", "\nROOST_SYNC_LISTEN=127.0.0.1:9582\n"} {
		if !strings.Contains(env, want) {
			t.Errorf(".env lacks %q:\n%s", strings.TrimSpace(want), env)
		}
	}

	out, err := dryRun(bin, "roost-agent", filepath.Join(dir, "agent.yaml"))
	if err != nil {
		t.Fatalf("roost-agent --dry-run refuses the rendered agent.yaml: %v\n%s\n%s", err, out, mustRead(t, filepath.Join(dir, "agent.yaml")))
	}
	for _, want := range []string{
		"neighbor 10.0.1.1 port 1179 as 65000;", "local 10.0.1.2 as 65101;", "multihop 2;", "passive on;",
		"hold time 9;", "keepalive time 3;", "connect retry time 5;",
		"bfd { min rx interval 50 ms; min tx interval 50 ms; multiplier 5; };", "graceful restart time 90;",
		"bgp_med = 0;", "bgp_community.add((65000, 7));", "bgp_large_community.add((4200000000, 1, 2));",
		"bfd { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };", "graceful restart off;",
		"extended next hop on;", "kernel table 200;", "(65000, 100)", "(65000, 200)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the dry-run's bird.conf lacks %q:\n%s", want, out)
		}
	}
	out, err = dryRun(bin, "roost-loader", filepath.Join(dir, "loader.yaml"))
	if err != nil || !strings.Contains(out, "default/db (bgpCommunities 65000:300)") || !strings.Contains(out, "externalIP 192.0.2.10:6379/TCP") {
		t.Errorf("roost-loader --dry-run on the rendered set: %v, want the service db\n%s", err, out)
	}
	out, err = dryRun(bin, "roost-sync", filepath.Join(dir, "sync.yaml"))
	for _, want := range []string{"origin sync:vms, cluster prod, etcd https://10.0.0.5:2379", "1 workloads",
		"vms/vm2  192.168.50.20, fd00:50::20", "app=employee", "io.cilium.k8s.policy.cluster=prod"} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("roost-sync --dry-run on the rendered set: %v, want %q\n%s", err, want, out)
		}
	}

	// A community that is not one: the dry-run names the field.
	bad := fullPillar()
	bad["peers"].([]map[string]any)[0]["communities"] = []string{"65000:7", "65536:1"}
	s.setPillar(t, bad)
	path := s.render(t, t.TempDir(), "agent.yaml")
	out, err = dryRun(bin, "roost-agent", path)
	if want := `peers[0].communities[1]: "65536:1": part "65536" is larger than 16 bits`; err == nil || !strings.Contains(out, want) {
		t.Errorf("roost-agent --dry-run with community 65536:1: %v, want it refused with %q\n%s", err, want, out)
	}

	// Bad values of the global view and of roost-sync: each dry-run names
	// every field it refuses.
	bad = fullPillar()
	gv := bad["loader"].(map[string]any)["global_view"].(map[string]any)
	gv["publish_ttl"] = "2500ms"
	gv["etcd"].(map[string]any)["endpoints"] = []string{"https://10.0.0.5:2379", "http://10.0.0.6:2379"}
	gv["etcd"].(map[string]any)["prefix"] = "roost"
	sync := bad["sync"].(map[string]any)
	sync["name"], sync["lease_ttl"], sync["listen"] = "VMs", 30, "localhost:9482"
	sync["etcd"].(map[string]any)["request_timeout"] = "soon"
	s.setPillar(t, bad)
	dir = s.renderSet(t, true)
	out, err = dryRun(bin, "roost-loader", filepath.Join(dir, "loader.yaml"))
	for _, want := range []string{"globalView.publishTTL: 2.5s must be whole seconds, at least 3s",
		"globalView.etcd.endpoints: mixes http and https", `globalView.etcd.prefix: "roost" must start and end with '/'`} {
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("roost-loader --dry-run with bad global_view values: %v, want %q\n%s", err, want, out)
		}
	}
	out, err = dryRun(bin, "roost-sync", filepath.Join(dir, "sync.yaml"))
	for _, want := range []string{`name: "VMs" must be 1-32 lower-case letters`, `leaseTTL: "30" is not a duration`,
		`listen: "localhost:9482": host must be an IP address`, `etcd.requestTimeout: "soon" is not a duration`} {
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("roost-sync --dry-run with bad sync values: %v, want %q\n%s", err, want, out)
		}
	}
	bad = fullPillar()
	bad["sync"].(map[string]any)["workloads"] = []map[string]any{
		{"name": "vm2", "ips": []string{"192.168.50.300"}, "labels": map[string]any{"app": "employee"}},
		{"name": "vm3", "ip": "192.168.50.30", "labels": map[string]any{"managed": true}},
	}
	s.setPillar(t, bad)
	dir = s.renderSet(t, true)
	out, err = dryRun(bin, "roost-sync", filepath.Join(dir, "sync.yaml"))
	for _, want := range []string{`workloads[0].ips[0]: "192.168.50.300" is not an IP address`,
		"workloads[1].ip: unknown field: did you mean ips?", "workloads[1].labels.managed: must be a string"} {
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("roost-sync --dry-run with bad workloads: %v, want %q\n%s", err, want, out)
		}
	}

	// salt/pillar.example, which documents every key.
	writeFile(t, filepath.Join(s.pillars, "roost.sls"), mustRead(t, filepath.Join(repo, "salt", "pillar.example")))
	dir = s.renderSet(t, false)
	for _, binary := range []string{"roost-agent", "roost-loader"} {
		config := filepath.Join(dir, strings.TrimPrefix(binary, "roost-")+".yaml")
		if out, err := dryRun(bin, binary, config); err != nil {
			t.Errorf("%s --dry-run refuses what salt/pillar.example renders: %v\n%s", binary, err, out)
		}
	}
}

// TestPillarUnquotedCommunity: YAML 1.1, Salt's pillar reader, takes an
// unquoted 65000:7 for the base-60 number 3900007; the formula refuses it
// before anything changes, saying to quote it.
func TestPillarUnquotedCommunity(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	s := newSalt(t, repo)
	writeFile(t, filepath.Join(s.pillars, "roost.sls"), `roost:
  asn: 65101
  router_id: 10.0.1.2
  pod_cidrs: [10.244.1.0/24]
  peers:
    - {name: tor1, address: 10.0.1.1, asn: 65000, communities: ['65000:8', 65000:7]}
  communities: {pod_cidr: [65000:9]}
  loader: {socket_lb: {enabled: true, cgroup: /cgroup}}
`)
	for _, args := range [][]string{{"state.show_sls", "roost.config"}, {"state.apply", "roost", "test=True"}} {
		r := s.apply(t, args...)
		for _, want := range []string{
			`roost:peers:0:communities:1 is 3900007, not a community: quote each community ("65000:7")`,
			`roost:communities:pod_cidr:0 is 3900009, not a community`,
			`roost:loader:socket_lb:cgroup is /cgroup, not /sys/fs/cgroup or a directory under it`,
		} {
			if r.err == nil || !strings.Contains(r.out, want) {
				t.Errorf("%s: %v, want it refused with %q\n%s", strings.Join(args, " "), r.err, want, r.out)
			}
		}
		if len(r.changed()) > 0 {
			t.Errorf("%s changed or would change %v", strings.Join(args, " "), r.changed())
		}
	}
}

// TestPillarEtcdFiles: the etcd TLS files are the node's, named by path
// under /etc/roost, which the containers mount. A path elsewhere, or one
// the formula manages, stops the run when the states render, before
// anything changes. Good paths are staged as copies that the check
// (roost-validate) waits for, and a change of one restarts the container
// that reads it, the loader or roost-sync, and only that one.
func TestPillarEtcdFiles(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	s := newSalt(t, repo)
	bad := fullPillar()
	gv := bad["loader"].(map[string]any)["global_view"].(map[string]any)["etcd"].(map[string]any)
	gv["ca_file"], gv["cert_file"] = "/srv/pki/ca.pem", "/etc/roost/policies/client.pem"
	bad["sync"].(map[string]any)["etcd"].(map[string]any)["key_file"] = "/etc/roost/sync.yaml"
	s.setPillar(t, bad)
	for _, args := range [][]string{{"state.show_sls", "roost.config"}, {"state.apply", "roost", "test=True"}} {
		r := s.apply(t, args...)
		for _, want := range []string{
			"roost:loader:global_view:etcd:ca_file is /srv/pki/ca.pem, not a file under /etc/roost: the containers see only /etc/roost",
			"roost:loader:global_view:etcd:cert_file is /etc/roost/policies/client.pem, which the formula manages",
			"roost:sync:etcd:key_file is /etc/roost/sync.yaml, which the formula manages",
		} {
			if r.err == nil || !strings.Contains(r.out, want) {
				t.Errorf("%s: %v, want it refused with %q\n%s", strings.Join(args, " "), r.err, want, r.out)
			}
		}
		if len(r.changed()) > 0 {
			t.Errorf("%s changed or would change %v", strings.Join(args, " "), r.changed())
		}
	}

	s.setPillar(t, fullPillar())
	r := s.apply(t, "state.show_sls", "roost")
	var doc struct {
		Local map[string]map[string]any `json:"local"`
	}
	if err := json.Unmarshal([]byte(r.out), &doc); r.err != nil || err != nil {
		t.Fatalf("state.show_sls roost: %v %v\n%s", r.err, err, r.out)
	}
	// args returns a state's arguments, each list argument (require,
	// onchanges) as "kind: id" strings.
	args := func(id string) map[string]any {
		t.Helper()
		st, ok := doc.Local[id]
		if !ok {
			t.Fatalf("state.show_sls roost has no state %s", id)
		}
		out := map[string]any{}
		for _, v := range st {
			list, ok := v.([]any)
			if !ok {
				continue
			}
			for _, arg := range list {
				kv, ok := arg.(map[string]any)
				if !ok {
					continue
				}
				for k, v := range kv {
					if reqs, ok := v.([]any); ok && k != "names" {
						var ids []string
						for _, req := range reqs {
							for kind, id := range req.(map[string]any) {
								ids = append(ids, fmt.Sprintf("%s: %v", kind, id))
							}
						}
						out[k] = ids
						continue
					}
					out[k] = v
				}
			}
		}
		return out
	}
	for _, rel := range etcdFiles {
		path := "/etc/roost/" + rel
		a := args("roost-stage-" + path)
		if a["name"] != "/var/lib/roost/stage/"+rel || a["source"] != path || a["show_changes"] != false || a["mode"] != "0600" {
			t.Errorf("roost-stage-%s: %v, want %s copied to the stage, 0600, its contents never shown", path, a, path)
		}
		if !slices.Contains(args("roost-validate")["require"].([]string), "file: roost-stage-"+path) {
			t.Errorf("roost-validate does not wait for the staged copy of %s", path)
		}
	}
	restarts := map[string][]string{
		"roost-loader-restart": {"file: roost-loader.yaml", "file: roost-stage-/etc/roost/etcd/ca.pem",
			"file: roost-stage-/etc/roost/etcd/client.pem", "file: roost-stage-/etc/roost/etcd/client-key.pem"},
		"roost-sync-restart": {"file: roost-sync.yaml", "file: roost-stage-/etc/roost/etcd/ca.pem",
			"file: roost-stage-/etc/roost/etcd/sync.pem", "file: roost-stage-/etc/roost/etcd/sync-key.pem"},
	}
	for id, want := range restarts {
		if got := args(id)["onchanges"]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s runs on changes of %v, want %v", id, got, want)
		}
	}
}

// TestPillarDrainStates runs the commands roost.drain and roost.undrain
// render, with the roostctl of this tree in place of the roost-agent
// container's, against a fake agent: each state's unless holds exactly
// when the agent's drain state is the one it would bring about, and the
// command itself is one roostctl takes, with the pillar's wait, or the one
// given on the command line.
func TestPillarDrainStates(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	s := newSalt(t, repo)
	bin := buildBinaries(t)

	// The agent: status on TCP, drain and undrain on a unix socket.
	var state, wait string
	var mu sync.Mutex
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != agentapi.PathStatus {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(agentapi.Status{Drain: agentapi.Drain{State: state},
			Peers: []agentapi.Peer{{Name: "tor1", State: "drained"}}})
	}))
	defer api.Close()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	control := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case agentapi.PathDrain:
			var req agentapi.DrainRequest
			json.NewDecoder(r.Body).Decode(&req)
			wait, state = req.Wait, agentapi.DrainDrained
		case agentapi.PathUndrain:
			state = agentapi.DrainNone
		default:
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(agentapi.Drain{State: state})
	})}
	go control.Serve(ln)
	defer control.Close()

	p := map[string]any{
		"asn": 65101, "router_id": "10.0.1.2", "pod_cidrs": []string{"10.244.1.0/24"},
		"peers": []map[string]any{{"name": "tor1", "address": "10.0.1.1", "asn": 65000}},
		"agent": map[string]any{"listen": strings.TrimPrefix(api.URL, "http://")},
		"drain": map[string]any{"wait": "10s"},
	}
	s.setPillar(t, p)
	cmds := func(args ...string) map[string]map[string]string {
		t.Helper()
		r := s.apply(t, append([]string{"state.show_sls", "roost.drain,roost.undrain"}, args...)...)
		var doc struct {
			Local map[string]struct {
				Cmd []json.RawMessage `json:"cmd"`
			} `json:"local"`
		}
		if err := json.Unmarshal([]byte(r.out), &doc); r.err != nil || err != nil {
			t.Fatalf("state.show_sls roost.drain,roost.undrain: %v %v\n%s", r.err, err, r.out)
		}
		out := map[string]map[string]string{}
		for id, st := range doc.Local {
			out[id] = map[string]string{}
			for _, arg := range st.Cmd {
				var kv map[string]any
				if json.Unmarshal(arg, &kv) != nil {
					continue
				}
				for k, v := range kv {
					if s, ok := v.(string); ok {
						out[id][k] = s
					}
				}
			}
		}
		return out
	}
	// local is the command run on the host instead: this tree's roostctl,
	// and the fake agent's control socket.
	local := func(cmd string) string {
		t.Helper()
		const prefix = "docker exec roost-agent roostctl "
		if !strings.HasPrefix(cmd, prefix) || !strings.Contains(cmd, " --agent-socket /run/roost/agent.sock ") {
			t.Fatalf("%q does not run roostctl in the roost-agent container on its control socket", cmd)
		}
		cmd = strings.Replace(cmd, prefix, filepath.Join(bin, "roostctl")+" ", 1)
		return strings.Replace(cmd, "/run/roost/agent.sock", sock, 1)
	}
	sh := func(cmd string) (string, error) {
		out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
		return string(out), err
	}
	states := cmds()
	drain, undrain := states["roost-drain"], states["roost-undrain"]
	if drain == nil || undrain == nil {
		t.Fatalf("roost.drain and roost.undrain render %v, want states roost-drain and roost-undrain", states)
	}
	if want := " drain --wait 10s"; !strings.HasSuffix(drain["name"], want) {
		t.Errorf("roost.drain runs %q, want it to end with %q", drain["name"], want)
	}
	for _, st := range []string{agentapi.DrainNone, agentapi.DrainDraining, agentapi.DrainDrained} {
		mu.Lock()
		state = st
		mu.Unlock()
		for _, c := range []struct {
			id, skipWhen string
			unless       string
		}{{"roost-drain", agentapi.DrainDrained, drain["unless"]}, {"roost-undrain", agentapi.DrainNone, undrain["unless"]}} {
			out, err := sh(local(c.unless))
			if skipped := err == nil; skipped != (st == c.skipWhen) {
				t.Errorf("agent's drain state %s: %s's unless holds: %v, want %v\n%s", st, c.id, skipped, st == c.skipWhen, out)
			}
		}
	}

	now := func() (string, string) {
		mu.Lock()
		defer mu.Unlock()
		return state, wait
	}
	mu.Lock()
	state = agentapi.DrainNone
	mu.Unlock()
	out, err := sh(local(drain["name"]))
	if st, w := now(); err != nil || w != "10s" || st != agentapi.DrainDrained {
		t.Errorf("roost.drain's command: %v, wait %q, state %s; want drained with wait 10s\n%s", err, w, st, out)
	}
	if out, err := sh(local(drain["unless"])); err != nil {
		t.Errorf("roost.drain's unless does not hold after the drain: %v\n%s", err, out)
	}
	out, err = sh(local(undrain["name"]))
	if st, _ := now(); err != nil || st != agentapi.DrainNone {
		t.Errorf("roost.undrain's command: %v, state %s; want none\n%s", err, st, out)
	}

	// A wait of its own, this once (docs/deploy.md, "Draining a node").
	if got := cmds(`pillar={"roost": {"drain": {"wait": "2m"}}}`)["roost-drain"]["name"]; !strings.HasSuffix(got, " drain --wait 2m") {
		t.Errorf("roost.drain with pillar drain:wait 2m on the command line runs %q", got)
	}
}

// keyPaths returns the paths ("loader:socket_lb:cgroup") of the leaves of
// m, a mapping decoded from YAML or built as a pillar; skip names mappings
// whose keys are data (policies' file names), which are leaves here.
func keyPaths(prefix string, m map[string]any, skip ...string) []string {
	var paths []string
	for k, v := range m {
		path := prefix + k
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 && !slices.Contains(skip, path) {
			paths = append(paths, keyPaths(path+":", sub, skip...)...)
			continue
		}
		paths = append(paths, path)
	}
	sort.Strings(paths)
	return paths
}

// TestPillarReferenceComplete: every key of the formula's defaults, and
// every key of a peer, is in docs/deploy.md's pillar reference and in
// salt/pillar.example; fullPillar, which TestPillarRendersEveryKey renders,
// sets every key of a peer that map.jinja knows.
func TestPillarReferenceComplete(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(repo, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	var defaults, example struct {
		Roost map[string]any `yaml:"roost"`
	}
	for rel, v := range map[string]any{"salt/roost/defaults.yaml": &defaults, "salt/pillar.example": &example} {
		if err := yaml.Unmarshal([]byte(read(rel)), v); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
	}
	doc := read("docs/deploy.md")
	exampleKeys := keyPaths("", example.Roost, "policies")
	for _, path := range keyPaths("", defaults.Roost, "policies") {
		if !strings.Contains(doc, "`"+path+"`") {
			t.Errorf("docs/deploy.md's pillar reference does not name `%s`", path)
		}
		if !slices.Contains(exampleKeys, path) && !slices.ContainsFunc(exampleKeys, func(k string) bool { return strings.HasPrefix(k, path+":") }) {
			t.Errorf("salt/pillar.example does not set roost:%s", path)
		}
	}

	var peer []string
	for _, p := range fullPillar()["peers"].([]map[string]any) {
		for _, k := range keyPaths("", p) {
			if !slices.Contains(peer, k) {
				peer = append(peer, k)
			}
		}
	}
	// bfd: {} is a leaf of one peer, and has leaves in another.
	peer = slices.DeleteFunc(peer, func(k string) bool {
		return slices.ContainsFunc(peer, func(l string) bool { return strings.HasPrefix(l, k+":") })
	})
	for _, k := range peer {
		if !strings.Contains(doc, "`peers[]:"+k+"`") {
			t.Errorf("docs/deploy.md's pillar reference does not name `peers[]:%s`", k)
		}
		last := k[strings.LastIndex(k, ":")+1:]
		if !regexp.MustCompile(`(?m)^\s*#?.*\b` + last + `:`).MatchString(read("salt/pillar.example")) {
			t.Errorf("salt/pillar.example does not show a peer's %s", k)
		}
	}
	// map.jinja's peer_keys, nested ones as their own names.
	block := read("salt/roost/map.jinja")
	start := strings.Index(block, "{%- set peer_keys = {")
	end := strings.Index(block[start:], "} %}")
	if start < 0 || end < 0 {
		t.Fatal("salt/roost/map.jinja has no peer_keys")
	}
	for _, m := range regexp.MustCompile(`'([a-z_]+)':`).FindAllStringSubmatch(block[start:start+end], -1) {
		if !slices.ContainsFunc(peer, func(k string) bool {
			return k == m[1] || strings.HasSuffix(k, ":"+m[1]) || strings.HasPrefix(k, m[1]+":")
		}) {
			t.Errorf("fullPillar's peers do not set %s, a peer key of map.jinja", m[1])
		}
	}
}

// TestDocsConfigExamples: the agent.yaml and loader.yaml examples of
// docs/deploy.md's compose path pass the binaries' --dry-run, with the
// keys they say they go beside.
func TestDocsConfigExamples(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := buildBinaries(t)
	dir, policies := t.TempDir(), t.TempDir()
	beside := map[string]string{
		"# /etc/roost/agent.yaml, beside node, asn, routerID, podCIDRs": "node: node1\nasn: 65100\nrouterID: 10.252.1.2\npodCIDRs: [10.251.7.0/24]\n",
		"# /etc/roost/loader.yaml, beside node":                         "node: node1\npolicyDir: " + policies + "\nendpointsFile: \"\"\n",
	}
	found := 0
	for _, b := range readDocBlocks(t, filepath.Join(repo, "docs", "deploy.md")) {
		first, _, _ := strings.Cut(b.body, "\n")
		head, ok := beside[first]
		if b.lang != "yaml" || !ok {
			continue
		}
		found++
		binary := "roost-agent"
		if strings.Contains(first, "loader.yaml") {
			binary = "roost-loader"
		}
		config := filepath.Join(dir, binary+".yaml")
		writeFile(t, config, head+b.body)
		if out, err := dryRun(bin, binary, config); err != nil {
			t.Errorf("docs/deploy.md:%d: %s --dry-run: %v\n%s", b.line, binary, err, out)
		}
	}
	if found != len(beside) {
		t.Errorf("docs/deploy.md has %d of the %d config examples", found, len(beside))
	}
}
