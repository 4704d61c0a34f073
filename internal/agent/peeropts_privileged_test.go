package agent

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/testenv"
)

// frrNeighborTimers is what the ToR negotiated with its neighbor.
type frrNeighborTimers struct {
	HoldMsecs      int `json:"bgpTimerHoldTimeMsecs"`
	KeepaliveMsecs int `json:"bgpTimerKeepAliveIntervalMsecs"`
	LocalAS        int `json:"localAs"`
	RemoteAS       int `json:"remoteAs"`
	GR             struct {
		RemoteGRMode string `json:"remoteGrMode"`
		Timers       struct {
			ReceivedRestartTimer int `json:"receivedRestartTimer"`
		} `json:"timers"`
	} `json:"gracefulRestartInfo"`
}

func neighborTimers(t *testing.T, tor *testenv.FRR, peer netip.Addr) frrNeighborTimers {
	t.Helper()
	out, err := tor.Vtysh(fmt.Sprintf("show bgp neighbors %s json", peer))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]frrNeighborTimers
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return raw[peer.String()]
}

// TestPrivilegedAgentPeerOptions runs roost-agent with per-peer options
// against FRR ToRs and checks what the ToRs negotiated: tor1's session with
// a hold time of 9 s and keepalives every 3 s, a graceful restart time of
// 300 s, the node's source address, opened by the ToR (passive: the
// node's end is port 179); tor2's without graceful restart. The node's AS
// number is a 4-byte one.
func TestPrivilegedAgentPeerOptions(t *testing.T) {
	f := newFabricASN(t, testenv.FRRConfig{}, 4200000101)
	p := f.startAgentProc(fmt.Sprintf(`node: node1
asn: 4200000101
routerID: 10.0.1.2
podCIDRs: [10.244.1.0/24]
peers:
  - name: tor1
    address: 10.0.1.1
    asn: 65000
    holdTime: 9
    keepaliveTime: 3
    connectRetryTime: 5
    sourceAddress: 10.0.1.2
    passive: true
    gracefulRestart: {restartTime: 300}
  - {name: tor2, address: 10.0.2.1, asn: 65000, gracefulRestart: {enabled: false}}
bird: {socket: %s, configDir: %s}
listen: 127.0.0.1:9479
controlSocket: %s
`, f.bird.Socket, f.bird.Dir, f.controlSocket()))
	f.waitAnnounced("10.244.1.0/24")
	f.waitEstablished()
	p.waitStatus("ready", func(s agentapi.Status) bool { return s.Ready })

	t1 := neighborTimers(t, f.tors[0], f.uplinks[0])
	if t1.HoldMsecs != 9000 || t1.KeepaliveMsecs != 3000 || t1.RemoteAS != 4200000101 {
		t.Errorf("tor1 negotiated %+v: want hold 9 s, keepalive 3 s, remote AS 4200000101", t1)
	}
	if t1.GR.RemoteGRMode != "Restart" || t1.GR.Timers.ReceivedRestartTimer != 300 {
		t.Errorf("tor1 graceful restart %+v: want Restart, 300 s", t1.GR)
	}
	t2 := neighborTimers(t, f.tors[1], f.uplinks[1])
	if t2.GR.RemoteGRMode == "Restart" {
		t.Errorf("tor2 graceful restart %+v: want none (gracefulRestart.enabled false)", t2.GR)
	}
	// Passive: the ToR opened tor1's session, so the node's end is the
	// BGP port and the ToR's an ephemeral one. (tor2's may be opened by
	// either side: both try.)
	ss := testenv.Run(t, "ip", "netns", "exec", f.node, "ss", "-Htn", "state", "established")
	if !strings.Contains(ss, "10.0.1.2:179 ") || strings.Contains(ss, "10.0.1.1:179 ") {
		t.Errorf("node's BGP connections (want tor1's accepted on 10.0.1.2:179, none to 10.0.1.1:179):\n%s", ss)
	}
}

// TestPrivilegedAgentExtendedNextHop announces a dual-stack node's
// prefixes over one IPv6 session (extendedNextHop, RFC 8950) to an FRR ToR
// that takes IPv4 routes with IPv6 next hops: the IPv4 PodCIDR is
// installed in the ToR's kernel via an IPv6 next hop, and the IPv6
// PodCIDR, the IPv6 VIP and the IPv4 VIP all arrive.
func TestPrivilegedAgentExtendedNextHop(t *testing.T) {
	testenv.Privileged(t)
	node, torNS := testenv.NetNS(t, "xnode"), testenv.NetNS(t, "xtor")
	up, down := testenv.Name("u"), testenv.Name("d")
	testenv.Veth(t, node, up, "", torNS, down, "")
	testenv.Run(t, "ip", "-n", node, "addr", "add", "2001:db8:0:1::2/64", "dev", up, "nodad")
	testenv.Run(t, "ip", "-n", torNS, "addr", "add", "2001:db8:0:1::1/64", "dev", down, "nodad")
	nodeAddr := netip.MustParseAddr("2001:db8:0:1::2")
	tor := testenv.StartFRR(t, torNS, testenv.FRRConfig{
		ASN: 65000, RouterID: netip.MustParseAddr("10.0.1.1"),
		Neighbors: []testenv.FRRPeer{{Address: nodeAddr, ASN: 65101, ExtendedNextHop: true}},
	})
	b := testenv.StartBird(t, node, testenv.MinimalConfig)
	fab := &fabric{t: t, node: node, bird: b}
	svcFile := filepath.Join(t.TempDir(), "services.yaml")
	if err := os.WriteFile(svcFile, []byte("services:\n  - name: web\n    externalIPs: [192.0.2.10, \"2001:db8::10\"]\n    ports: [{port: 80}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fab.startAgentProc(fmt.Sprintf(`node: node1
asn: 65101
routerID: 10.0.1.2
podCIDRs: [10.244.1.0/24, "2001:db8:244:1::/64"]
peers: [{name: tor1, address: "2001:db8:0:1::1", asn: 65000, extendedNextHop: true}]
bird: {socket: %s, configDir: %s}
listen: 127.0.0.1:9479
controlSocket: %s
vips: {servicesFile: %s, table: 4245}
`, b.Socket, b.Dir, fab.controlSocket(), svcFile))
	tor.WaitEstablished(t, waitLimit, nodeAddr)
	pod := netip.MustParsePrefix("10.244.1.0/24")
	tor.WaitFor(t, waitLimit, "the IPv4 PodCIDR over the IPv6 session, in the ToR's kernel", func() (bool, string) {
		paths, err := tor.Paths(pod)
		if err != nil || len(paths) != 1 {
			return false, fmt.Sprintf("%+v %v", paths, err)
		}
		out, err := exec.Command("ip", "-n", torNS, "-4", "route", "show", pod.String()).CombinedOutput()
		return err == nil && strings.Contains(string(out), "via inet6 "), fmt.Sprintf("path %+v; kernel %q", paths[0], out)
	})
	// The IPv6 PodCIDR and both VIPs, each over the one session.
	for _, p := range []string{"2001:db8:244:1::/64", "2001:db8::10/128", "192.0.2.10/32"} {
		tor.WaitFor(t, waitLimit, p+" at the ToR", func() (bool, string) {
			paths, err := tor.Paths(netip.MustParsePrefix(p))
			return err == nil && len(paths) == 1, fmt.Sprintf("%+v %v", paths, err)
		})
	}
}
