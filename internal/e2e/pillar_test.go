package e2e

import (
	"encoding/json"
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
			"socket_lb": map[string]any{"enabled": true, "cgroup": "/sys/fs/cgroup/system.slice"},
			"xdp_lb":    map[string]any{"enabled": true, "interfaces": []string{"eth0", "eth1"}, "mode": "generic", "source_ipv4": "10.0.1.2"},
		},
	}
}

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
// services.yaml into a new directory that stands for /etc/roost: the paths
// in loader.yaml are moved there, as roost-check mounts the staged set at
// /etc/roost.
func (s *salt) renderSet(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"agent.yaml", "loader.yaml", "endpoints.yaml", "services.yaml"} {
		s.render(t, dir, name)
	}
	if err := os.Mkdir(filepath.Join(dir, "policies"), 0o755); err != nil {
		t.Fatal(err)
	}
	loader := filepath.Join(dir, "loader.yaml")
	writeFile(t, loader, strings.ReplaceAll(mustRead(t, loader), "/etc/roost/", dir+"/"))
	return dir
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
	dir := s.renderSet(t)
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
	}
	for key, want := range wantLoader {
		if !reflect.DeepEqual(loader[key], want) {
			t.Errorf("loader.yaml %s = %#v, want %#v", key, loader[key], want)
		}
	}
	if got := readYAML(t, filepath.Join(dir, "services.yaml"))["services"]; len(got.([]any)) != 1 {
		t.Errorf("services.yaml services = %#v, want the pillar's one service", got)
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

	// A community that is not one: the dry-run names the field.
	bad := fullPillar()
	bad["peers"].([]map[string]any)[0]["communities"] = []string{"65000:7", "65536:1"}
	s.setPillar(t, bad)
	path := s.render(t, t.TempDir(), "agent.yaml")
	out, err = dryRun(bin, "roost-agent", path)
	if want := `peers[0].communities[1]: "65536:1": part "65536" is larger than 16 bits`; err == nil || !strings.Contains(out, want) {
		t.Errorf("roost-agent --dry-run with community 65536:1: %v, want it refused with %q\n%s", err, want, out)
	}

	// salt/pillar.example, which documents every key.
	writeFile(t, filepath.Join(s.pillars, "roost.sls"), mustRead(t, filepath.Join(repo, "salt", "pillar.example")))
	dir = s.renderSet(t)
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
