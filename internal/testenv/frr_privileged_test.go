package testenv

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// equateNetip lets cmp compare netip values.
var equateNetip = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

// frrTestTimeout bounds every wait of the FRR tests (a broken setup, not a
// speed assertion).
const frrTestTimeout = 30 * time.Second

// frrTestNode is one BIRD "node" peering with the FRR ToR over its own veth.
type frrTestNode struct {
	asn      uint32
	link     int // the link is 10.0.<link>.0/30 and fd00:0:<link>::/64, ToR .1, node .2
	prefixes []netip.Prefix
}

func (n frrTestNode) torAddr4() netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("10.0.%d.1", n.link))
}
func (n frrTestNode) nodeAddr4() netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("10.0.%d.2", n.link))
}
func (n frrTestNode) torAddr6() netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("fd00:0:%d::1", n.link))
}
func (n frrTestNode) nodeAddr6() netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("fd00:0:%d::2", n.link))
}

// birdConfig is the config roost-agent would render for this node: static
// blackholes for what it owns, exported over one IPv4 and one IPv6 session,
// nothing imported.
func (n frrTestNode) birdConfig() string {
	var b strings.Builder
	fmt.Fprintf(&b, "router id %s;\nprotocol device {}\n", n.nodeAddr4())
	for _, family := range []string{"ipv4", "ipv6"} {
		fmt.Fprintf(&b, "protocol static owned_%s {\n  %s;\n", family, family)
		for _, p := range n.prefixes {
			if p.Addr().Is4() == (family == "ipv4") {
				fmt.Fprintf(&b, "  route %s blackhole;\n", p)
			}
		}
		b.WriteString("}\n")
	}
	for _, s := range []struct {
		name, family  string
		local, remote netip.Addr
	}{
		{"tor_v4", "ipv4", n.nodeAddr4(), n.torAddr4()},
		{"tor_v6", "ipv6", n.nodeAddr6(), n.torAddr6()},
	} {
		fmt.Fprintf(&b, `protocol bgp %s {
  local %s as %d;
  neighbor %s as 65000;
  connect delay time 1;
  %s { import none; export where source = RTS_STATIC; };
}
`, s.name, s.local, n.asn, s.remote, s.family)
	}
	return b.String()
}

// TestPrivilegedFRRToR builds a ToR namespace running FRR and two node
// namespaces running BIRD, each with its own PodCIDR and one VIP they both
// announce, and checks what the ToR reports and installs: sessions
// established, each PodCIDR via its node, the VIP via both nodes (ECMP) in
// bgpd and in the kernel, and a session reset counted.
func TestPrivilegedFRRToR(t *testing.T) {
	Privileged(t)
	vip := netip.MustParsePrefix("192.0.2.10/32")
	nodes := []frrTestNode{
		{asn: 65101, link: 1, prefixes: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), vip, netip.MustParsePrefix("fd00:244:1::/64")}},
		{asn: 65102, link: 2, prefixes: []netip.Prefix{netip.MustParsePrefix("10.244.2.0/24"), vip}},
	}

	tor := NetNS(t, "tor")
	cfg := FRRConfig{ASN: 65000, RouterID: netip.MustParseAddr("10.0.1.1")}
	nodeNS := make([]string, len(nodes))
	for i, n := range nodes {
		nodeNS[i] = NetNS(t, "node")
		torIf, nodeIf := Name("t"), Name("n")
		Veth(t, tor, torIf, n.torAddr4().String()+"/30", nodeNS[i], nodeIf, n.nodeAddr4().String()+"/30")
		Run(t, "ip", "-n", tor, "addr", "add", n.torAddr6().String()+"/64", "dev", torIf, "nodad")
		Run(t, "ip", "-n", nodeNS[i], "addr", "add", n.nodeAddr6().String()+"/64", "dev", nodeIf, "nodad")
		cfg.Neighbors = append(cfg.Neighbors,
			FRRPeer{Address: n.nodeAddr4(), ASN: n.asn}, FRRPeer{Address: n.nodeAddr6(), ASN: n.asn})
	}
	frr := StartFRR(t, tor, cfg)
	birds := make([]*Bird, len(nodes))
	for i, n := range nodes {
		birds[i] = StartBird(t, nodeNS[i], n.birdConfig())
	}

	peers := make([]netip.Addr, 0, len(cfg.Neighbors))
	for _, p := range cfg.Neighbors {
		peers = append(peers, p.Address)
	}
	frr.WaitEstablished(t, frrTestTimeout, peers...)
	node1, node2 := nodes[0].nodeAddr4(), nodes[1].nodeAddr4()
	wantBGP := map[netip.Prefix][]netip.Addr{
		netip.MustParsePrefix("10.244.1.0/24"):   {node1},
		netip.MustParsePrefix("10.244.2.0/24"):   {node2},
		vip:                                      {node1, node2},
		netip.MustParsePrefix("fd00:244:1::/64"): {nodes[0].nodeAddr6()},
	}
	frr.WaitFor(t, frrTestTimeout, "BGP table complete", func() (bool, string) {
		got, err := frr.BGPRoutes()
		if err != nil {
			return false, err.Error()
		}
		return cmp.Equal(got, wantBGP, equateNetip), fmt.Sprint(got)
	})

	t.Run("neighbors", func(t *testing.T) {
		got, err := frr.Neighbors()
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name     string
			peer     netip.Addr
			asn      uint32
			prefixes int
		}{
			{"node1 ipv4", node1, 65101, 2},
			{"node1 ipv6", nodes[0].nodeAddr6(), 65101, 1},
			{"node2 ipv4", node2, 65102, 2},
			{"node2 ipv6", nodes[1].nodeAddr6(), 65102, 0},
		} {
			t.Run(tc.name, func(t *testing.T) {
				n, ok := got[tc.peer]
				if !ok {
					t.Fatalf("no neighbor %s in %v", tc.peer, got)
				}
				want := FRRNeighbor{State: "Established", RemoteASN: tc.asn, ConnectionsEstablished: 1, PrefixesReceived: tc.prefixes}
				n.Uptime = 0 // depends on timing
				if diff := cmp.Diff(want, n); diff != "" {
					t.Errorf("neighbor %s (-want +got):\n%s", tc.peer, diff)
				}
			})
		}
	})

	t.Run("kernel", func(t *testing.T) {
		// zebra installs asynchronously from bgpd's table.
		var got map[netip.Prefix][]netip.Addr
		frr.WaitFor(t, frrTestTimeout, "kernel routes installed", func() (bool, string) {
			var err error
			got, err = frr.KernelRoutes()
			if err != nil {
				return false, err.Error()
			}
			return len(got) == len(wantBGP), fmt.Sprint(got)
		})
		for _, tc := range []struct {
			name   string
			prefix netip.Prefix
			want   []netip.Addr
		}{
			{"node1 podcidr", netip.MustParsePrefix("10.244.1.0/24"), []netip.Addr{node1}},
			{"node2 podcidr", netip.MustParsePrefix("10.244.2.0/24"), []netip.Addr{node2}},
			{"vip ecmp", vip, []netip.Addr{node1, node2}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if diff := cmp.Diff(tc.want, got[tc.prefix], equateNetip); diff != "" {
					t.Errorf("kernel route %s gateways (-want +got):\n%s", tc.prefix, diff)
				}
			})
		}
		t.Run("ipv6 via link-local", func(t *testing.T) {
			gws := got[netip.MustParsePrefix("fd00:244:1::/64")]
			if len(gws) != 1 || !gws[0].IsLinkLocalUnicast() {
				t.Errorf("kernel route fd00:244:1::/64 gateways = %v, want one link-local", gws)
			}
		})
	})

	t.Run("reset counted", func(t *testing.T) {
		birds[1].Kill()
		birds[1].Start("")
		frr.WaitFor(t, frrTestTimeout, "node2 ipv4 session re-established", func() (bool, string) {
			got, err := frr.Neighbors()
			if err != nil {
				return false, err.Error()
			}
			n := got[node2]
			return n.State == "Established" && n.ConnectionsEstablished == 2, fmt.Sprintf("%+v", n)
		})
		got, err := frr.Neighbors()
		if err != nil {
			t.Fatal(err)
		}
		if n := got[node2]; n.ConnectionsDropped != 1 {
			t.Errorf("node2 after a BIRD crash: ConnectionsDropped = %d, want 1 (%+v)", n.ConnectionsDropped, n)
		}
		if n := got[node1]; n.ConnectionsDropped != 0 || n.ConnectionsEstablished != 1 {
			t.Errorf("node1, untouched: %+v, want 1 established and 0 dropped", n)
		}
	})

	t.Run("vtysh", func(t *testing.T) {
		out, err := frr.Vtysh("show ip route bgp")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "10.244.1.0/24") {
			t.Errorf("show ip route bgp lacks 10.244.1.0/24:\n%s", out)
		}
		if _, err := frr.Vtysh("show no such thing"); err == nil {
			t.Error("vtysh accepted an unknown command")
		}
	})
}

// TestPrivilegedFRRRejectsConfig checks that StartFRR refuses a config
// bgpd would not run with, before starting anything.
func TestPrivilegedFRRRejectsConfig(t *testing.T) {
	Privileged(t)
	for _, tc := range []struct {
		name string
		cfg  FRRConfig
		want []string
	}{
		{"no asn", FRRConfig{RouterID: netip.MustParseAddr("10.0.0.1")}, []string{"ASN: must be set"}},
		{"ipv6 router id", FRRConfig{ASN: 65000, RouterID: netip.MustParseAddr("fd00::1")}, []string{"RouterID"}},
		{"duplicate and incomplete neighbors", FRRConfig{ASN: 65000, RouterID: netip.MustParseAddr("10.0.0.1"), Neighbors: []FRRPeer{
			{Address: netip.MustParseAddr("10.0.0.2"), ASN: 65001},
			{Address: netip.MustParseAddr("10.0.0.2"), ASN: 65001},
			{Address: netip.MustParseAddr("10.0.0.3")},
		}}, []string{"10.0.0.2 is listed twice", "10.0.0.3: ASN must be set"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := frrBGPConfig("x", tc.cfg)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	t.Run("rendered in address order", func(t *testing.T) {
		conf, err := frrBGPConfig("x", FRRConfig{ASN: 65000, RouterID: netip.MustParseAddr("10.0.0.1"), Neighbors: []FRRPeer{
			{Address: netip.MustParseAddr("fd00::2"), ASN: 65001},
			{Address: netip.MustParseAddr("10.0.0.2"), ASN: 65001},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if i, j := strings.Index(conf, "neighbor 10.0.0.2 remote-as"), strings.Index(conf, "neighbor fd00::2 remote-as"); i < 0 || j < i {
			t.Errorf("neighbors not rendered in address order:\n%s", conf)
		}
	})
}
