package birdconf

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/roost-net/roost/internal/community"
	"github.com/roost-net/roost/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func addr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func prefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = prefix(s)
	}
	return out
}

// twoPeers is the example: a node in AS 65101 under two ToRs.
func twoPeers() Input {
	return Input{
		RouterID: addr("10.0.1.2"),
		ASN:      65101,
		Peers: []Peer{
			{Name: "tor1", Address: addr("10.0.1.1"), ASN: 65000},
			{Name: "tor2", Address: addr("10.0.2.1"), ASN: 65000},
		},
		Prefixes: prefixes("10.244.1.0/24"),
	}
}

// dualStack has IPv4 and IPv6 peers and prefixes.
func dualStack() Input {
	return Input{
		RouterID: addr("10.0.1.2"),
		ASN:      65101,
		Peers: []Peer{
			{Name: "tor1", Address: addr("10.0.1.1"), ASN: 65000},
			{Name: "tor1-v6", Address: addr("2001:db8:0:1::1"), ASN: 65000},
			{Name: "tor2", Address: addr("10.0.2.1"), ASN: 65000},
			{Name: "tor2-v6", Address: addr("2001:db8:0:2::1"), ASN: 65000},
		},
		Prefixes: prefixes("10.244.1.0/24", "2001:db8:244:1::/64"),
	}
}

// goldenCases are rendered to testdata/<name>.conf. A case with sameAs must
// render exactly the bytes of that case.
var goldenCases = []struct {
	name   string
	in     Input
	sameAs string
}{
	{
		name: "one_peer",
		in: Input{
			RouterID: addr("10.0.1.2"), ASN: 65101,
			Peers:    []Peer{{Name: "tor1", Address: addr("10.0.1.1"), ASN: 65000}},
			Prefixes: prefixes("10.244.1.0/24"),
		},
	},
	{name: "two_peers", in: twoPeers()},
	{
		name: "bfd",
		in: Input{
			RouterID: addr("10.0.1.2"), ASN: 65101,
			Peers: []Peer{
				{Name: "tor1", Address: addr("10.0.1.1"), ASN: 65000, BFD: &BFD{Interval: 100 * time.Millisecond, Multiplier: 3}},
				{Name: "tor2", Address: addr("10.0.2.1"), ASN: 65000},
			},
			Prefixes: prefixes("10.244.1.0/24"),
		},
	},
	{
		name: "vips",
		in: Input{
			RouterID: addr("10.0.1.2"), ASN: 65101,
			Peers:    []Peer{{Name: "tor1", Address: addr("10.0.1.1"), ASN: 65000}},
			Prefixes: prefixes("10.244.1.0/24"),
			VIPTable: 167,
		},
	},
	{name: "dual_stack", in: dualStack()},
	{
		name: "no_prefixes",
		in: Input{
			RouterID: addr("10.0.1.2"), ASN: 65101,
			Peers: []Peer{
				{Name: "tor1", Address: addr("10.0.1.1"), ASN: 65000},
				{Name: "tor2", Address: addr("10.0.2.1"), ASN: 65000},
			},
		},
	},
	{
		name: "no_peers",
		in:   Input{RouterID: addr("10.0.1.2"), ASN: 65101, Prefixes: prefixes("10.244.1.0/24")},
	},
	{
		name: "password_holdtime",
		in: Input{
			RouterID: addr("10.0.1.2"), ASN: 4200000101,
			Peers: []Peer{
				{Name: "tor-a", Address: addr("10.0.1.1"), ASN: 4200000000, Password: "s3cret", HoldTime: 9},
				// Characters that mean something to BIRD outside a string.
				{Name: "tor-b", Address: addr("10.0.2.1"), ASN: 4200000000, Password: "p#a;s{s}'w/*o*/rd", HoldTime: 65535},
			},
			Prefixes: prefixes("10.244.1.0/24"),
		},
	},
	{
		name: "link_local_peer",
		in: Input{
			RouterID: addr("10.0.1.2"), ASN: 65101,
			Peers:    []Peer{{Name: "tor1", Address: addr("fe80::1%eth0.100"), ASN: 65000}},
			Prefixes: prefixes("2001:db8:244:1::/64"),
		},
	},
	{
		name: "unsorted_duplicate",
		in: Input{
			RouterID: addr("10.0.1.2"), ASN: 65101,
			Peers: []Peer{
				{Name: "tor2", Address: addr("10.0.2.1"), ASN: 65000},
				{Name: "tor1", Address: addr("10.0.1.1"), ASN: 65000},
			},
			// Host bits set, and the same prefix twice.
			Prefixes: prefixes("10.244.1.7/24", "10.244.1.0/24"),
		},
		sameAs: "two_peers",
	},
	{
		// As roost-agent renders it by default: BIRD also logs to a
		// file beside its control socket.
		name: "log_file",
		in: func() Input {
			in := twoPeers()
			in.LogFile = "/run/bird/bird.log"
			return in
		}(),
	},
	{
		// Every per-peer option at once, on IPv4 and IPv6 peers, and
		// one peer with every option at its zero value.
		name: "peer_options",
		in: Input{
			RouterID: addr("10.0.1.2"), ASN: 4200000101,
			Peers: []Peer{
				{
					Name: "tor1", Address: addr("10.0.1.1"), ASN: 4200000000, HoldTime: 9,
					Options: Options{
						KeepaliveTime: 3, ConnectRetryTime: 5, Multihop: 2, SourceAddress: addr("10.0.1.2"), Port: 1179, Passive: true,
						GracefulRestartTime: 300, MED: new(uint32(50)),
						Communities: []community.Community{{A: 65000, B: 7}, {Large: true, A: 4200000101, B: 9, C: 9}},
					},
				},
				{Name: "tor1-v6", Address: addr("2001:db8:0:1::1"), ASN: 65000, Options: Options{ExtendedNextHop: true, NoGracefulRestart: true}},
				{Name: "tor2", Address: addr("10.0.2.1"), ASN: 65000},
			},
			Prefixes: prefixes("10.244.1.0/24", "2001:db8:244:1::/64"),
		},
	},
	{
		// Communities per prefix class and per tagged VIP.
		name: "communities",
		in: func() Input {
			in := twoPeers()
			in.VIPTable = 167
			in.PodCIDRCommunities = []community.Community{{A: 65000, B: 100}, {Large: true, A: 65101, B: 1, C: 1}}
			in.VIPCommunities = []community.Community{{A: 65000, B: 200}}
			in.VIPTags = []VIPTag{
				{Metric: 16777300, Communities: []community.Community{{A: 65000, B: 301}, {A: 65000, B: 300}}},
				{Metric: 16777217, Communities: []community.Community{{Large: true, A: 4200000000, B: 7, C: 1}}},
			}
			return in
		}(),
	},
	{
		name: "drain_shutdown",
		in: func() Input {
			in := twoPeers()
			in.VIPTable = 167
			in.PodCIDRCommunities = []community.Community{{A: 65000, B: 100}}
			in.Drain = DrainShutdown
			return in
		}(),
	},
	{
		name: "drain_withdrawn",
		in: func() Input {
			in := twoPeers()
			in.VIPTable = 167
			in.Drain = DrainWithdrawn
			return in
		}(),
	},
	{
		name: "ten_prefixes",
		in: Input{
			RouterID: addr("10.0.1.2"), ASN: 65101,
			Peers: dualStack().Peers,
			Prefixes: prefixes(
				"2001:db8:244:1::/64", "10.96.0.10/32", "10.244.1.0/25", "10.244.1.128/25",
				"10.96.0.1/32", "2001:db8:96::10/128", "192.0.2.0/24", "10.96.0.0/32",
				"2001:db8:96::/128", "2001:db8:244::/48",
			),
		},
	},
}

func TestRenderGolden(t *testing.T) {
	rendered := map[string][]byte{}
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Render(tc.in)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			rendered[tc.name] = got
			golden := filepath.Join("testdata", tc.name+".conf")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("Render differs from %s (-want +got; go test -update to accept):\n%s", golden, diff)
			}
			if tc.sameAs != "" {
				other, ok := rendered[tc.sameAs]
				if !ok {
					t.Fatalf("case %q must come after %q", tc.name, tc.sameAs)
				}
				if !bytes.Equal(got, other) {
					t.Errorf("Render differs from case %q:\n%s", tc.sameAs, cmp.Diff(string(other), string(got)))
				}
			}
			birdParse(t, golden)
		})
	}
}

// birdParse fails the test unless the real BIRD parses the config file.
func birdParse(t *testing.T, file string) {
	t.Helper()
	out, err := exec.Command(testenv.Binary(t, "bird"), "-p", "-c", file).CombinedOutput()
	if err != nil {
		conf, _ := os.ReadFile(file)
		t.Fatalf("bird -p -c %s: %v\n%s\nconfig:\n%s", file, err, out, conf)
	}
}

func TestRenderStable(t *testing.T) {
	in := goldenCases[len(goldenCases)-1].in // ten_prefixes: four peers, both families
	first, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, again) {
		t.Fatalf("two renderings of the same input differ:\n%s", cmp.Diff(string(first), string(again)))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		shuffled := in
		shuffled.Peers = append([]Peer(nil), in.Peers...)
		shuffled.Prefixes = append([]netip.Prefix(nil), in.Prefixes...)
		// Also repeat some prefixes, once with host bits set.
		shuffled.Prefixes = append(shuffled.Prefixes, in.Prefixes[i%len(in.Prefixes)])
		if p := in.Prefixes[i%len(in.Prefixes)]; p.Bits() < p.Addr().BitLen() {
			shuffled.Prefixes = append(shuffled.Prefixes, netip.PrefixFrom(p.Addr().Next(), p.Bits()))
		}
		rng.Shuffle(len(shuffled.Peers), func(a, b int) {
			shuffled.Peers[a], shuffled.Peers[b] = shuffled.Peers[b], shuffled.Peers[a]
		})
		rng.Shuffle(len(shuffled.Prefixes), func(a, b int) {
			shuffled.Prefixes[a], shuffled.Prefixes[b] = shuffled.Prefixes[b], shuffled.Prefixes[a]
		})
		got, err := Render(shuffled)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, got) {
			t.Fatalf("shuffle %d renders differently:\n%s", i, cmp.Diff(string(first), string(got)))
		}
	}
	// Render must not reorder the caller's slices.
	if in.Peers[0].Name != "tor1" || in.Peers[1].Name != "tor1-v6" || in.Prefixes[0] != prefix("2001:db8:244:1::/64") {
		t.Errorf("Render modified its input: %+v", in)
	}
}

// blocks returns the top-level blocks of conf that start with one of the
// given heads ("protocol bgp ", "filter "), keyed by their first line. A
// block ends at the first line that is exactly "}".
func blocks(t *testing.T, conf []byte, heads ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	lines := strings.SplitAfter(string(conf), "\n")
	for i := 0; i < len(lines); i++ {
		start := false
		for _, h := range heads {
			start = start || strings.HasPrefix(lines[i], h)
		}
		if !start {
			continue
		}
		var b strings.Builder
		j := i
		for ; j < len(lines); j++ {
			b.WriteString(lines[j])
			if lines[j] == "}\n" {
				break
			}
		}
		if j == len(lines) {
			t.Fatalf("block %q never ends", lines[i])
		}
		out[lines[i]] = b.String()
		i = j
	}
	return out
}

func TestPrefixChangeKeepsSessionBlocks(t *testing.T) {
	base := dualStack()
	base.Prefixes = prefixes("10.244.1.0/24")
	variants := []struct {
		name     string
		prefixes []netip.Prefix
	}{
		{name: "none", prefixes: nil},
		{name: "other_ipv4", prefixes: prefixes("10.244.2.0/24")},
		{name: "first_ipv6", prefixes: prefixes("10.244.1.0/24", "2001:db8:244:1::/64")},
		{name: "only_ipv6", prefixes: prefixes("2001:db8:244:1::/64")},
		{name: "many", prefixes: prefixes("10.244.1.0/24", "10.96.0.1/32", "10.96.0.2/32", "2001:db8:244:1::/64", "2001:db8:96::1/128")},
	}
	heads := []string{"protocol bgp ", "filter ", "protocol device "}
	before, err := Render(base)
	if err != nil {
		t.Fatal(err)
	}
	want := blocks(t, before, heads...)
	if n := strings.Count(string(before), "\nprotocol bgp "); n != len(base.Peers) || len(want) != len(base.Peers)+2 {
		t.Fatalf("found %d bgp protocols and %d blocks, want %d and %d:\n%s", n, len(want), len(base.Peers), len(base.Peers)+2, before)
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			in := base
			in.Prefixes = v.prefixes
			after, err := Render(in)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(before, after) {
				t.Fatal("changing the prefixes changed nothing")
			}
			if diff := cmp.Diff(want, blocks(t, after, heads...)); diff != "" {
				t.Errorf("blocks other than the static protocols changed (-before +after):\n%s", diff)
			}
			// Both static protocols are always there, so the set of
			// protocols never changes with the prefixes.
			statics := blocks(t, after, "protocol static ")
			for _, name := range []string{StaticProtocol4, StaticProtocol6} {
				if _, ok := statics["protocol static "+name+" {\n"]; !ok {
					t.Errorf("no protocol static %s in:\n%s", name, after)
				}
			}
			// Outside the static blocks, not one byte may differ.
			if diff := cmp.Diff(withoutStatics(t, before), withoutStatics(t, after)); diff != "" {
				t.Errorf("config outside the static protocols changed:\n%s", diff)
			}
		})
	}
}

// withoutStatics returns conf with the bodies of its static protocols cut.
func withoutStatics(t *testing.T, conf []byte) string {
	t.Helper()
	s := string(conf)
	for head, block := range blocks(t, conf, "protocol static ") {
		s = strings.Replace(s, block, head, 1)
	}
	return s
}

// TestLogFileKeepsSessionBlocks proves that turning the log file on, off or
// elsewhere changes only the log statement: every other line, and so every
// "protocol bgp" block, stays byte-identical, and BIRD restarts no session.
func TestLogFileKeepsSessionBlocks(t *testing.T) {
	base := dualStack()
	before, err := Render(base)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(before), "\nlog \"") {
		t.Fatalf("a log file is rendered without LogFile:\n%s", before)
	}
	for _, file := range []string{"/run/bird/bird.log", "/var/log/bird/roost node.log"} {
		t.Run(file, func(t *testing.T) {
			in := base
			in.LogFile = file
			after, err := Render(in)
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("log %q %d %q { %s };\n", file, LogFileLimit, file+LogBackupSuffix, LogClasses)
			if !strings.Contains(string(after), "\n"+want) {
				t.Errorf("no line %q in:\n%s", want, after)
			}
			// Without the log statement and its comment, the two configs
			// are the same bytes.
			var kept []string
			for _, l := range strings.SplitAfter(string(after), "\n") {
				if l != want && !strings.HasPrefix(l, "# BGP errors and warnings") && !strings.HasPrefix(l, "# roostctl peers reads") {
					kept = append(kept, l)
				}
			}
			if diff := cmp.Diff(string(before), strings.Join(kept, "")); diff != "" {
				t.Errorf("the log file changed more than its statement (-without +with):\n%s", diff)
			}
			heads := []string{"protocol ", "filter "}
			if diff := cmp.Diff(blocks(t, before, heads...), blocks(t, after, heads...)); diff != "" {
				t.Errorf("blocks changed (-without +with):\n%s", diff)
			}
		})
	}
}

// TestAttributesKeepSessionBlocks proves that communities per prefix class,
// per tagged VIP, and the drain state change only the announce function:
// no "protocol" block changes, so no session restarts (BIRD re-exports
// through a changed filter); and that a peer's own MED or communities
// change its own block and filter only.
func TestAttributesKeepSessionBlocks(t *testing.T) {
	base := dualStack()
	base.VIPTable = 167
	before, err := Render(base)
	if err != nil {
		t.Fatal(err)
	}
	heads := []string{"protocol "}
	want := blocks(t, before, heads...)
	c := func(a, b uint32) []community.Community { return []community.Community{{A: a, B: b}} }
	for name, change := range map[string]func(*Input){
		"podcidr_communities": func(in *Input) { in.PodCIDRCommunities = c(65000, 1) },
		"vip_communities":     func(in *Input) { in.VIPCommunities = c(65000, 2) },
		"vip_tags":            func(in *Input) { in.VIPTags = []VIPTag{{Metric: 1 << 24, Communities: c(65000, 3)}} },
		"drain_shutdown":      func(in *Input) { in.Drain = DrainShutdown },
		"drain_withdrawn":     func(in *Input) { in.Drain = DrainWithdrawn },
	} {
		t.Run(name, func(t *testing.T) {
			in := base
			change(&in)
			after, err := Render(in)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(before, after) {
				t.Fatal("the change rendered nothing")
			}
			if diff := cmp.Diff(want, blocks(t, after, heads...)); diff != "" {
				t.Errorf("protocol blocks changed (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(blocks(t, before, "filter "), blocks(t, after, "filter ")); diff != "" {
				t.Errorf("filters changed (-before +after):\n%s", diff)
			}
		})
	}
	t.Run("peer_med", func(t *testing.T) {
		in := base
		in.Peers = slices.Clone(base.Peers)
		in.Peers[0].MED = new(uint32(10))
		after, err := Render(in)
		if err != nil {
			t.Fatal(err)
		}
		got := blocks(t, after, heads...)
		for head, block := range want {
			if changed := got[head] != block; changed != strings.Contains(head, "bgp_tor1 ") {
				t.Errorf("block %q changed: %v, want only bgp_tor1's:\n%s", head, changed, got[head])
			}
		}
		if !strings.Contains(string(after), "filter roost_export_bgp_tor1 {\n\tif !roost_announce() then reject;\n\tbgp_med = 10;\n") {
			t.Errorf("no filter of tor1's own with its MED:\n%s", after)
		}
	})
}

// aliens are routes a BIRD may hold besides roost's own: other static
// protocols, with blackhole and other destinations.
const aliens = `
protocol static alien4 {
	ipv4;
	route 10.99.0.0/24 blackhole;
	route 10.98.0.0/24 unreachable;
}
protocol static alien6 {
	ipv6;
	route 2001:db8:99::/48 blackhole;
}
`

// TestExportFilter runs a real BIRD (in the test's own namespace: the config
// has no BGP peer and no kernel protocol, so it touches nothing) and checks
// that the export filter passes exactly the owned prefixes: not the routes of
// other protocols, and not a route of roost's own static protocols that is
// not a blackhole (made here by editing the rendered file).
func TestExportFilter(t *testing.T) {
	birdc := testenv.Binary(t, "birdc")
	in := Input{
		RouterID: addr("10.0.1.2"), ASN: 65101,
		Prefixes: prefixes("10.244.1.0/24", "10.96.0.10/32", "10.244.2.0/24", "2001:db8:244:1::/64"),
	}
	conf, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(conf), "route 10.244.2.0/24 blackhole;", "route 10.244.2.0/24 unreachable;", 1)
	if edited == string(conf) {
		t.Fatalf("no route 10.244.2.0/24 in:\n%s", conf)
	}
	b := testenv.StartBird(t, "", edited+aliens)
	show := func(args ...string) []string {
		out, err := exec.Command(birdc, append([]string{"-s", b.Socket}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("birdc %q: %v\n%s", args, err, out)
		}
		var nets []string
		for _, m := range regexp.MustCompile(`(?m)^([0-9a-f.:]+/[0-9]+)\s`).FindAllStringSubmatch(string(out), -1) {
			nets = append(nets, m[1])
		}
		slices.Sort(nets)
		return nets
	}
	all := []string{"10.244.1.0/24", "10.244.2.0/24", "10.96.0.10/32", "10.98.0.0/24", "10.99.0.0/24", "2001:db8:244:1::/64", "2001:db8:99::/48"}
	if got := show("show", "route"); !slices.Equal(got, all) {
		t.Fatalf("BIRD holds routes %q, want %q\n%s", got, all, b.LogText())
	}
	want := []string{"10.244.1.0/24", "10.96.0.10/32", "2001:db8:244:1::/64"}
	if got := show("show", "route", "filter", ExportFilter); !slices.Equal(got, want) {
		t.Errorf("filter %s passes %q, want %q", ExportFilter, got, want)
	}
}

func TestRenderRandomInputsParse(t *testing.T) {
	bin := testenv.Binary(t, "bird")
	rng := rand.New(rand.NewPCG(7, 11))
	dir := t.TempDir()
	for i := range 50 {
		in := randomInput(rng)
		conf, err := Render(in)
		if err != nil {
			t.Fatalf("input %d: Render(%+v): %v", i, in, err)
		}
		file := filepath.Join(dir, fmt.Sprintf("%02d.conf", i))
		if err := os.WriteFile(file, conf, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "-p", "-c", file).CombinedOutput(); err != nil {
			t.Fatalf("input %d: bird -p rejects the rendered config: %v\n%s\n%s", i, err, out, conf)
		}
	}
}

// randomInput returns a valid Input with up to 6 peers and 40 prefixes.
func randomInput(rng *rand.Rand) Input {
	in := Input{RouterID: randomAddr4(rng), ASN: 1 + rng.Uint32N(1<<32-1)}
	if rng.IntN(2) == 0 {
		in.LogFile = randomLogFile(rng)
	}
	if in.RouterID.IsUnspecified() {
		in.RouterID = addr("10.0.0.1")
	}
	names := map[string]bool{}
	addrs := map[netip.Addr]bool{}
	for range rng.IntN(7) {
		p := Peer{Name: randomName(rng), ASN: 1 + rng.Uint32N(1<<32-1)}
		switch rng.IntN(3) {
		case 0:
			p.Address = randomAddr4(rng)
		case 1:
			p.Address = randomAddr6(rng)
		default:
			p.Address = netip.AddrFrom16([16]byte{0: 0xfe, 1: 0x80, 15: byte(1 + rng.IntN(254))}).
				WithZone([]string{"eth0", "ens3f0.100", "uplink-a", "bond_1"}[rng.IntN(4)])
		}
		if rng.IntN(2) == 0 {
			p.Password = randomPassword(rng)
		}
		if rng.IntN(2) == 0 {
			p.HoldTime = MinHoldTime + rng.IntN(MaxHoldTime-MinHoldTime+1)
		}
		mapped := ProtocolName(p.Name)
		if names[mapped] || addrs[p.Address] || !p.Address.IsValid() || p.Address.IsUnspecified() || p.Address.IsMulticast() {
			continue
		}
		names[mapped], addrs[p.Address] = true, true
		in.Peers = append(in.Peers, p)
	}
	for range rng.IntN(41) {
		var a netip.Addr
		if rng.IntN(2) == 0 {
			a = randomAddr4(rng)
		} else {
			a = randomAddr6(rng)
		}
		in.Prefixes = append(in.Prefixes, netip.PrefixFrom(a, rng.IntN(a.BitLen()+1)))
	}
	return in
}

// randomLogFile returns an absolute clean path of printable ASCII other than
// '"' and '\', with characters that mean something to BIRD outside a string.
func randomLogFile(rng *rand.Rand) string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789 #;{}'*/._-"
	var b strings.Builder
	for range 1 + rng.IntN(4) {
		b.WriteByte('/')
		n := 1 + rng.IntN(12)
		for i := 0; i < n; i++ {
			c := chars[rng.IntN(len(chars))]
			if c == '/' || (c == '.' && i == 0) {
				c = 'x' // no "//", "." or ".." parts
			}
			b.WriteByte(c)
		}
	}
	return b.String()
}

func randomAddr4(rng *rand.Rand) netip.Addr {
	var b [4]byte
	for i := range b {
		b[i] = byte(rng.IntN(224)) // below the multicast range
	}
	return netip.AddrFrom4(b)
}

func randomAddr6(rng *rand.Rand) netip.Addr {
	b := [16]byte{0: 0x20, 1: 0x01, 2: 0x0d, 3: 0xb8}
	for i := 4; i < 16; i++ {
		b[i] = byte(rng.IntN(256))
	}
	return netip.AddrFrom16(b)
}

// randomName returns a name matching PeerNamePattern that is not reserved;
// about one in four is a near-miss of a reserved name ("path2", "med-a").
func randomName(rng *rand.Rand) string {
	const edge, mid = "abcdefghijklmnopqrstuvwxyz0123456789", "abcdefghijklmnopqrstuvwxyz0123456789_-"
	if rng.IntN(4) == 0 {
		return reservedNames[rng.IntN(len(reservedNames))] + string(edge[rng.IntN(len(edge))])
	}
	n := 1 + rng.IntN(32)
	b := make([]byte, n)
	for i := range b {
		if i == 0 || i == n-1 {
			b[i] = edge[rng.IntN(len(edge))]
		} else {
			b[i] = mid[rng.IntN(len(mid))]
		}
	}
	return string(b)
}

// randomPassword returns 1 to MaxPasswordLen printable ASCII characters
// other than '"' and '\'.
func randomPassword(rng *rand.Rand) string {
	b := make([]byte, 1+rng.IntN(MaxPasswordLen))
	for i := range b {
		for b[i] == 0 || b[i] == '"' || b[i] == '\\' {
			b[i] = byte(0x20 + rng.IntN(0x7f-0x20))
		}
	}
	return string(b)
}

func TestRenderErrors(t *testing.T) {
	okPeer := Peer{Name: "tor1", Address: addr("10.0.1.1"), ASN: 65000}
	withPeers := func(peers ...Peer) Input {
		in := twoPeers()
		in.Peers = peers
		return in
	}
	withPeer := func(edit func(*Peer)) Input {
		p := okPeer
		edit(&p)
		return withPeers(p)
	}
	tests := []struct {
		name string
		in   Input
		want []error
	}{
		{name: "no_router_id", in: Input{ASN: 65101}, want: []error{ErrRouterID}},
		{name: "ipv6_router_id", in: Input{RouterID: addr("2001:db8::1"), ASN: 65101}, want: []error{ErrRouterID}},
		{name: "mapped_router_id", in: Input{RouterID: addr("::ffff:10.0.1.2"), ASN: 65101}, want: []error{ErrRouterID}},
		{name: "zero_router_id", in: Input{RouterID: addr("0.0.0.0"), ASN: 65101}, want: []error{ErrRouterID}},
		{name: "zero_local_asn", in: Input{RouterID: addr("10.0.1.2")}, want: []error{ErrASN}},
		{name: "zero_peer_asn", in: withPeer(func(p *Peer) { p.ASN = 0 }), want: []error{ErrASN}},
		{name: "empty_name", in: withPeer(func(p *Peer) { p.Name = "" }), want: []error{ErrPeerName}},
		{name: "upper_case_name", in: withPeer(func(p *Peer) { p.Name = "Tor1" }), want: []error{ErrPeerName}},
		{name: "name_with_space", in: withPeer(func(p *Peer) { p.Name = "tor 1" }), want: []error{ErrPeerName}},
		{name: "name_with_quote", in: withPeer(func(p *Peer) { p.Name = `tor"1` }), want: []error{ErrPeerName}},
		{name: "name_with_dot", in: withPeer(func(p *Peer) { p.Name = "tor.1" }), want: []error{ErrPeerName}},
		{name: "name_ends_with_dash", in: withPeer(func(p *Peer) { p.Name = "tor-" }), want: []error{ErrPeerName}},
		{name: "name_too_long", in: withPeer(func(p *Peer) { p.Name = strings.Repeat("a", 33) }), want: []error{ErrPeerName}},
		{name: "reserved_name", in: withPeer(func(p *Peer) { p.Name = "path" }), want: []error{ErrReservedName}},
		{name: "reserved_name_dashed", in: withPeer(func(p *Peer) { p.Name = "next-hop" }), want: []error{ErrReservedName}},
		{
			name: "same_protocol_name",
			in:   withPeers(Peer{Name: "tor-1", Address: addr("10.0.1.1"), ASN: 65000}, Peer{Name: "tor_1", Address: addr("10.0.2.1"), ASN: 65000}),
			want: []error{ErrDuplicatePeer},
		},
		{name: "same_name", in: withPeers(okPeer, okPeer), want: []error{ErrDuplicatePeer}},
		{
			name: "same_address",
			in:   withPeers(okPeer, Peer{Name: "tor2", Address: okPeer.Address, ASN: 65000}),
			want: []error{ErrDuplicateAddress},
		},
		{name: "no_address", in: withPeer(func(p *Peer) { p.Address = netip.Addr{} }), want: []error{ErrPeerAddress}},
		{name: "unspecified_address", in: withPeer(func(p *Peer) { p.Address = addr("::") }), want: []error{ErrPeerAddress}},
		{name: "multicast_address", in: withPeer(func(p *Peer) { p.Address = addr("224.0.0.5") }), want: []error{ErrPeerAddress}},
		{name: "mapped_address", in: withPeer(func(p *Peer) { p.Address = addr("::ffff:10.0.1.1") }), want: []error{ErrPeerAddress}},
		{name: "link_local_without_zone", in: withPeer(func(p *Peer) { p.Address = addr("fe80::1") }), want: []error{ErrPeerAddress}},
		{name: "zone_on_global_address", in: withPeer(func(p *Peer) { p.Address = addr("2001:db8::1%eth0") }), want: []error{ErrPeerAddress}},
		{name: "zone_with_quote", in: withPeer(func(p *Peer) { p.Address = addr(`fe80::1%eth"0`) }), want: []error{ErrPeerAddress}},
		{name: "password_with_quote", in: withPeer(func(p *Peer) { p.Password = `pa"ss` }), want: []error{ErrPassword}},
		{name: "password_with_backslash", in: withPeer(func(p *Peer) { p.Password = `pa\ss` }), want: []error{ErrPassword}},
		{name: "password_with_newline", in: withPeer(func(p *Peer) { p.Password = "pa\nss" }), want: []error{ErrPassword}},
		{name: "password_not_ascii", in: withPeer(func(p *Peer) { p.Password = "pässword" }), want: []error{ErrPassword}},
		{name: "password_too_long", in: withPeer(func(p *Peer) { p.Password = strings.Repeat("x", MaxPasswordLen+1) }), want: []error{ErrPassword}},
		{name: "hold_time_too_short", in: withPeer(func(p *Peer) { p.HoldTime = 2 }), want: []error{ErrHoldTime}},
		{name: "hold_time_negative", in: withPeer(func(p *Peer) { p.HoldTime = -1 }), want: []error{ErrHoldTime}},
		{name: "hold_time_too_long", in: withPeer(func(p *Peer) { p.HoldTime = 65536 }), want: []error{ErrHoldTime}},
		{name: "keepalive_not_under_hold", in: withPeer(func(p *Peer) { p.HoldTime, p.KeepaliveTime = 9, 9 }), want: []error{ErrPeerOption}},
		{name: "keepalive_not_under_default_hold", in: withPeer(func(p *Peer) { p.KeepaliveTime = DefaultHoldTime }), want: []error{ErrPeerOption}},
		{name: "keepalive_negative", in: withPeer(func(p *Peer) { p.KeepaliveTime = -1 }), want: []error{ErrPeerOption}},
		{name: "connect_retry_too_long", in: withPeer(func(p *Peer) { p.ConnectRetryTime = MaxTimer + 1 }), want: []error{ErrPeerOption}},
		{name: "multihop_too_far", in: withPeer(func(p *Peer) { p.Multihop = 256 }), want: []error{ErrPeerOption}},
		{name: "multihop_link_local", in: withPeer(func(p *Peer) { p.Address, p.Multihop = addr("fe80::1%eth0"), 2 }), want: []error{ErrPeerOption}},
		{name: "source_other_family", in: withPeer(func(p *Peer) { p.SourceAddress = addr("2001:db8::2") }), want: []error{ErrPeerOption}},
		{name: "source_link_local", in: withPeer(func(p *Peer) { p.Address, p.SourceAddress = addr("2001:db8::1"), addr("fe80::2") }), want: []error{ErrPeerOption}},
		{name: "source_mapped", in: withPeer(func(p *Peer) { p.SourceAddress = addr("::ffff:10.0.1.2") }), want: []error{ErrPeerOption}},
		{name: "restart_time_too_long", in: withPeer(func(p *Peer) { p.GracefulRestartTime = MaxGracefulRestartTime + 1 }), want: []error{ErrPeerOption}},
		{name: "restart_time_without_restart", in: withPeer(func(p *Peer) { p.NoGracefulRestart, p.GracefulRestartTime = true, 60 }), want: []error{ErrPeerOption}},
		{name: "extended_next_hop_on_ipv4", in: withPeer(func(p *Peer) { p.ExtendedNextHop = true }), want: []error{ErrPeerOption}},
		{name: "vip_tag_metric_zero", in: func() Input { in := twoPeers(); in.VIPTags = []VIPTag{{Metric: 0}}; return in }(), want: []error{ErrVIPTag}},
		{name: "vip_tag_metric_twice", in: func() Input { in := twoPeers(); in.VIPTags = []VIPTag{{Metric: 7}, {Metric: 7}}; return in }(), want: []error{ErrVIPTag}},
		{name: "invalid_prefix", in: Input{RouterID: addr("10.0.1.2"), ASN: 65101, Prefixes: []netip.Prefix{{}}}, want: []error{ErrPrefix}},
		{name: "mapped_prefix", in: Input{RouterID: addr("10.0.1.2"), ASN: 65101, Prefixes: prefixes("::ffff:10.244.1.0/120")}, want: []error{ErrPrefix}},
		{name: "relative_log_file", in: Input{RouterID: addr("10.0.1.2"), ASN: 65101, LogFile: "bird.log"}, want: []error{ErrLogFile}},
		{name: "log_file_with_quote", in: Input{RouterID: addr("10.0.1.2"), ASN: 65101, LogFile: `/run/bird/"x.log`}, want: []error{ErrLogFile}},
		{
			name: "every_problem_at_once",
			in: Input{
				Peers:    []Peer{{Name: "Tor1", Address: addr("fe80::1"), Password: `secret"x`, HoldTime: 1}},
				Prefixes: []netip.Prefix{{}},
			},
			want: []error{ErrRouterID, ErrASN, ErrPeerName, ErrPeerAddress, ErrPassword, ErrHoldTime, ErrPrefix},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conf, err := Render(tc.in)
			if err == nil {
				t.Fatalf("Render succeeded, want %v; rendered:\n%s", tc.want, conf)
			}
			if conf != nil {
				t.Errorf("Render returned %d bytes with its error", len(conf))
			}
			for _, want := range tc.want {
				if !errors.Is(err, want) {
					t.Errorf("Render error %q does not wrap %q", err, want)
				}
			}
			if tc.in.Peers != nil && tc.in.Peers[0].Password != "" && strings.Contains(err.Error(), tc.in.Peers[0].Password) {
				t.Errorf("error %q reveals the password", err)
			}
		})
	}
}

func TestProtocolName(t *testing.T) {
	tests := []struct{ name, peer, want string }{
		{name: "plain", peer: "tor1", want: "bgp_tor1"},
		{name: "dash", peer: "tor-1-a", want: "bgp_tor_1_a"},
		{name: "underscore", peer: "tor_1", want: "bgp_tor_1"},
		{name: "digits", peer: "1", want: "bgp_1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ProtocolName(tc.peer); got != tc.want {
				t.Errorf("ProtocolName(%q) = %q, want %q", tc.peer, got, tc.want)
			}
		})
	}
}

// TestReservedNames proves that every reserved name is needed (BIRD refuses
// it as a protocol name) and that Render refuses it.
func TestReservedNames(t *testing.T) {
	base, err := Render(twoPeers())
	if err != nil {
		t.Fatal(err)
	}
	symbol := regexp.MustCompile(`\bbgp_tor1\b`)
	for _, name := range reservedNames {
		t.Run(name, func(t *testing.T) {
			in := twoPeers()
			in.Peers[0].Name = name
			if _, err := Render(in); !errors.Is(err, ErrReservedName) {
				t.Errorf("Render with peer %q: err %v, want ErrReservedName", name, err)
			}
			conf := symbol.ReplaceAll(base, []byte(ProtocolName(name)))
			file := filepath.Join(t.TempDir(), "bird.conf")
			if err := os.WriteFile(file, conf, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(testenv.Binary(t, "bird"), "-p", "-c", file).CombinedOutput(); err == nil {
				t.Errorf("bird accepts protocol %s, so %q need not be reserved", ProtocolName(name), name)
			} else if !strings.Contains(string(out), "syntax error") {
				t.Errorf("bird refuses protocol %s for another reason: %s", ProtocolName(name), out)
			}
		})
	}
}

func BenchmarkRender(b *testing.B) {
	for _, n := range []int{1, 10000} {
		in := twoPeers()
		in.Prefixes = nil
		for i := range n {
			if i%2 == 0 {
				in.Prefixes = append(in.Prefixes, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32))
			} else {
				in.Prefixes = append(in.Prefixes, netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)}), 128))
			}
		}
		b.Run(fmt.Sprintf("prefixes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Render(in); err != nil {
					b.Fatal(err)
				}
			}
		})
		// What the agent hands Render: IPv4 /24s, sorted already.
		in.Prefixes = nil
		for i := range n {
			in.Prefixes = append(in.Prefixes, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(64 + i>>8), byte(i), 0}), 24))
		}
		b.Run(fmt.Sprintf("prefixes=%d/sorted-v4", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Render(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestChecks tests the per-field checks that config's validation shares
// with Render: each refusal wraps its sentinel, says what is wrong with the
// value on one line, and never shows a password.
func TestChecks(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		want  error  // nil: the value is fine
		shows string // a substring the message must hold
	}{
		{name: "router_id", err: CheckRouterID(addr("10.0.1.2"))},
		{name: "router_id_broadcast", err: CheckRouterID(addr("255.255.255.255"))},
		{name: "router_id_unset", err: CheckRouterID(netip.Addr{}), want: ErrRouterID, shows: "must be set"},
		{name: "router_id_zero", err: CheckRouterID(addr("0.0.0.0")), want: ErrRouterID, shows: "0.0.0.0 is unspecified"},
		{name: "router_id_v6", err: CheckRouterID(addr("2001:db8::1")), want: ErrRouterID, shows: "2001:db8::1 is not an IPv4 address"},
		{name: "router_id_mapped", err: CheckRouterID(addr("::ffff:10.0.1.2")), want: ErrRouterID, shows: "::ffff:10.0.1.2 is not an IPv4 address"},

		{name: "name", err: CheckPeerName("tor-1_a")},
		{name: "name_32", err: CheckPeerName(strings.Repeat("a", 32))},
		{name: "name_near_keyword", err: CheckPeerName("path2")},
		{name: "name_33", err: CheckPeerName(strings.Repeat("a", 33)), want: ErrPeerName, shows: `"aaaa`},
		{name: "name_tab", err: CheckPeerName("tor\t1"), want: ErrPeerName, shows: `"tor\t1" must be 1-32`},
		{name: "name_unicode", err: CheckPeerName("tör1"), want: ErrPeerName, shows: `"tör1" must be`},
		{name: "name_keyword", err: CheckPeerName("local-pref"), want: ErrReservedName, shows: `"local-pref" would make protocol bgp_local_pref, a BIRD keyword`},

		{name: "neighbor_v4", err: CheckNeighbor(addr("10.0.1.1"))},
		{name: "neighbor_v6", err: CheckNeighbor(addr("2001:db8::1"))},
		{name: "neighbor_link_local", err: CheckNeighbor(addr("fe80::1%eth0.100"))},
		{name: "neighbor_unset", err: CheckNeighbor(netip.Addr{}), want: ErrPeerAddress, shows: "must be set"},
		{name: "neighbor_mapped", err: CheckNeighbor(addr("::ffff:192.0.2.1")), want: ErrPeerAddress, shows: "::ffff:192.0.2.1 is an IPv4-mapped IPv6 address; write it as IPv4 (192.0.2.1)"},
		{name: "neighbor_unspecified", err: CheckNeighbor(addr("0.0.0.0")), want: ErrPeerAddress, shows: "0.0.0.0 is not a unicast address"},
		{name: "neighbor_multicast", err: CheckNeighbor(addr("ff02::1")), want: ErrPeerAddress, shows: "ff02::1 is not a unicast address"},
		{name: "neighbor_link_local_no_zone", err: CheckNeighbor(addr("fe80::1")), want: ErrPeerAddress, shows: "fe80::1 is link-local, so it needs a zone naming its interface (fe80::1%eth0)"},
		{name: "neighbor_bad_zone", err: CheckNeighbor(addr("fe80::1%eth\n0")), want: ErrPeerAddress, shows: `fe80::1 has zone "eth\n0", which is not an interface name`},
		{name: "neighbor_long_zone", err: CheckNeighbor(addr("fe80::1%abcdefghijklmnop")), want: ErrPeerAddress, shows: "not an interface name"},
		{name: "neighbor_global_zone", err: CheckNeighbor(addr("2001:db8::1%eth0")), want: ErrPeerAddress, shows: `2001:db8::1 has zone "eth0", but only an IPv6 link-local address may have one`},

		{name: "password_none", err: CheckPassword("")},
		{name: "password_80", err: CheckPassword(strings.Repeat("p", MaxPasswordLen))},
		{name: "password_punctuation", err: CheckPassword("p#a;s{s}'w/*o*/rd %x")},
		{name: "password_81", err: CheckPassword(strings.Repeat("p", MaxPasswordLen+1)), want: ErrPassword, shows: "is 81 bytes long; Linux takes at most 80"},
		{name: "password_quote", err: CheckPassword(`pa"ss`), want: ErrPassword, shows: `but has a '"'`},
		{name: "password_backslash", err: CheckPassword(`pa\ss`), want: ErrPassword, shows: `but has a '\'`},
		{name: "password_tab", err: CheckPassword("pa\tss"), want: ErrPassword, shows: "but has a tab"},
		{name: "password_cr", err: CheckPassword("pass\r"), want: ErrPassword, shows: "but has a carriage return"},
		{name: "password_newline", err: CheckPassword("pa\nss"), want: ErrPassword, shows: "but has a newline"},
		{name: "password_escape", err: CheckPassword("pa\x1bss"), want: ErrPassword, shows: "but has a control character"},
		{name: "password_delete", err: CheckPassword("pa\x7fss"), want: ErrPassword, shows: "but has a control character"},
		{name: "password_unicode", err: CheckPassword("pässword"), want: ErrPassword, shows: "but has a non-ASCII character"},

		{name: "hold_time_default", err: CheckHoldTime(0)},
		{name: "hold_time_min", err: CheckHoldTime(MinHoldTime)},
		{name: "hold_time_max", err: CheckHoldTime(MaxHoldTime)},
		{name: "hold_time_short", err: CheckHoldTime(2), want: ErrHoldTime, shows: "2 must be 0 (BIRD's default) or 3..65535 seconds"},
		{name: "hold_time_long", err: CheckHoldTime(MaxHoldTime + 1), want: ErrHoldTime, shows: "65536 must be"},

		{name: "log_file", err: CheckLogFile("/run/bird/bird.log")},
		{name: "log_file_punctuation", err: CheckLogFile("/var/log/bird #1/{roost};'x'.log")},
		{name: "log_file_longest", err: CheckLogFile("/" + strings.Repeat("a", MaxLogFileLen-1))},
		{name: "log_file_too_long", err: CheckLogFile("/" + strings.Repeat("a", MaxLogFileLen)), want: ErrLogFile, shows: "is 1025 bytes long; at most 1024"},
		{name: "log_file_relative", err: CheckLogFile("bird.log"), want: ErrLogFile, shows: `"bird.log" must be an absolute path`},
		{name: "log_file_root", err: CheckLogFile("/"), want: ErrLogFile, shows: `"/" is a directory`},
		{name: "log_file_trailing_slash", err: CheckLogFile("/run/bird/"), want: ErrLogFile, shows: `"/run/bird/" is not a clean path`},
		{name: "log_file_dot_dot", err: CheckLogFile("/run/bird/../bird.log"), want: ErrLogFile, shows: `write "/run/bird.log"`},
		{name: "log_file_double_slash", err: CheckLogFile("/run//bird.log"), want: ErrLogFile, shows: "not a clean path"},
		{name: "log_file_quote", err: CheckLogFile(`/run/bird/"a.log`), want: ErrLogFile, shows: `other than '"' and '\'`},
		{name: "log_file_backslash", err: CheckLogFile(`/run/bird/a\b.log`), want: ErrLogFile, shows: "printable ASCII"},
		{name: "log_file_newline", err: CheckLogFile("/run/bird/a\nb.log"), want: ErrLogFile, shows: `"/run/bird/a\nb.log" must hold only`},
		{name: "log_file_unicode", err: CheckLogFile("/run/bird/vogel.log\u00e4"), want: ErrLogFile, shows: "printable ASCII"},

		{name: "prefix", err: CheckPrefix(prefix("10.244.1.0/24"))},
		{name: "prefix_host_bits", err: CheckPrefix(prefix("2001:db8::1/64"))},
		{name: "prefix_invalid", err: CheckPrefix(netip.Prefix{}), want: ErrPrefix, shows: "is not a valid prefix"},
		{name: "prefix_mapped", err: CheckPrefix(prefix("::ffff:10.244.0.0/112")), want: ErrPrefix, shows: "::ffff:10.244.0.0/112 is an IPv4-mapped IPv6 prefix"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == nil {
				if tc.err != nil {
					t.Fatalf("refused: %v", tc.err)
				}
				return
			}
			if !errors.Is(tc.err, tc.want) {
				t.Fatalf("error %v does not wrap %v", tc.err, tc.want)
			}
			msg := tc.err.Error()
			if !strings.Contains(msg, tc.shows) {
				t.Errorf("error %q does not say %q", msg, tc.shows)
			}
			if strings.ContainsAny(msg, "\n\r") {
				t.Errorf("error %q is not one line", msg)
			}
		})
	}
	for _, pw := range []string{`se"cret`, `se\cret`, "se\tcret", "secret\r", "se\ncret", "se\x1bcret", "sécret", strings.Repeat("secret", 14)} {
		if err := CheckPassword(pw); err == nil || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "cret") {
			t.Errorf("CheckPassword(%q) = %v, want an error that does not show the password", pw, err)
		}
	}
}

// TestRenderUsesChecks proves that Render refuses what the checks refuse,
// with the same message.
func TestRenderUsesChecks(t *testing.T) {
	in := twoPeers()
	in.RouterID = addr("0.0.0.0")
	in.Peers[0].Name = "med"
	in.Peers[1].Address = addr("fe80::1")
	in.Peers[1].Password = "pa\tss"
	in.Peers[1].HoldTime = 1
	in.Prefixes = append(in.Prefixes, prefix("::ffff:10.0.0.0/104"))
	_, err := Render(in)
	if err == nil {
		t.Fatal("Render succeeded")
	}
	for _, check := range []error{
		CheckRouterID(in.RouterID), CheckPeerName(in.Peers[0].Name), CheckNeighbor(in.Peers[1].Address),
		CheckPassword(in.Peers[1].Password), CheckHoldTime(in.Peers[1].HoldTime), CheckPrefix(in.Prefixes[1]),
	} {
		if check == nil {
			t.Fatal("a check accepts what it should refuse")
		}
		if !strings.Contains(err.Error(), check.Error()) {
			t.Errorf("Render error\n%v\ndoes not hold %q", err, check)
		}
	}
}
