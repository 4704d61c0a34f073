package birdctl

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/testenv"
)

// bgpLab is a node BIRD (roost's side) and a ToR BIRD in two namespaces
// joined by a veth pair: node 10.99.0.1 AS 65000, tor 10.99.0.2 AS 65001.
// The node has a second peer, tor2 at 10.99.0.3, that does not exist, so
// that session never leaves Connect/Active.
type bgpLab struct {
	node, tor     *testenv.Bird
	nodeIf, torIf string // the veth ends
}

// labOptions shape the node's config.
type labOptions struct {
	bigRoutes   int // static routes in table big4, for large replies
	communities int // communities the node adds to what it exports
	withoutTor1 bool
}

// nodeConfig returns the node BIRD's config.
func nodeConfig(o labOptions) string {
	var b strings.Builder
	b.WriteString(`router id 10.99.0.1;
protocol device {}
protocol static own4 {
  ipv4;
  route 10.10.0.0/24 blackhole;
  route 10.20.0.5/32 blackhole;
}
protocol static own6 {
  ipv6;
  route 2001:db8:10::/64 blackhole;
}
ipv4 table multi4;
protocol static multi {
  ipv4 { table multi4; };
  route 10.30.0.0/24 via 10.99.0.2 weight 1 via 10.99.0.5 weight 2;
}
protocol static multi2 {
  ipv4 { table multi4; };
  route 10.30.0.0/24 unreachable;
  route 10.31.0.0/24 prohibit;
}
filter to_tor {
  if proto != "own4" then reject;
`)
	for i := 1; i <= o.communities; i++ {
		fmt.Fprintf(&b, "  bgp_community.add((65000,%d));\n", i)
	}
	b.WriteString("  accept;\n}\n")
	if !o.withoutTor1 {
		b.WriteString(`protocol bgp tor1 {
  local 10.99.0.1 as 65000;
  neighbor 10.99.0.2 as 65001;
  ipv4 { import none; export filter to_tor; };
}
`)
	}
	b.WriteString(`protocol bgp tor2 {
  local 10.99.0.1 as 65000;
  neighbor 10.99.0.3 as 65002;
  ipv4 { import none; export filter to_tor; };
}
`)
	if o.bigRoutes > 0 {
		b.WriteString("ipv4 table big4;\nprotocol static big {\n  ipv4 { table big4; };\n")
		for i := range o.bigRoutes {
			fmt.Fprintf(&b, "  route 100.64.%d.%d/32 blackhole;\n", i/256, i%256)
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// torConfig is the ToR BIRD's config: it learns everything from the node.
const torConfig = `router id 10.99.0.2;
protocol device {}
protocol bgp node1 {
  local 10.99.0.2 as 65001;
  neighbor 10.99.0.1 as 65000;
  ipv4 { import all; export none; };
}
`

// startBGPLab builds the lab and waits until the node's tor1 session is
// established and the ToR has the node's two routes.
func startBGPLab(t *testing.T, o labOptions) *bgpLab {
	t.Helper()
	testenv.Privileged(t)
	nsNode, nsTor := testenv.NetNS(t, "bcn"), testenv.NetNS(t, "bct")
	ifNode, ifTor := testenv.Name("bcn"), testenv.Name("bct")
	testenv.Veth(t, nsNode, ifNode, "10.99.0.1/24", nsTor, ifTor, "10.99.0.2/24")
	lab := &bgpLab{
		tor:    testenv.StartBird(t, nsTor, torConfig),
		node:   testenv.StartBird(t, nsNode, nodeConfig(o)),
		nodeIf: ifNode, torIf: ifTor,
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tor := dialT(t, lab.tor.Socket)
	for {
		n, err := tor.RouteCount(ctx, RouteQuery{Protocol: "node1"})
		if err == nil && n == 2 {
			return lab
		}
		if ctx.Err() != nil {
			t.Fatalf("tor has not learned the node's 2 routes within 30s (last: %d, %v)\nnode log:\n%s\ntor log:\n%s",
				n, err, lab.node.LogText(), lab.tor.LogText())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
