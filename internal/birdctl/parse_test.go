package birdctl

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The recorded transcripts (TestTranscripts) cover what BIRD printed in the
// lab; these cases cover what it prints in other situations.

func TestParseProtocolRow(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want Protocol
	}{
		{
			name: "today",
			in:   "tor1       BGP        ---        up     19:36:40.123  Established   ",
			want: Protocol{Name: "tor1", Proto: "BGP", Table: "---", State: "up", Since: "19:36:40.123", Info: "Established"},
		},
		{
			name: "older than 20 hours",
			in:   "tor2       BGP        ---        start  2026-11-24    Active        Socket: Connection refused",
			want: Protocol{Name: "tor2", Proto: "BGP", Table: "---", State: "start", Since: "2026-11-24", Info: "Active        Socket: Connection refused"},
		},
		{
			name: "timeformat with a space",
			in:   "own4       Static     master4    up     2026-11-24 19:36:40  ",
			want: Protocol{Name: "own4", Proto: "Static", Table: "master4", State: "up", Since: "2026-11-24 19:36:40"},
		},
		{
			name: "long name shifts the columns",
			in:   "a_very_long_protocol_name BGP        ---        down   19:36:40.123  Received: Administrative shutdown",
			want: Protocol{Name: "a_very_long_protocol_name", Proto: "BGP", Table: "---", State: "down", Since: "19:36:40.123", Info: "Received: Administrative shutdown"},
		},
		{
			name: "no since",
			in:   "p1 Static master4 up",
			want: Protocol{Name: "p1", Proto: "Static", Table: "master4", State: "up"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProtocolRow(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, equateNetip); diff != "" {
				t.Errorf("differs (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := parseProtocolRow("p1 Static master4"); err == nil {
		t.Error("row without state: no error")
	}
}

func TestParseProtocolDetails(t *testing.T) {
	rep := &Reply{Code: 0, Lines: []Line{
		{CodeProtocolHeading, "Name       Proto      Table      State  Since         Info"},
		{CodeProtocol, "tor1       BGP        ---        start  19:36:40.123  Active        Received: Hold timer expired"},
		{CodeProtocolDetail, "  Description:    ToR one"},
		{CodeProtocolDetail, "  BGP state:          Active"},
		{CodeProtocolDetail, "    Neighbor address: fe80::1%eth0"},
		{CodeProtocolDetail, "    Neighbor AS:      4200000001"},
		{CodeProtocolDetail, "    Local AS:         65000"},
		{CodeProtocolDetail, "    Last error:       Received: Hold timer expired"},
		{CodeProtocolDetail, "  Channel ipv6"},
		{CodeProtocolDetail, "    State:          UP"},
		{CodeProtocolDetail, "    Routes:         3 imported, 1 filtered, 2 exported, 3 preferred"},
		{CodeProtocolDetail, "  Channel ipv4"},
		{CodeProtocolDetail, "    State:          DOWN"},
		{CodeProtocolDetail, ""},
		{CodeProtocol, "p2         Pipe       ---        up     19:36:40.123  master4 <=> t2"},
		{CodeProtocolDetail, "  Channel main"},
		{CodeProtocolDetail, "    Table:          master4"},
		{CodeProtocolDetail, "    Export filter:  (unnamed)"},
		{CodeProtocolDetail, "  Routes:         0 imported, 2 exported"},
		{CodeOK, ""},
	}}
	got, err := parseProtocols(rep)
	if err != nil {
		t.Fatal(err)
	}
	want := []Protocol{
		{
			Name: "tor1", Proto: "BGP", Table: "---", State: "start", Since: "19:36:40.123",
			Info: "Active        Received: Hold timer expired", Description: "ToR one", BGPState: "Active",
			NeighborAddress: netip.MustParseAddr("fe80::1%eth0"), NeighborAS: 4200000001, LocalAS: 65000,
			LastError: "Received: Hold timer expired",
			Channels: []Channel{
				{Name: "ipv6", State: "UP", Imported: 3, Filtered: 1, Exported: 2, Preferred: 3},
				{Name: "ipv4", State: "DOWN"},
			},
		},
		{
			Name: "p2", Proto: "Pipe", Table: "---", State: "up", Since: "19:36:40.123", Info: "master4 <=> t2",
			Channels: []Channel{{Name: "main", Table: "master4", Exported: 2}},
		},
	}
	if diff := cmp.Diff(want, got, equateNetip); diff != "" {
		t.Errorf("differs (-want +got):\n%s", diff)
	}
	for _, bad := range []struct{ name, line string }{
		{"neighbor address", "    Neighbor address: 10.0.0"},
		{"AS", "    Neighbor AS:      65000.1"},
		{"route counts", "    Routes:         many imported"},
	} {
		rep := &Reply{Lines: []Line{{CodeProtocol, "tor1 BGP --- up 19:36:40.123"}, {CodeProtocolDetail, bad.line}, {CodeOK, ""}}}
		if bad.name == "route counts" {
			rep.Lines = append(rep.Lines[:1], Line{CodeProtocolDetail, "  Channel ipv4"}, rep.Lines[1], rep.Lines[2])
		}
		if _, err := parseProtocols(rep); err == nil {
			t.Errorf("bad %s: no error", bad.name)
		}
	}
}

func TestParseRouteRow(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want Route
	}{
		{
			name: "static blackhole",
			in:   "10.10.0.0/24         blackhole [own4 19:51:58.788] * (200)",
			want: Route{Net: "10.10.0.0/24", Prefix: netip.MustParsePrefix("10.10.0.0/24"), Dest: "blackhole", Protocol: "own4", Since: "19:51:58.788", Primary: true, Preference: 200},
		},
		{
			name: "bgp with from, igp metric and as path",
			in:   "10.0.0.0/8           unicast [ibgp1 2026-11-24 from 192.0.2.9] * (100/20) [AS65001 65002i]",
			want: Route{
				Net: "10.0.0.0/8", Prefix: netip.MustParsePrefix("10.0.0.0/8"), Dest: "unicast", Protocol: "ibgp1",
				Since: "2026-11-24", From: netip.MustParseAddr("192.0.2.9"), Primary: true, Preference: 100, Info: "[AS65001 65002i]",
			},
		},
		{
			name: "kernel sync error, stale bgp route",
			in:   "10.1.0.0/16          unicast [tor1 19:51:58.788] ! (100s/?) [AS65001?]",
			want: Route{Net: "10.1.0.0/16", Prefix: netip.MustParsePrefix("10.1.0.0/16"), Dest: "unicast", Protocol: "tor1", Since: "19:51:58.788", Primary: true, Preference: 100, Info: "[AS65001?]"},
		},
		{
			name: "second route of a network",
			in:   "                     unreachable [multi2 19:53:35.889] (200)",
			want: Route{Dest: "unreachable", Protocol: "multi2", Since: "19:53:35.889", Preference: 200},
		},
		{
			name: "no destination",
			in:   "10.2.0.0/16          [p 19:53:35.889] * (200)",
			want: Route{Net: "10.2.0.0/16", Prefix: netip.MustParsePrefix("10.2.0.0/16"), Protocol: "p", Since: "19:53:35.889", Primary: true, Preference: 200},
		},
		{
			name: "time with a space",
			in:   "2001:db8::/32        unicast [tor1 2026-11-24 19:36:40] * (100) [i]",
			want: Route{Net: "2001:db8::/32", Prefix: netip.MustParsePrefix("2001:db8::/32"), Dest: "unicast", Protocol: "tor1", Since: "2026-11-24 19:36:40", Primary: true, Preference: 100, Info: "[i]"},
		},
		{
			name: "network that is not an IP prefix",
			in:   "1:2 10.0.0.0/8       unicast [v 19:36:40.123] * (100)",
			want: Route{Net: "1:2 10.0.0.0/8", Dest: "unicast", Protocol: "v", Since: "19:36:40.123", Primary: true, Preference: 100},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRouteRow(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, equateNetip); diff != "" {
				t.Errorf("differs (-want +got):\n%s", diff)
			}
		})
	}
	for _, bad := range []string{
		"10.0.0.0/8 unicast",                         // no [
		"10.0.0.0/8 unicast [p 12:00:00.000",         // no ]
		"10.0.0.0/8 unicast [ 12:00:00.000] (1)",     // no protocol
		"10.0.0.0/8 unicast [p 12:00 from x] (1)",    // bad from
		"10.0.0.0/8 unicast [p 12:00:00.000] * (1",   // no )
		"10.0.0.0/8 unicast [p 12:00:00.000] * (x1)", // bad preference
	} {
		if _, err := parseRouteRow(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseRoutesNextHops(t *testing.T) {
	rep := &Reply{Lines: []Line{
		{CodeRoute, "Table master4:"},
		{CodeRoute, "10.0.0.0/24          unicast [direct1 19:36:40.123] * (240)"},
		{CodeRoute, "\tdev eth0"},
		{CodeRoute, "10.1.0.0/24          unicast [static1 19:36:40.123] * (200)"},
		{CodeRoute, "\tvia 10.0.0.1 on eth0 mpls 100/200 weight 3"},
		{CodeRoute, "\tvia fe80::1 on eth1 onlink"},
		{CodeRouteDetail, "\tType: static univ"},
		{CodeRouteAttr, "\tBGP.community: (1,1)"},
		{CodeRouteAttr, "\t\t(1,2)"},
		{CodeOK, ""},
	}}
	got, err := parseRoutes(rep)
	if err != nil {
		t.Fatal(err)
	}
	want := []Route{
		{
			Net: "10.0.0.0/24", Prefix: netip.MustParsePrefix("10.0.0.0/24"), Table: "master4", Dest: "unicast",
			Interface: "eth0", NextHops: []NextHop{{Interface: "eth0"}}, Protocol: "direct1", Since: "19:36:40.123",
			Primary: true, Preference: 240,
		},
		{
			Net: "10.1.0.0/24", Prefix: netip.MustParsePrefix("10.1.0.0/24"), Table: "master4", Dest: "unicast",
			Gateway: netip.MustParseAddr("10.0.0.1"), Interface: "eth0",
			NextHops: []NextHop{
				{Gateway: netip.MustParseAddr("10.0.0.1"), Interface: "eth0", Weight: 3},
				{Gateway: netip.MustParseAddr("fe80::1"), Interface: "eth1"},
			},
			Protocol: "static1", Since: "19:36:40.123", Primary: true, Preference: 200,
			Attrs: map[string]string{"Type": "static univ", "BGP.community": "(1,1) (1,2)"},
		},
	}
	if diff := cmp.Diff(want, got, equateNetip); diff != "" {
		t.Errorf("differs (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		name  string
		lines []Line
	}{
		{"next hop first", []Line{{CodeRoute, "\tvia 10.0.0.1 on eth0"}, {CodeOK, ""}}},
		{"attribute first", []Line{{CodeRouteDetail, "\tType: static univ"}, {CodeOK, ""}}},
		{"second route first", []Line{{CodeRoute, "                     unreachable [s 1] (200)"}, {CodeOK, ""}}},
		{"bad gateway", []Line{{CodeRoute, "10.0.0.0/8 unicast [s 1] (1)"}, {CodeRoute, "\tvia 10.0.0 on eth0"}, {CodeOK, ""}}},
		{"bad weight", []Line{{CodeRoute, "10.0.0.0/8 unicast [s 1] (1)"}, {CodeRoute, "\tvia 10.0.0.1 weight x"}, {CodeOK, ""}}},
	} {
		if _, err := parseRoutes(&Reply{Lines: tc.lines}); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestParseRouteCount(t *testing.T) {
	for _, tc := range []struct {
		name string
		rep  *Reply
		want int
	}{
		{"one table", &Reply{Code: 0, Lines: []Line{{CodeRoute, "2 of 2 routes for 2 networks in table master4"}, {0, ""}}}, 2},
		{"tables summed", &Reply{Code: 0, Lines: []Line{{CodeRoute, "2 of 5 routes for 2 networks in table master4"}, {CodeRoute, "1 of 1 routes for 1 networks in table master6"}, {0, ""}}}, 3},
		{"total wins", &Reply{Code: 14, Lines: []Line{{CodeRoute, "2 of 2 routes for 2 networks in table master4"}, {CodeRoute, "1 of 1 routes for 1 networks in table master6"}, {14, "Total: 3 of 3 routes for 3 networks in 2 tables"}}}, 3},
		{"nothing", &Reply{Code: 0, Lines: []Line{{0, ""}}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRouteCount(tc.rep)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
	if _, err := parseRouteCount(&Reply{Lines: []Line{{CodeRoute, "Table master4:"}, {0, ""}}}); err == nil {
		t.Error("route rows instead of counts: no error")
	}
}

func TestParseConfigure(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rep     *Reply
		want    ConfigureResult
		wantErr error
	}{
		{
			name: "shutting down",
			rep:  &Reply{Code: 6, Text: "Reconfiguration ignored, shutting down", Lines: []Line{{2, "Reading configuration from /x"}, {6, "Reconfiguration ignored, shutting down"}}},
			want: ConfigureResult{Code: 6, Message: "Reconfiguration ignored, shutting down", File: "/x"}, wantErr: ErrShuttingDown,
		},
		{
			name: "fractional undo",
			rep:  &Reply{Code: 3, Text: "Reconfigured", Lines: []Line{{22, "Undo scheduled in 1.5 s"}, {3, "Reconfigured"}}},
			want: ConfigureResult{Code: 3, Message: "Reconfigured", UndoIn: 1500 * time.Millisecond},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConfigure("configure", tc.rep)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("differs (-want +got):\n%s", diff)
			}
		})
	}
	for _, bad := range []*Reply{
		{Code: 0, Lines: []Line{{0, ""}}},
		{Code: 3, Lines: []Line{{22, "Undo scheduled in soon"}, {3, ""}}},
		{Code: 3, Lines: []Line{{22, "Undo scheduled in NaN s"}, {3, ""}}},
	} {
		if _, err := parseConfigure("configure", bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
	if _, err := parseConfigStatus(&Reply{Lines: []Line{{0, ""}}}); err == nil {
		t.Error("configure status without a state line: no error")
	}
}

func TestIsSymbol(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"tor1", true}, {"_x", true}, {"Master4", true}, {"a_b_9", true},
		{"", false}, {"1tor", false}, {"tor-1", false}, {"tor 1", false}, {"tör", false}, {"a\"", false},
		{string(make([]byte, 65)), false},
	} {
		if got := isSymbol(tc.in); got != tc.want {
			t.Errorf("isSymbol(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
