package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/loaderapi"
	"github.com/roost-net/roost/internal/testenv"
)

// composeV2 is Compose v2, built by `scripts/deps.sh test`.
const composeV2 = "/opt/roost-test/bin/docker-compose-v2"

// TestPrivilegedDeploySalt puts this host on a fabric of two FRR ToRs the
// way an operator does: images built by `make images` and handed over as
// tarballs, then the roost Salt formula run masterless from the pillar. The
// host plays the bare-metal node, in the root namespace; the ToRs and one
// pod are namespaces linked to it. The loader follows the global endpoint
// view on a real etcd (over TLS, on loopback), and the node runs roost-sync,
// which registers outside workloads into it. Everything the test adds to
// the root namespace and the file system is removed at the end
// (guardHost). The whole path runs twice: with Debian's docker-compose
// 1.29, and with Compose v2.
func TestPrivilegedDeploySalt(t *testing.T) {
	testenv.Privileged(t)
	testenv.Binary(t, "debootstrap")
	compose := []struct{ name, cmd string }{
		{"compose-v1", testenv.Binary(t, "docker-compose")},
		{"compose-v2", composeV2},
	}
	if _, err := os.Stat(composeV2); err != nil {
		if testenv.Required() {
			t.Fatalf("Compose v2 is not installed at %s (run scripts/deps.sh test)", composeV2)
		}
		t.Logf("skipping the Compose v2 pass: %s is not installed (run scripts/deps.sh test)", composeV2)
		compose = compose[:1]
	}
	for _, c := range compose {
		t.Run(c.name, func(t *testing.T) { deploySalt(t, c.cmd) })
	}
}

// deploySalt is one pass of TestPrivilegedDeploySalt, with the formula
// calling compose as composeCmd.
func deploySalt(t *testing.T, composeCmd string) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	s := newSalt(t, repo)
	guardHost(t)
	d := startDockerd(t)

	// etcd, for the global view, with the TLS files the pillar names put
	// where an operator puts them: the loader's client certificate, and
	// roost-sync's own.
	etcd := testenv.StartEtcdTLS(t, 1)
	syncCert, syncKey := etcd.CA.Issue(t, "roost-sync-vms", false)
	etcdFiles := map[string]string{
		"ca.pem": etcd.CAFile, "client.pem": etcd.CertFile, "client-key.pem": etcd.KeyFile,
		"sync.pem": syncCert, "sync-key.pem": syncKey,
	}
	placeEtcd := func(name, src string) {
		t.Helper()
		if err := os.MkdirAll("/etc/roost/etcd", 0o755); err != nil { // guardHost removes /etc/roost
			t.Fatal(err)
		}
		if err := os.WriteFile("/etc/roost/etcd/"+name, []byte(mustRead(t, src)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for name, src := range etcdFiles {
		placeEtcd(name, src)
	}
	syncListen := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0])

	// Images, as tarballs an air-gapped site carries to its nodes.
	tag := testenv.Name("e2e")
	bin := buildBinaries(t)
	images := t.TempDir()
	for _, args := range [][]string{{"build"}, {"save", images}} {
		cmd := exec.Command(filepath.Join(repo, "scripts/images.sh"), args...)
		cmd.Env = append(d.env(), "ROOST_IMAGE_TAG="+tag, "ROOST_BIN_DIR="+bin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("images.sh %s: %v\n%s", args[0], err, out)
		}
	}
	birdImage, roostImage := "roost/bird:"+tag, "roost/roost:"+tag
	for _, img := range []string{birdImage, roostImage} {
		if _, err := d.run("rmi", img); err != nil { // the formula loads them
			t.Fatal(err)
		}
		t.Cleanup(func() { d.run("rmi", "-f", img) })
	}

	// The fabric: tor1 and tor2 on links to the host; a pod "db" on a veth.
	const (
		hostASN = 65100
		podIP   = "10.251.7.10"
	)
	podCIDR := netip.MustParsePrefix("10.251.7.0/24")
	var tors [2]*testenv.FRR
	var torNS [2]string
	var hostAddr, torAddr [2]netip.Addr
	for j := range tors {
		torNS[j] = testenv.NetNS(t, fmt.Sprintf("dtor%d", j+1))
		torAddr[j] = netip.MustParseAddr(fmt.Sprintf("10.252.%d.1", j+1))
		hostAddr[j] = netip.MustParseAddr(fmt.Sprintf("10.252.%d.2", j+1))
		hostIf := testenv.Name("u")
		testenv.Veth(t, "", hostIf, hostAddr[j].String()+"/30", torNS[j], testenv.Name("d"), torAddr[j].String()+"/30")
		t.Cleanup(func() { exec.Command("ip", "link", "del", hostIf).Run() })
		sysctlRoot(t, "net.ipv6.conf."+hostIf+".disable_ipv6=1")
		tors[j] = testenv.StartFRR(t, torNS[j], testenv.FRRConfig{ASN: torASN, RouterID: torAddr[j],
			Neighbors: []testenv.FRRPeer{{Address: hostAddr[j], ASN: hostASN}}})
	}
	podNS := testenv.NetNS(t, "dpod")
	sysctl(t, podNS, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	hostIf, podIf := testenv.Name("h"), testenv.Name("p")
	testenv.Veth(t, "", hostIf, gatewayIP+"/32", podNS, podIf, podIP+"/32")
	t.Cleanup(func() { exec.Command("ip", "link", "del", hostIf).Run() })
	sysctlRoot(t, "net.ipv6.conf."+hostIf+".disable_ipv6=1", "net.ipv4.ip_forward=1")
	testenv.Run(t, "ip", "-n", podNS, "route", "add", gatewayIP, "dev", podIf, "scope", "link")
	testenv.Run(t, "ip", "-n", podNS, "route", "add", "default", "via", gatewayIP, "dev", podIf)
	testenv.Run(t, "ip", "route", "add", podIP+"/32", "dev", hostIf)
	testenv.ServeHello(t, podNS, podIP+":6379")

	cur := tag // the images the pillar names
	pillar := func(cidr string) map[string]any {
		return map[string]any{
			"node":      "roost-e2e",
			"asn":       hostASN,
			"router_id": hostAddr[0].String(),
			"pod_cidrs": []string{cidr},
			"peers": []map[string]any{
				{"name": "tor1", "address": torAddr[0].String(), "asn": torASN},
				{"name": "tor2", "address": torAddr[1].String(), "asn": torASN, "hold_time": 9},
			},
			"endpoints": []map[string]any{
				{"name": "db", "ips": []string{podIP}, "labels": map[string]string{"app": "protected-db"}},
				// tor1's address stands for an external workload.
				{"name": "vm-tor1", "ips": []string{torAddr[0].String()}, "labels": map[string]string{"app": "employee"}},
			},
			"policies": map[string]any{"seed": seedPolicy},
			"images": map[string]any{
				"bird":  "roost/bird:" + cur,
				"roost": "roost/roost:" + cur,
				"tarballs": []string{
					filepath.Join(images, "roost-bird-"+cur+".tar"),
					filepath.Join(images, "roost-roost-"+cur+".tar"),
				},
			},
			// The packages are there (deps.sh); the engine is the test's.
			"docker": map[string]any{"manage_packages": true, "manage_service": false, "host": d.host, "compose": composeCmd},
			"bpffs":  map[string]any{"mount": true, "persist": false},
			"loader": map[string]any{"global_view": map[string]any{
				"enabled": true,
				"etcd": map[string]any{"endpoints": etcd.Endpoints, "ca_file": "/etc/roost/etcd/ca.pem",
					"cert_file": "/etc/roost/etcd/client.pem", "key_file": "/etc/roost/etcd/client-key.pem"},
			}},
			"sync": map[string]any{
				"enabled": true, "name": "vms", "cluster": "default", "listen": syncListen, "heartbeat_timeout": "2m",
				"etcd": map[string]any{"endpoints": etcd.Endpoints, "ca_file": "/etc/roost/etcd/ca.pem",
					"cert_file": "/etc/roost/etcd/sync.pem", "key_file": "/etc/roost/etcd/sync-key.pem"},
				"workloads": []map[string]any{
					{"name": "backup", "ips": []string{"192.0.2.77"}, "labels": map[string]string{"app": "backup"}},
				},
			},
		}
	}

	// 1. First apply: the node comes up. The host's own bird.conf is kept
	// aside, to be put back by roost.clean.
	writeFile(t, "/etc/bird/bird.conf", hostBirdConf) // guardHost puts the real one back
	s.setPillar(t, pillar(podCIDR.String()))
	r := s.apply(t, "state.apply", "roost")
	if r.err != nil || len(r.failed()) > 0 {
		t.Fatalf("first state.apply: %v; failed: %v\n%s", r.err, r.failed(), r.out)
	}
	t.Logf("first apply changed %d states", len(r.changed()))
	if got, _ := os.ReadFile("/etc/bird/bird.conf.pre-roost"); string(got) != hostBirdConf {
		t.Errorf("the host's bird.conf was not kept as bird.conf.pre-roost: %q", got)
	}
	waitHealthy(t, d, "roost-bird", "roost-agent", "roost-loader", "roost-sync")
	for j, tor := range tors {
		tor.WaitEstablished(t, 60*time.Second, hostAddr[j])
		tor.WaitBGPRoute(t, 30*time.Second, podCIDR, hostAddr[j])
	}
	// The seed policy from the pillar: tor1 (app=employee) reaches db:6379,
	// tor2 (world) does not.
	// roostctl, from the image, sees what the ToRs were sent.
	if out, err := d.run("exec", "roost-agent", "roostctl", "routes"); err != nil || !strings.Contains(out, podCIDR.String()) {
		t.Errorf("roostctl routes in roost-agent: %v\n%s", err, out)
	}
	waitConnect(t, torNS[0], podIP+":6379", nil)
	if err := testenv.ConnectHello(torNS[1], podIP+":6379", time.Second); !errors.Is(err, testenv.ErrDropped) {
		t.Errorf("tor2 → db:6379: %v, want dropped by the seed policy", err)
	}

	// 1b. roost-sync registers the pillar's workload, and one registered
	// through its API from the host (docs/deploy.md, "The global endpoint
	// view and roost-sync"): tor2's address as an app=employee VM. The
	// deployed loader learns both from etcd as origin sync:vms, and lets
	// tor2 reach db; deregistered, tor2 is dropped again.
	waitSyncEndpoints(t, d, "sync:vms/default/backup")
	began := time.Now()
	api := "http://" + syncListen + "/v1/workloads/default/tor2vm"
	if code, body := syncRequest(t, "PUT", api, `{"ips": ["`+torAddr[1].String()+`"], "labels": {"app": "employee"}}`); code != 201 {
		t.Fatalf("PUT %s: %d, want 201 Created\n%s", api, code, body)
	}
	if code, body := syncRequest(t, "POST", api+"/heartbeat", ""); code != 204 {
		t.Errorf("POST %s/heartbeat: %d, want 204\n%s", api, code, body)
	}
	if code, body := syncRequest(t, "GET", "http://"+syncListen+"/v1/workloads", ""); code != 200 || !strings.Contains(body, `"source": "api"`) || !strings.Contains(body, `"source": "file"`) {
		t.Errorf("GET /v1/workloads: %d, want the file's workload and the API's\n%s", code, body)
	}
	waitSyncEndpoints(t, d, "sync:vms/default/backup", "sync:vms/default/tor2vm")
	waitConnect(t, torNS[1], podIP+":6379", nil)
	if code, body := syncRequest(t, "DELETE", api, ""); code != 204 {
		t.Fatalf("DELETE %s: %d, want 204\n%s", api, code, body)
	}
	waitSyncEndpoints(t, d, "sync:vms/default/backup")
	waitConnect(t, torNS[1], podIP+":6379", testenv.ErrDropped)
	t.Logf("roost-sync: a workload registered, enforced, deregistered and dropped in %v", time.Since(began).Round(time.Millisecond))

	// Restarting the BIRD container, as an image upgrade does, is a BGP
	// graceful restart: tor1 keeps the PodCIDR in its FIB throughout.
	before := sessions(t, tors, hostAddr)
	lost := watchKernelRoute(t, tors[0], podCIDR)
	if _, err := d.run("restart", "roost-bird"); err != nil {
		t.Fatal(err)
	}
	tors[0].WaitFor(t, 60*time.Second, "session re-established after the BIRD restart", func() (bool, string) {
		now := sessions(t, tors, hostAddr)[hostAddr[0]]
		return now[0] > before[hostAddr[0]][0], fmt.Sprint(now)
	})
	tors[0].WaitEstablished(t, 30*time.Second, hostAddr[0])
	tors[0].WaitBGPRoute(t, 30*time.Second, podCIDR, hostAddr[0])
	if n := lost(); n > 0 {
		t.Errorf("tor1 lost %s from its FIB %d times during BIRD's restart", podCIDR, n)
	}

	// 2. The example top file, as a highstate: nothing to change.
	r = s.apply(t, "state.highstate")
	if r.err != nil || len(r.states) == 0 || len(r.changed()) > 0 {
		t.Fatalf("second run (highstate): %v; changed %v\n%s", r.err, r.changed(), r.out)
	}

	// And from a master (this host's salt-minion on loopback): the same
	// formula, nothing to change.
	m := startMaster(t, s, repo)
	r = m.apply(t, "state.apply", "roost")
	if r.err != nil || len(r.states) == 0 || len(r.changed()) > 0 || len(r.failed()) > 0 {
		t.Fatalf("state.apply from a master: %v; changed %v; failed %v\n%s", r.err, r.changed(), r.failed(), r.out)
	}

	before, started := sessions(t, tors, hostAddr), startedAt(t, d)
	agentYAML := mustRead(t, "/etc/roost/agent.yaml")

	// 3. test=True with a PodCIDR change: reported, nothing changed.
	// Still holding db's address, so that db stays reachable after.
	moved := netip.MustParsePrefix("10.251.7.0/25")
	s.setPillar(t, pillar(moved.String()))
	r = s.apply(t, "state.apply", "roost", "test=True")
	if r.err != nil || !slices.Contains(r.changed(), "file_|-roost-stage-agent.yaml_|-/var/lib/roost/stage/agent.yaml_|-managed") {
		t.Fatalf("test=True: %v; changed %v, want the staged agent.yaml\n%s", r.err, r.changed(), r.out)
	}
	if got := mustRead(t, "/etc/roost/agent.yaml"); got != agentYAML {
		t.Errorf("test=True changed agent.yaml:\n%s", got)
	}
	if !strings.Contains(mustRead(t, "/var/lib/roost/stage/agent.yaml"), "10.251.7.0/24") {
		t.Errorf("test=True changed the staged agent.yaml")
	}

	// 4. The PodCIDR change for real: the ToRs swap prefixes, no session
	// resets, no container restarts.
	r = s.apply(t, "state.apply", "roost")
	if r.err != nil || len(r.failed()) > 0 {
		t.Fatalf("PodCIDR change: %v; failed %v\n%s", r.err, r.failed(), r.out)
	}
	for _, id := range r.changed() {
		if strings.Contains(id, "compose") || strings.Contains(id, "restart") {
			t.Errorf("a PodCIDR change ran %s", id)
		}
	}
	for j, tor := range tors {
		tor.WaitBGPRoute(t, 30*time.Second, moved, hostAddr[j])
		tor.WaitFor(t, 30*time.Second, "old PodCIDR withdrawn", func() (bool, string) {
			rs, err := tor.BGPRoutes()
			if err != nil {
				return false, err.Error()
			}
			_, old := rs[podCIDR]
			return !old, fmt.Sprint(rs)
		})
	}
	if after := sessions(t, tors, hostAddr); !maps.Equal(after, before) {
		t.Errorf("sessions (established, dropped) per peer: before %v, after %v: a session was reset", before, after)
	}
	if got := startedAt(t, d); !maps.Equal(got, started) {
		t.Errorf("containers restarted: before %v, after %v", started, got)
	}

	// 4b. roost.drain (with a short wait, given for this run only): the
	// ToRs lose the PodCIDR, the sessions stay; the formula applied again
	// leaves the node drained, roost.drain again does nothing, and
	// roost.undrain announces it again.
	withdrawn := func(what string, gone bool) {
		t.Helper()
		for _, tor := range tors {
			tor.WaitFor(t, 60*time.Second, what, func() (bool, string) {
				rs, err := tor.BGPRoutes()
				if err != nil {
					return false, err.Error()
				}
				_, has := rs[moved]
				return has != gone, fmt.Sprint(rs)
			})
		}
	}
	r = s.apply(t, "state.apply", "roost.drain", `pillar={"roost": {"drain": {"wait": "2s"}}}`)
	if r.err != nil || len(r.failed()) > 0 || len(r.changed()) != 1 {
		t.Fatalf("roost.drain: %v; changed %v; failed %v\n%s", r.err, r.changed(), r.failed(), r.out)
	}
	withdrawn("PodCIDR withdrawn by the drain", true)
	for _, sls := range []string{"roost", "roost.drain"} {
		if r = s.apply(t, "state.apply", sls); r.err != nil || len(r.changed()) > 0 {
			t.Fatalf("%s on a drained node: %v; changed %v\n%s", sls, r.err, r.changed(), r.out)
		}
	}
	if out, err := d.run("exec", "roost-agent", "roostctl", "status"); err != nil || !strings.Contains(out, "drained since") {
		t.Errorf("roostctl status on a drained node: %v\n%s", err, out)
	}
	withdrawn("PodCIDR still withdrawn after the formula ran again", true)
	r = s.apply(t, "state.apply", "roost.undrain")
	if r.err != nil || len(r.failed()) > 0 || len(r.changed()) != 1 {
		t.Fatalf("roost.undrain: %v; changed %v; failed %v\n%s", r.err, r.changed(), r.failed(), r.out)
	}
	withdrawn("PodCIDR announced again", false)
	if after := sessions(t, tors, hostAddr); !maps.Equal(after, before) {
		t.Errorf("sessions (established, dropped) per peer: before %v, after %v: the drain reset a session", before, after)
	}

	// 5. An image upgrade through the pillar: new tags (the same content,
	// handed over as tarballs), every container recreated; BIRD's graceful
	// restart keeps the PodCIDR in tor1's FIB throughout, and the loader
	// adopts its pins and keeps enforcing.
	upgrade := testenv.Name("e2e")
	for _, img := range []string{"bird", "roost"} {
		ref := "roost/" + img + ":" + upgrade
		for _, args := range [][]string{
			{"tag", "roost/" + img + ":" + tag, ref},
			{"save", "-o", filepath.Join(images, "roost-"+img+"-"+upgrade+".tar"), ref},
			{"rmi", ref}, // the formula loads it
		} {
			if _, err := d.run(args...); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { d.run("rmi", "-f", ref) })
	}
	cur = upgrade
	s.setPillar(t, pillar(moved.String()))
	lost = watchKernelRoute(t, tors[0], moved)
	r = s.apply(t, "state.apply", "roost")
	if r.err != nil || len(r.failed()) > 0 || !slices.ContainsFunc(r.changed(), func(id string) bool { return strings.Contains(id, "roost-compose-up") }) {
		t.Fatalf("image upgrade: %v; changed %v; failed %v\n%s", r.err, r.changed(), r.failed(), r.out)
	}
	waitHealthy(t, d, "roost-bird", "roost-agent", "roost-loader", "roost-sync")
	for _, c := range []string{"roost-bird", "roost-agent", "roost-loader", "roost-sync"} {
		if img, err := d.run("inspect", "-f", "{{.Config.Image}}", c); err != nil || !strings.HasSuffix(img, ":"+upgrade) {
			t.Errorf("%s runs %q (%v) after the upgrade, want tag %s", c, img, err, upgrade)
		}
	}
	for j, tor := range tors {
		tor.WaitEstablished(t, 60*time.Second, hostAddr[j])
		tor.WaitBGPRoute(t, 30*time.Second, moved, hostAddr[j])
	}
	if n := lost(); n > 0 {
		t.Errorf("tor1 lost %s from its FIB %d times during the image upgrade", moved, n)
	}
	waitConnect(t, torNS[0], podIP+":6379", nil)
	if err := testenv.ConnectHello(torNS[1], podIP+":6379", time.Second); !errors.Is(err, testenv.ErrDropped) {
		t.Errorf("after the upgrade, tor2 → db:6379: %v, want dropped", err)
	}
	started = startedAt(t, d)
	// onlyRestarted waits until container is healthy again, and checks
	// that the step restarted it and no other.
	onlyRestarted := func(step, container string) {
		t.Helper()
		waitHealthy(t, d, container)
		now := startedAt(t, d)
		for c, at := range now {
			if restarted := at != started[c]; restarted != (c == container) {
				t.Errorf("%s: %s restarted: %v; before %v, after %v", step, c, restarted, started, now)
			}
		}
		started = now
	}

	// 5b. A setting roost-agent reads only at start (it refuses a reload
	// that changes one): the formula restarts roost-agent, and only it, so
	// the setting is taken rather than left in configError.
	noHoles := pillar(moved.String())
	noHoles["agent"] = map[string]any{"blackhole_routes": false}
	for _, p := range []map[string]any{noHoles, pillar(moved.String())} {
		s.setPillar(t, p)
		r = s.apply(t, "state.apply", "roost")
		if r.err != nil || len(r.failed()) > 0 || !slices.ContainsFunc(r.changed(), func(id string) bool { return strings.Contains(id, "roost-agent-restart") }) {
			t.Fatalf("start-only setting: %v; changed %v; failed %v\n%s", r.err, r.changed(), r.failed(), r.out)
		}
		onlyRestarted("start-only setting", "roost-agent")
		out, err := d.run("exec", "roost-agent", "roostctl", "status", "-o", "json")
		var st agentapi.Status
		if err != nil || json.Unmarshal([]byte(out), &st) != nil {
			t.Fatalf("roostctl status in roost-agent: %v\n%s", err, out)
		}
		if want := p["agent"] == nil; st.BlackholeRoutes != want || st.ConfigError != "" {
			t.Errorf("after the restart: blackholeRoutes %v (want %v), configError %q", st.BlackholeRoutes, want, st.ConfigError)
		}
	}
	for j, tor := range tors {
		tor.WaitBGPRoute(t, 30*time.Second, moved, hostAddr[j])
	}

	// 5c. A new client certificate for the loader, put in place as the
	// operator does: the formula restarts roost-loader, and only it, which
	// connects to etcd with it.
	began = time.Now()
	cert, key := etcd.CA.Issue(t, "roost-loader-renewed", false)
	placeEtcd("client.pem", cert)
	placeEtcd("client-key.pem", key)
	r = s.apply(t, "state.apply", "roost")
	ran := func(id string) bool {
		return slices.ContainsFunc(r.changed(), func(c string) bool { return strings.Contains(c, "_|-"+id+"_|-") })
	}
	if r.err != nil || len(r.failed()) > 0 || !ran("roost-loader-restart") || ran("roost-sync-restart") || ran("roost-agent-restart") {
		t.Fatalf("renewed loader certificate: %v; changed %v; failed %v, want roost-loader alone restarted\n%s", r.err, r.changed(), r.failed(), r.out)
	}
	onlyRestarted("renewed loader certificate", "roost-loader") // ready: etcd answers it, and the view is applied
	waitSyncEndpoints(t, d, "sync:vms/default/backup")
	t.Logf("renewed loader certificate: applied, loader restarted and ready in %v", time.Since(began).Round(time.Millisecond))

	// 5d. The same for roost-sync's certificate: roost-sync alone
	// restarts, becomes its origin's writer again with the new one, and
	// the pillar's workload stays in the loader's view.
	began = time.Now()
	cert, key = etcd.CA.Issue(t, "roost-sync-vms", false)
	placeEtcd("sync.pem", cert)
	placeEtcd("sync-key.pem", key)
	r = s.apply(t, "state.apply", "roost")
	if r.err != nil || len(r.failed()) > 0 || !ran("roost-sync-restart") || ran("roost-loader-restart") || ran("roost-agent-restart") {
		t.Fatalf("renewed roost-sync certificate: %v; changed %v; failed %v, want roost-sync alone restarted\n%s", r.err, r.changed(), r.failed(), r.out)
	}
	onlyRestarted("renewed roost-sync certificate", "roost-sync") // ready: the writer of sync:vms, its set in etcd
	waitSyncEndpoints(t, d, "sync:vms/default/backup")
	t.Logf("renewed roost-sync certificate: applied, roost-sync restarted and ready in %v", time.Since(began).Round(time.Millisecond))

	// 5e. roost-sync's API moved to another port: roost-sync alone starts
	// again, its health check asks the new address, the API answers there
	// and no longer on the old one.
	began = time.Now()
	oldListen := syncListen
	syncListen = fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0])
	s.setPillar(t, pillar(moved.String()))
	r = s.apply(t, "state.apply", "roost")
	if r.err != nil || len(r.failed()) > 0 || ran("roost-loader-restart") || ran("roost-agent-restart") {
		t.Fatalf("sync listen moved: %v; changed %v; failed %v\n%s", r.err, r.changed(), r.failed(), r.out)
	}
	onlyRestarted("sync listen moved", "roost-sync") // its health check asks the new address
	if code, body := syncRequest(t, "GET", "http://"+syncListen+"/v1/workloads", ""); code != 200 || !strings.Contains(body, "backup") {
		t.Errorf("GET /v1/workloads on the new address %s: %d %s", syncListen, code, body)
	}
	if c, err := net.DialTimeout("tcp", oldListen, time.Second); err == nil {
		c.Close()
		t.Errorf("roost-sync still answers on its old address %s", oldListen)
	}
	t.Logf("sync listen moved: applied, roost-sync ready on %s in %v", syncListen, time.Since(began).Round(time.Millisecond))

	// 6. A bad pillar is refused before anything changes.
	agentYAML = mustRead(t, "/etc/roost/agent.yaml")
	s.setPillar(t, pillar("10.251.9.0/33"))
	r = s.apply(t, "state.apply", "roost")
	if r.err == nil {
		t.Fatalf("bad pillar: the run succeeded\n%s", r.out)
	}
	if !strings.Contains(r.out, "/var/lib/roost/stage/agent.yaml") || !strings.Contains(r.out, "10.251.9.0/33") || !strings.Contains(r.out, "is not a CIDR prefix") {
		t.Errorf("bad pillar: the output does not name the staged file, the bad CIDR and what is wrong with it\n%s", r.out)
	}
	for _, id := range r.changed() {
		// Only the staging area, and the check that refused it.
		if !strings.Contains(id, "roost-stage-") && !strings.Contains(id, "roost-validate") {
			t.Errorf("bad pillar: %s changed", id)
		}
	}
	if got := mustRead(t, "/etc/roost/agent.yaml"); got != agentYAML {
		t.Errorf("bad pillar changed agent.yaml:\n%s", got)
	}
	if got := startedAt(t, d); !maps.Equal(got, started) {
		t.Errorf("bad pillar restarted containers: before %v, after %v", started, got)
	}
	for j, tor := range tors {
		rs, err := tor.BGPRoutes()
		if err != nil || len(rs[moved]) == 0 {
			t.Errorf("tor%d after the bad pillar: %v %v, want %s still", j+1, rs, err, moved)
		}
	}

	// 6a. So is a bad value of roost-sync's: roost-sync --dry-run, in the
	// check of the staged set, names it; sync.yaml stays as it was.
	syncYAML := mustRead(t, "/etc/roost/sync.yaml")
	badSync := pillar(moved.String())
	badSync["sync"].(map[string]any)["lease_ttl"] = 30 // a number: no unit
	s.setPillar(t, badSync)
	r = s.apply(t, "state.apply", "roost")
	if want := `/var/lib/roost/stage/sync.yaml:`; r.err == nil || !strings.Contains(r.out, want) || !strings.Contains(r.out, `leaseTTL: "30" is not a duration`) {
		t.Errorf("bad sync pillar: %v, want it refused naming %s and leaseTTL\n%s", r.err, want, r.out)
	}
	for _, id := range r.changed() {
		if !strings.Contains(id, "roost-stage-") && !strings.Contains(id, "roost-validate") {
			t.Errorf("bad sync pillar: %s changed", id)
		}
	}
	if got := mustRead(t, "/etc/roost/sync.yaml"); got != syncYAML {
		t.Errorf("bad sync pillar changed sync.yaml:\n%s", got)
	}
	if got := startedAt(t, d); !maps.Equal(got, started) {
		t.Errorf("bad sync pillar restarted containers: before %v, after %v", started, got)
	}

	// 6b. A Docker address that does not answer fails the run, and the
	// installed roost-check (which names the engine) stays as it was.
	check := mustRead(t, "/usr/local/sbin/roost-check")
	badDocker := pillar(moved.String())
	badDocker["docker"].(map[string]any)["host"] = "unix:///run/roost-e2e-no-such-docker.sock"
	s.setPillar(t, badDocker)
	if r = s.apply(t, "state.apply", "roost"); r.err == nil {
		t.Errorf("a Docker address that does not answer: the run succeeded\n%s", r.out)
	}
	if got := mustRead(t, "/usr/local/sbin/roost-check"); got != check {
		t.Errorf("a failed run rewrote /usr/local/sbin/roost-check:\n%s", got)
	}
	if got := mustRead(t, "/etc/roost/agent.yaml"); got != agentYAML {
		t.Errorf("a failed run changed agent.yaml:\n%s", got)
	}

	// 6c. roost-sync turned off: its container and files go; nothing else
	// restarts, and the loader keeps following the view.
	noSync := pillar(moved.String())
	noSync["sync"] = map[string]any{"enabled": false}
	s.setPillar(t, noSync)
	if r = s.apply(t, "state.apply", "roost"); r.err != nil || len(r.failed()) > 0 {
		t.Fatalf("sync off: %v; failed %v\n%s", r.err, r.failed(), r.out)
	}
	if out, err := d.run("ps", "-a", "--format", "{{.Names}}"); err != nil || strings.Contains(out, "roost-sync") {
		t.Errorf("sync off: containers %q (%v), want no roost-sync", out, err)
	}
	for _, p := range []string{"/etc/roost/sync.yaml", "/etc/roost/workloads.yaml", "/var/lib/roost/stage/sync.yaml"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("sync off: %s left", p)
		}
	}
	for c, at := range started {
		if now, err := d.run("inspect", "-f", "{{.State.StartedAt}}", c); c != "roost-sync" && (err != nil || now != at) {
			t.Errorf("sync off: %s restarted (%v)", c, err)
		}
	}
	waitHealthy(t, d, "roost-loader")
	if r = s.apply(t, "state.apply", "roost"); r.err != nil || len(r.changed()) > 0 {
		t.Errorf("sync off, again: %v; changed %v", r.err, r.changed())
	}

	// 7. roost.clean leaves nothing behind.
	s.setPillar(t, pillar(moved.String()))
	r = s.apply(t, "state.apply", "roost.clean")
	if r.err != nil || len(r.failed()) > 0 {
		t.Fatalf("roost.clean: %v; failed %v\n%s", r.err, r.failed(), r.out)
	}
	for _, tor := range tors { // withdrawn, not left stale
		tor.WaitFor(t, 10*time.Second, "PodCIDR withdrawn by roost.clean", func() (bool, string) {
			rs, err := tor.KernelRoutes()
			return err == nil && len(rs[moved]) == 0, fmt.Sprint(rs, err)
		})
	}
	if ids, _ := d.run("ps", "-aq"); ids != "" {
		t.Errorf("containers left: %s", ids)
	}
	for _, img := range []string{"roost/bird:" + cur, "roost/roost:" + cur} {
		if out, _ := d.run("images", "-q", img); out != "" {
			t.Errorf("image %s left", img)
		}
	}
	for _, p := range append(hostPaths, "/sys/fs/bpf/roost") {
		if _, err := os.Stat(p); err == nil && p != "/etc/bird/bird.conf" {
			t.Errorf("%s left", p)
		}
	}
	if got, _ := os.ReadFile("/etc/bird/bird.conf"); string(got) != hostBirdConf {
		t.Errorf("roost.clean did not put the host's bird.conf back: %q", got)
	}
	for _, fam := range []string{"-4", "-6"} {
		if out := testenv.Run(t, "ip", fam, "route", "show", "proto", "167"); out != "" {
			t.Errorf("blackhole routes left: %s", out)
		}
	}
	r = s.apply(t, "state.apply", "roost.clean")
	if r.err != nil || len(r.changed()) > 0 {
		t.Errorf("second roost.clean: %v; changed %v", r.err, r.changed())
	}
}

// syncRequest makes a request of roost-sync's API and returns the status
// and the body.
func syncRequest(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitSyncEndpoints waits up to 30 s until the deployed loader's endpoints
// of origin sync:vms (roostctl endpoints in roost-loader) are exactly names.
func waitSyncEndpoints(t *testing.T, d *dockerd, names ...string) {
	t.Helper()
	var got []string
	var out string
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		out, err = d.run("exec", "roost-loader", "roostctl", "endpoints", "--origin", "sync:vms", "-o", "json")
		var eps []loaderapi.Endpoint
		if err != nil || json.Unmarshal([]byte(out), &eps) != nil {
			continue
		}
		got = nil
		for _, e := range eps {
			got = append(got, e.Name)
		}
		slices.Sort(got)
		if slices.Equal(got, names) {
			return
		}
	}
	t.Fatalf("roostctl endpoints --origin sync:vms in roost-loader: %v, want %v (%v)\n%s", got, names, err, out)
}

// sessions maps each ToR's neighbor (the host) to its FRR counters
// (connections established, connections dropped): a reset changes them.
func sessions(t *testing.T, tors [2]*testenv.FRR, hostAddr [2]netip.Addr) map[netip.Addr][2]int {
	t.Helper()
	m := map[netip.Addr][2]int{}
	for j, tor := range tors {
		ns, err := tor.Neighbors()
		if err != nil {
			t.Fatal(err)
		}
		n := ns[hostAddr[j]]
		m[hostAddr[j]] = [2]int{n.ConnectionsEstablished, n.ConnectionsDropped}
	}
	return m
}

// watchKernelRoute polls the ToR's kernel routing table every 20 ms for
// prefix until the returned function is called, which reports how many
// polls found it missing.
func watchKernelRoute(t *testing.T, tor *testenv.FRR, prefix netip.Prefix) func() int {
	stop, done := make(chan struct{}), make(chan int)
	go func() {
		missing := 0
		for {
			select {
			case <-stop:
				done <- missing
				return
			case <-time.After(20 * time.Millisecond):
			}
			rs, err := tor.KernelRoutes()
			if err == nil && len(rs[prefix]) == 0 {
				missing++
			}
		}
	}()
	return func() int { close(stop); return <-done }
}

// waitHealthy waits until each container's health check passes.
func waitHealthy(t *testing.T, d *dockerd, names ...string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for _, n := range names {
		for {
			st, err := d.run("inspect", "-f", "{{.State.Status}} {{.State.Health.Status}}", n)
			if err == nil && st == "running healthy" {
				break
			}
			if time.Now().After(deadline) {
				logs, _ := d.run("logs", "--tail", "30", n)
				t.Fatalf("%s not healthy within 90s: %s %v\n%s", n, st, err, logs)
			}
			time.Sleep(time.Second)
		}
	}
}

// waitConnect retries ConnectHello until it returns want (nil or an error
// errors.Is matches), for up to 10 s: enforcement follows the loader's
// first apply.
func waitConnect(t *testing.T, ns, addr string, want error) {
	t.Helper()
	var err error
	for range 20 {
		err = testenv.ConnectHello(ns, addr, 500*time.Millisecond)
		if errors.Is(err, want) || (err == nil && want == nil) {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%s → %s: %v, want %v", ns, addr, err, want)
}

// startedAt maps each roost container to when it last started.
func startedAt(t *testing.T, d *dockerd) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, n := range []string{"roost-bird", "roost-agent", "roost-loader", "roost-sync"} {
		st, err := d.run("inspect", "-f", "{{.State.StartedAt}}", n)
		if err != nil {
			t.Fatal(err)
		}
		m[n] = st
	}
	return m
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sysctlRoot sets kernel parameters of the root namespace; guardHost puts
// ip_forward back, and per-interface settings go with their interface.
func sysctlRoot(t *testing.T, settings ...string) {
	t.Helper()
	testenv.Run(t, "sysctl", append([]string{"-qw"}, settings...)...)
}
