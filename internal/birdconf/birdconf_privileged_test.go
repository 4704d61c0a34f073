package birdconf

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/testenv"
)

// torConfig is the hand-written BIRD config of the ToR in the privileged
// test: it learns everything the node sends, on one IPv4 and one IPv6
// session, and prints protocol times to the microsecond so that a session
// restart always shows in "show protocols".
const torConfig = `log stderr all;
router id 10.0.1.1;
timeformat protocol iso long us;
protocol device {
}
protocol bgp node4 {
	local 10.0.1.1 as 65000;
	neighbor 10.0.1.2 as 65101;
	graceful restart on;
	ipv4 { import all; export none; };
}
protocol bgp node6 {
	local 2001:db8:0:1::1 as 65000;
	neighbor 2001:db8:0:1::2 as 65101;
	graceful restart on;
	ipv6 { import all; export none; };
}
`

// TestPrivilegedPrefixChangeKeepsSessions proves the claim the config layout
// is built on: a node BIRD running a rendered config, reconfigured with a
// config whose prefixes changed (including its first IPv6 prefix), announces
// the new prefixes and withdraws the old ones without restarting any BGP
// session; neither does turning the log file on. As a control, a change to
// a peer's options must restart that session, which shows the restart
// witnesses work.
func TestPrivilegedPrefixChangeKeepsSessions(t *testing.T) {
	testenv.Privileged(t)
	birdc := testenv.Binary(t, "birdc")
	nodeNS, torNS := testenv.NetNS(t, "node"), testenv.NetNS(t, "tor")
	nodeIf, torIf := testenv.Name("n"), testenv.Name("t")
	testenv.Veth(t, nodeNS, nodeIf, "10.0.1.2/30", torNS, torIf, "10.0.1.1/30")
	testenv.Run(t, "ip", "-n", nodeNS, "addr", "add", "2001:db8:0:1::2/64", "dev", nodeIf, "nodad")
	testenv.Run(t, "ip", "-n", torNS, "addr", "add", "2001:db8:0:1::1/64", "dev", torIf, "nodad")

	in := Input{
		RouterID: netip.MustParseAddr("10.0.1.2"),
		ASN:      65101,
		Peers: []Peer{
			{Name: "tor1", Address: netip.MustParseAddr("10.0.1.1"), ASN: 65000},
			{Name: "tor1-v6", Address: netip.MustParseAddr("2001:db8:0:1::1"), ASN: 65000},
		},
		Prefixes: prefixes("10.244.1.0/24", "10.96.0.10/32"),
	}
	conf, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	tor := testenv.StartBird(t, torNS, torConfig)
	node := testenv.StartBird(t, nodeNS, string(conf))
	dump := func() string {
		return fmt.Sprintf("node log:\n%s\ntor log:\n%s\ntor routes:\n%s",
			node.LogText(), tor.LogText(), birdcOut(t, birdc, tor.Socket, "show route all"))
	}

	waitRoutes(t, birdc, tor.Socket, dump, map[string][]string{
		"node4": {"10.244.1.0/24", "10.96.0.10/32"},
		"node6": nil,
	})
	torSince := established(t, birdc, tor.Socket, dump, torTime, "node4", "node6")
	nodeSince := established(t, birdc, node.Socket, dump, nodeTime, ProtocolName("tor1"), ProtocolName("tor1-v6"))
	conns := bgpConnections(t, torNS)
	if len(conns) != 2 {
		t.Fatalf("want 2 established BGP connections in the tor namespace, got %q", conns)
	}

	// Change only the prefixes: one IPv4 prefix replaced, the first IPv6
	// prefix added.
	in.Prefixes = prefixes("10.244.1.0/24", "10.96.0.11/32", "2001:db8:244:1::/64")
	// BIRD answers "0003 Reconfigured" at once only when no protocol has to
	// shut down; a restarting session would make it "0004 Reconfiguration
	// in progress".
	if reply := reconfigure(t, birdc, node, in); !strings.Contains(reply, "Reconfigured") {
		t.Errorf("birdc configure after a prefix change: %s", reply)
	}
	waitRoutes(t, birdc, tor.Socket, dump, map[string][]string{
		"node4": {"10.244.1.0/24", "10.96.0.11/32"},
		"node6": {"2001:db8:244:1::/64"},
	})
	if got := established(t, birdc, tor.Socket, dump, torTime, "node4", "node6"); !sameTimes(got, torSince, torTime) {
		t.Errorf("tor sessions restarted: established since %v, then %v\n%s", torSince, got, dump())
	}
	if got := established(t, birdc, node.Socket, dump, nodeTime, ProtocolName("tor1"), ProtocolName("tor1-v6")); !sameTimes(got, nodeSince, nodeTime) {
		t.Errorf("node sessions restarted: established since %v, then %v\n%s", nodeSince, got, dump())
	}
	if got := bgpConnections(t, torNS); !slices.Equal(got, conns) {
		t.Errorf("BGP connections changed: %q, then %q", conns, got)
	}

	// Turn the log file on: BIRD opens it, and no session restarts.
	in.LogFile = filepath.Join(t.TempDir(), "bird.log")
	if reply := reconfigure(t, birdc, node, in); !strings.Contains(reply, "Reconfigured") {
		t.Errorf("birdc configure after turning the log file on: %s", reply)
	}
	if _, err := os.Stat(in.LogFile); err != nil {
		t.Errorf("BIRD did not open its log file: %v", err)
	}
	if got := established(t, birdc, tor.Socket, dump, torTime, "node4", "node6"); !sameTimes(got, torSince, torTime) {
		t.Errorf("tor sessions restarted when the log file was turned on: established since %v, then %v\n%s", torSince, got, dump())
	}
	if got := bgpConnections(t, torNS); !slices.Equal(got, conns) {
		t.Errorf("BGP connections changed when the log file was turned on: %q, then %q", conns, got)
	}

	// Control: a changed peer option (hold time) restarts that session,
	// and the witnesses above see it.
	in.Peers[0].HoldTime = 30
	reconfigure(t, birdc, node, in)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := established(t, birdc, tor.Socket, dump, torTime, "node4", "node6")
		if !sameTimes(got[:1], torSince[:1], torTime) {
			if !sameTimes(got[1:], torSince[1:], torTime) {
				t.Errorf("changing tor1's hold time also restarted the IPv6 session: %v, then %v", torSince, got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("changing tor1's hold time did not restart its session within 30s (since %v, now %v)\n%s", torSince, got, dump())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := bgpConnections(t, torNS); slices.Equal(got, conns) {
		t.Errorf("BGP connections did not change when tor1's session restarted: %q", got)
	}
}

// timeFormat is how one BIRD prints protocol times in "show protocols", and
// how far apart two prints of the same instant may be: BIRD keeps times on
// a monotonic clock and converts them to wall-clock time when it prints them,
// so the same instant can print a few microseconds apart.
type timeFormat struct {
	layout    string
	tolerance time.Duration
}

var (
	// torTime is "timeformat protocol iso long us" (torConfig).
	torTime = timeFormat{layout: "2006-01-02 15:04:05.999999", tolerance: 10 * time.Millisecond}
	// nodeTime is BIRD 2's default, "iso short ms" ("%T.%3f") for today.
	nodeTime = timeFormat{layout: "15:04:05.000", tolerance: 10 * time.Millisecond}
)

// sameTimes reports whether a and b are the same instants, in format f.
// Times of day compare modulo 24 hours.
func sameTimes(a, b []time.Time, f timeFormat) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		d := a[i].Sub(b[i]).Abs() % (24 * time.Hour)
		if d > f.tolerance && 24*time.Hour-d > f.tolerance {
			return false
		}
	}
	return true
}

// reconfigure renders in into the node BIRD's config file, applies it with
// "birdc configure" and returns BIRD's reply.
func reconfigure(t *testing.T, birdc string, node *testenv.Bird, in Input) string {
	t.Helper()
	conf, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(node.Config, conf, 0o640); err != nil {
		t.Fatal(err)
	}
	out := birdcOut(t, birdc, node.Socket, "configure")
	if !strings.Contains(out, "Reconfigured") && !strings.Contains(out, "Reconfiguration in progress") {
		t.Fatalf("birdc configure: %s\nnode log:\n%s", out, node.LogText())
	}
	return out
}

// birdcOut runs one birdc command against socket and returns its output.
func birdcOut(t *testing.T, birdc, socket, command string) string {
	t.Helper()
	out, err := exec.Command(birdc, append([]string{"-s", socket}, strings.Fields(command)...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("birdc -s %s %s: %v\n%s", socket, command, err, out)
	}
	return string(out)
}

// routeLine matches the first line of a route in "show route": the network
// at the start of the line.
var routeLine = regexp.MustCompile(`(?m)^([0-9a-f.:]+/[0-9]+)\s`)

// waitRoutes waits until each ToR protocol has exactly the wanted routes
// (sorted as BIRD sorts them is not assumed), failing after 30s.
func waitRoutes(t *testing.T, birdc, socket string, dump func() string, want map[string][]string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := map[string][]string{}
		match := true
		for proto, routes := range want {
			for _, m := range routeLine.FindAllStringSubmatch(birdcOut(t, birdc, socket, "show route protocol "+proto), -1) {
				got[proto] = append(got[proto], m[1])
			}
			slices.Sort(got[proto])
			w := slices.Clone(routes)
			slices.Sort(w)
			match = match && slices.Equal(got[proto], w)
		}
		if match {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tor routes after 30s: %q, want %q\n%s", got, want, dump())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// established returns, for each protocol, the time its "show protocols" line
// says it has been Established since, printed in format f, waiting up to 30s
// for every session to be established.
func established(t *testing.T, birdc, socket string, dump func() string, f timeFormat, protos ...string) []time.Time {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		since := make([]time.Time, len(protos))
		up := true
		for i, proto := range protos {
			// "node4  BGP  ---  up  2025-01-01 12:00:00.123456  Established"
			out := birdcOut(t, birdc, socket, "show protocols "+proto)
			m := regexp.MustCompile(`(?m)^` + proto + `\s+BGP\s+\S+\s+up\s+(.+?)\s+Established\s*$`).FindStringSubmatch(out)
			if m == nil {
				up = false
				continue
			}
			ts, err := time.Parse(f.layout, m[1])
			if err != nil {
				t.Fatalf("protocol %s: since %q: %v", proto, m[1], err)
			}
			since[i] = ts
		}
		if up {
			return since
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions %q not established after 30s\n%s", protos, dump())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// bgpConnections returns the established TCP connections to or from port
// 179 in namespace ns, as "local peer" address pairs with ports; a session
// that restarts gets a new connection, with a new ephemeral port.
func bgpConnections(t *testing.T, ns string) []string {
	t.Helper()
	argv := testenv.InNS(ns, "ss", "-Htn", "state", "established", "( sport = :179 or dport = :179 )")
	out := testenv.Run(t, argv[0], argv[1:]...)
	var conns []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) >= 4 {
			conns = append(conns, f[2]+" "+f[3])
		}
	}
	slices.Sort(conns)
	return conns
}
