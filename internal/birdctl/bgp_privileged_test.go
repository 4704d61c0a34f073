package birdctl

import (
	"errors"
	"net/netip"
	"path/filepath"
	"testing"
)

// TestPrivilegedBGP reads BGP protocols and routes from two real BIRDs in
// namespaces: the node with an established session (tor1) and one that
// never comes up (tor2), and the ToR that learns the node's routes.
func TestPrivilegedBGP(t *testing.T) {
	lab := startBGPLab(t, labOptions{communities: 3})
	node, tor := dialT(t, lab.node.Socket), dialT(t, lab.tor.Socket)
	ctx := t.Context()

	t.Run("protocols", func(t *testing.T) {
		ps, err := node.Protocols(ctx, ProtocolQuery{All: true, Pattern: "tor*"})
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != 2 {
			t.Fatalf("got %d protocols, want tor1 and tor2: %+v", len(ps), ps)
		}
		up, down := ps[0], ps[1]
		if up.Name != "tor1" || up.Proto != "BGP" || up.State != "up" || up.Info != "Established" ||
			up.BGPState != "Established" || up.NeighborAddress != netip.MustParseAddr("10.99.0.2") ||
			up.NeighborAS != 65001 || up.LocalAS != 65000 || up.NeighborID != netip.MustParseAddr("10.99.0.2") {
			t.Errorf("tor1 = %+v", up)
		}
		wantCh := Channel{Name: "ipv4", State: "UP", Table: "master4", InputFilter: "REJECT", OutputFilter: "to_tor", Exported: 2}
		if len(up.Channels) != 1 || up.Channels[0] != wantCh {
			t.Errorf("tor1 channels = %+v, want %+v", up.Channels, wantCh)
		}
		if down.Name != "tor2" || down.State != "start" || (down.BGPState != "Connect" && down.BGPState != "Active") ||
			down.NeighborAddress != netip.MustParseAddr("10.99.0.3") || down.NeighborAS != 65002 || down.NeighborID.IsValid() ||
			len(down.Channels) != 1 || down.Channels[0].State != "DOWN" {
			t.Errorf("tor2 = %+v", down)
		}
	})
	t.Run("exported to the tor", func(t *testing.T) {
		rs, err := node.Routes(ctx, RouteQuery{Export: "tor1"})
		if err != nil {
			t.Fatal(err)
		}
		var got []netip.Prefix
		for _, r := range rs {
			got = append(got, r.Prefix)
		}
		want := []netip.Prefix{netip.MustParsePrefix("10.10.0.0/24"), netip.MustParsePrefix("10.20.0.5/32")}
		if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("exported %v, want %v", got, want)
		}
		if n, err := node.RouteCount(ctx, RouteQuery{Export: "tor1"}); err != nil || n != 2 {
			t.Errorf("count = %d, %v, want 2", n, err)
		}
		if _, err := node.Routes(ctx, RouteQuery{Export: "tor2"}); !errors.Is(err, ErrNoTables) {
			t.Errorf("export to the down peer: err = %v, want ErrNoTables", err)
		}
	})
	t.Run("learned by the tor", func(t *testing.T) {
		rs, err := tor.Routes(ctx, RouteQuery{Protocol: "node1", All: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 2 {
			t.Fatalf("got %d routes, want 2", len(rs))
		}
		r := rs[0]
		if r.Prefix != netip.MustParsePrefix("10.10.0.0/24") || r.Dest != "unicast" || r.Protocol != "node1" ||
			!r.Primary || r.Preference != 100 || r.Info != "[AS65000i]" ||
			r.Gateway != netip.MustParseAddr("10.99.0.1") || r.Interface != lab.torIf || len(r.NextHops) != 1 {
			t.Errorf("route = %+v", r)
		}
		for k, v := range map[string]string{
			"Type": "BGP univ", "BGP.origin": "IGP", "BGP.as_path": "65000", "BGP.next_hop": "10.99.0.1",
			"BGP.local_pref": "100", "BGP.community": "(65000,1) (65000,2) (65000,3)",
		} {
			if r.Attrs[k] != v {
				t.Errorf("attribute %s = %q, want %q", k, r.Attrs[k], v)
			}
		}
	})
	t.Run("status", func(t *testing.T) {
		s, err := node.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Started with -R, the node waits for tor2 to recover, which it
		// never does.
		if !s.GracefulRestart || s.RouterID != netip.MustParseAddr("10.99.0.1") {
			t.Errorf("node status = %+v, want graceful restart recovery", s)
		}
	})
	t.Run("remove a session", func(t *testing.T) {
		file := filepath.Join(lab.node.Dir, "notor1.conf")
		writeFile(t, file, nodeConfig(labOptions{communities: 3, withoutTor1: true}))
		res, err := node.Configure(ctx, ConfigureOptions{File: file})
		if err != nil {
			t.Fatal(err)
		}
		if res.Code != CodeReconfigured && res.Code != CodeReconfigInProgress {
			t.Errorf("result = %+v", res)
		}
		waitReconfigured(t, node)
		if _, err := node.Protocols(ctx, ProtocolQuery{Pattern: "tor1"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("tor1 after removal: err = %v, want ErrNotFound", err)
		}
		waitFor(t, "the tor to withdraw the node's routes", func() bool {
			n, err := tor.RouteCount(ctx, RouteQuery{Protocol: "node1"})
			return err == nil && n == 0 || errors.Is(err, ErrNoTables)
		})
	})
}
