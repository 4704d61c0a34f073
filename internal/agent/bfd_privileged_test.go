package agent

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/roost-net/roost/internal/testenv"
)

// TestPrivilegedAgentBFD runs the roost-agent binary with BFD on both peers
// against FRR ToRs running bfdd (100 ms, multiplier 3): when the node's
// link to tor1 silently stops carrying anything (every packet dropped in
// the node, the link itself up), tor1 takes the node's PodCIDR out of its
// FIB in under a second, far from BGP's hold time; tor2 keeps it; and the
// session and the route come back when the link does.
func TestPrivilegedAgentBFD(t *testing.T) {
	testenv.Binary(t, "iptables")
	f := newFabricWith(t, testenv.FRRConfig{BFD: true})
	yaml := fmt.Sprintf(`node: node1
asn: 65101
routerID: 10.0.1.2
podCIDRs: [10.244.1.0/24]
peers:
  - {name: tor1, address: 10.0.1.1, asn: 65000, bfd: {interval: 100ms, multiplier: 3}}
  - {name: tor2, address: 10.0.2.1, asn: 65000, bfd: {}}
bird: {socket: %s, configDir: %s}
listen: 127.0.0.1:9479
controlSocket: %s
`, f.bird.Socket, f.bird.Dir, f.controlSocket())
	f.startAgentProc(yaml)
	f.waitAnnounced("10.244.1.0/24")
	f.waitEstablished()
	for i, tor := range f.tors {
		tor.WaitFor(t, waitLimit, fmt.Sprintf("tor%d's BFD session up", i+1), func() (bool, string) {
			out, err := tor.Vtysh("show bfd peers json")
			if err != nil {
				return false, err.Error()
			}
			var peers []struct {
				Peer   string `json:"peer"`
				Status string `json:"status"`
			}
			if err := json.Unmarshal([]byte(out), &peers); err != nil {
				return false, out
			}
			return len(peers) == 1 && peers[0].Status == "up", out
		})
	}

	// tor1's kernel FIB, polled.
	h := handleIn(t, f.torNS[0])
	pod := netip.MustParsePrefix("10.244.1.0/24")
	has := func() bool {
		rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: prefixNet(pod)}, netlink.RT_FILTER_DST)
		if err != nil {
			t.Fatal(err)
		}
		return len(rs) > 0
	}
	if !has() {
		t.Fatal("tor1 has no route to the PodCIDR before the cut")
	}
	drop := func(op string) {
		t.Helper()
		for _, chain := range []string{"INPUT -i", "OUTPUT -o"} {
			var c, dir string
			fmt.Sscan(chain, &c, &dir)
			testenv.Run(t, "ip", "netns", "exec", f.node, "iptables", op, c, dir, f.upIf[0], "-j", "DROP")
		}
	}
	start := time.Now()
	drop("-I")
	for has() {
		if time.Since(start) > 10*time.Second {
			t.Fatal("tor1 still routes the PodCIDR 10 s after the cut")
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(start)
	t.Logf("tor1 withdrew the PodCIDR %v after the cut", took)
	if took >= time.Second {
		t.Errorf("tor1 withdrew the PodCIDR %v after the cut, want under 1 s (BFD: 3 x 100 ms)", took)
	}
	got, err := f.tors[1].KernelRoutes()
	if err != nil || len(got[pod]) != 1 {
		t.Errorf("tor2's FIB after tor1's link was cut: %v %v, want the PodCIDR via the node", got, err)
	}

	drop("-D")
	f.waitAnnounced("10.244.1.0/24")
}

// handleIn is a netlink handle in namespace ns, closed at cleanup.
func handleIn(t *testing.T, ns string) *netlink.Handle {
	t.Helper()
	n, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	h, err := netlink.NewHandleAt(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// prefixNet is p as netlink takes it.
func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
