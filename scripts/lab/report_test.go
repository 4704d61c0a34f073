package main

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/loaderapi"
	"github.com/roost-net/roost/internal/syncd"
)

func TestTrafficRow(t *testing.T) {
	tests := []struct {
		name string
		fam  int
		f    []string
		want string
	}{
		{"ipv4 header", 0, []string{"CLIENT", "SOURCE", "DESTINATION", "EXPECTED", "RESULT", "BACKENDS", "VIA", "NEW-DROPS", "CHECK"},
			"CLIENT     SOURCE       DESTINATION              EXPECTED  RESULT         BACKENDS     VIA        NEW-DROPS  CHECK\n"},
		{"ipv4 row", 0, []string{"employee2", "10.244.2.11", "svc:db 10.96.0.10:6379", "allowed", "4x connected", "db:3,db2:1", "tor1+tor2", "0", "ok"},
			"employee2  10.244.2.11  svc:db 10.96.0.10:6379   allowed   4x connected   db:3,db2:1   tor1+tor2  0          ok\n"},
		{"ipv6 row", 1, []string{"guest", "fd00:244:2::10", "db [fd00:244:1::10]:6379", "dropped", "no answer", "db", "tor1+tor2", "2", "ok"},
			"guest      fd00:244:2::10   db [fd00:244:1::10]:6379     dropped   no answer      db           tor1+tor2  2          ok\n"},
		{"wider than its column", 0, []string{"guest", "10.244.2.10", "vip:db 192.0.2.10:6379", "dropped", "7x no answer", "db:3,db2:1,?:3", "tor2+tor1", "8", "FAIL"},
			"guest      10.244.2.10  vip:db 192.0.2.10:6379   dropped   7x no answer   db:3,db2:1,?:3 tor2+tor1  8          FAIL\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := trafficRow(tt.fam, tt.f...); got != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestProbeResult(t *testing.T) {
	fail := errors.New("exit status 1")
	tests := []struct {
		name string
		out  string
		err  error
		want string
	}{
		{"connected", "Connection to 10.244.1.10 6379 port [tcp/*] succeeded!\n", nil, "connected"},
		{"timed out", "nc: connect to 10.244.1.10 port 6379 (tcp) timed out: Operation now in progress\n", fail, "no answer"},
		{"refused", "nc: connect to 10.244.1.10 port 22 (tcp) failed: Connection refused\n", fail, "refused (RST)"},
		{"other", "nc: connect to 10.0.9.10 port 6379 (tcp) failed: No route to host\n", fail, "failed: No route to host"},
		{"no colon", "something odd\n", fail, "failed: something odd"},
		{"no output", "", fail, "failed: exit status 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := probeResult(tt.out, tt.err); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSnmpField(t *testing.T) {
	snmp := "Ip: Forwarding DefaultTTL\nIp: 1 64\n" +
		"Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails\n" +
		"Tcp: 1 200 120000 -1 0 53 0\n" +
		"Udp: InDatagrams\nUdp: 7\n"
	n, err := snmpField(snmp, "Tcp", "PassiveOpens")
	if err != nil || n != 53 {
		t.Errorf("PassiveOpens = %d, %v; want 53", n, err)
	}
	if _, err := snmpField(snmp, "Tcp", "NoSuch"); err == nil {
		t.Error("a missing field gave no error")
	}
	if _, err := snmpField("", "Tcp", "PassiveOpens"); err == nil {
		t.Error("an empty file gave no error")
	}
}

// dropsJSON is roostctl -o json drops: indented objects, one after
// another.
const dropsJSON = `{
  "time": "2026-12-04T14:22:39.032791351Z",
  "src": "10.244.2.10",
  "dst": "10.244.1.10",
  "srcPort": 58938,
  "dstPort": 6379,
  "proto": 6,
  "srcIdentity": 229091288,
  "endpoint": "db",
  "ifindex": 4,
  "len": 74,
  "reason": "drop-policy-default"
}
{
  "time": "2026-12-04T14:22:40.056793268Z",
  "src": "10.244.2.10",
  "dst": "10.244.1.10",
  "srcPort": 58938,
  "dstPort": 6379,
  "proto": 6,
  "srcIdentity": 229091288,
  "endpoint": "db",
  "ifindex": 4,
  "len": 74,
  "reason": "drop-policy-default"
}
{
  "time": "2026-12-04T14:22:41.128793495Z",
  "src": "fd00:244:1::11",
  "dst": "fd00:244:1::10",
  "srcPort": 56352,
  "dstPort": 22,
  "proto": 6,
  "srcIdentity": 420165071,
  "endpoint": "db",
  "ifindex": 4,
  "len": 94,
  "reason": "drop-policy-default"
}
`

func TestDrops(t *testing.T) {
	ds, err := decodeDrops(dropsJSON)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 3 {
		t.Fatalf("decoded %d drops, want 3", len(ds))
	}
	if none, err := decodeDrops(""); err != nil || len(none) != 0 {
		t.Errorf("no drops: %v, %v", none, err)
	}
	if _, err := decodeDrops(`{"time": `); err == nil {
		t.Error("truncated JSON gave no error")
	}

	guest, db := netip.MustParseAddr("10.244.2.10"), netip.MustParseAddr("10.244.1.10")
	employee6, db6 := netip.MustParseAddr("fd00:244:1::11"), netip.MustParseAddr("fd00:244:1::10")
	if n := countDrops(ds, guest, db, 6379); n != 2 {
		t.Errorf("guest -> db:6379: %d drops, want 2", n)
	}
	if n := countDrops(ds, guest, db, 22); n != 0 {
		t.Errorf("guest -> db:22: %d drops, want 0", n)
	}
	if n := countDrops(ds, employee6, db6, 22); n != 1 {
		t.Errorf("employee -> db:22 over IPv6: %d drops, want 1", n)
	}

	// The same drop listed again, dated a few nanoseconds apart.
	again := ds[1]
	again.Time = again.Time.Add(-40 * time.Nanosecond)
	// The drop of the SYN retransmitted: the same but for its time.
	retransmitted := ds[0]
	retransmitted.Time = retransmitted.Time.Add(time.Second)
	tests := []struct {
		name string
		last *loaderapi.Drop
		want int // how many after it
	}{
		{"none listed before", nil, 3},
		{"the last", &ds[2], 0},
		{"listed again", &again, 1},
		{"not in the list", &retransmitted, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dropsAfter(ds, tt.last); len(got) != tt.want {
				t.Errorf("%d drops after it, want %d", len(got), tt.want)
			}
		})
	}
}

func TestTryVerdict(t *testing.T) {
	tests := []struct {
		name           string
		expect, got    string
		failed         bool
		tdrops         int
		hit            string
		local, crossed bool
		want           string
	}{
		{"allowed across", "allow", "connected", false, 0, "db", false, true, "ok"},
		{"allowed on the node", "allow", "connected", false, 0, "db", true, false, "ok"},
		{"allowed but dropped", "allow", "connected", false, 1, "db", false, true, "FAIL"},
		{"allowed, drops unknown", "allow", "connected", true, 0, "db", false, true, "FAIL"},
		{"allowed, refused", "allow", "refused (RST)", false, 0, "?", false, true, "FAIL"},
		{"dropped", "drop", "no answer", false, 2, "db", false, true, "ok"},
		{"dropped, no drop counted", "drop", "no answer", false, 0, "?", false, true, "FAIL"},
		{"dropped but connected", "drop", "connected", false, 0, "db", false, true, "FAIL"},
		{"no single backend", "allow", "connected", false, 0, "?", false, true, "FAIL (no single backend)"},
		{"crossed no ToR", "allow", "connected", false, 0, "db", false, false, "FAIL (crossed no ToR)"},
		{"left the node", "drop", "no answer", false, 2, "db", true, true, "FAIL (left the node)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tryVerdict(tt.expect, tt.got, tt.failed, tt.tdrops, tt.hit, tt.local, tt.crossed); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTally(t *testing.T) {
	tests := []struct {
		name       string
		backends   []string
		ends, hits []string
		results    string
		served     string
		allTried   bool
	}{
		{"one try", []string{"db"}, []string{"connected"}, []string{"db"}, "connected", "db", true},
		{"one try, no backend", []string{"db"}, []string{"no answer"}, []string{"?"}, "no answer", "?", false},
		{"several", []string{"db", "db2"}, []string{"connected", "connected", "connected", "connected"}, []string{"db2", "db", "db", "db"},
			"4x connected", "db:3,db2:1", true},
		{"several ends, the first first", []string{"db", "db2"}, []string{"no answer", "connected", "no answer"}, []string{"db", "?", "db"},
			"2x no answer, 1x connected", "db:2,?:1", false},
		{"none", []string{"db"}, nil, nil, "", "-", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tl tally
			for _, e := range tt.ends {
				tl.result(e)
			}
			for _, h := range tt.hits {
				tl.hit(h)
			}
			if len(tt.ends) > 0 {
				if got := tl.results(); got != tt.results {
					t.Errorf("results %q, want %q", got, tt.results)
				}
			}
			if got := tl.served(tt.backends); got != tt.served {
				t.Errorf("served %q, want %q", got, tt.served)
			}
			if got := tl.allTried(tt.backends); got != tt.allTried {
				t.Errorf("allTried %v, want %v", got, tt.allTried)
			}
		})
	}
}

func TestRouteLines(t *testing.T) {
	hop := "10.244.1.10 from 10.244.2.11 via 10.0.3.1 dev tor1 \\    cache iif employee2 \n"
	if got, want := hopLine(hop), "10.244.1.10 from 10.244.2.11 via 10.0.3.1 dev tor1"; got != want {
		t.Errorf("hopLine = %q, want %q", got, want)
	}
	hop6 := "fd00:244:1::10 from fd00:244:2::11 via fd00:0:4::1 dev tor2 metric 1024 iif employee2 pref medium\n"
	if got, want := hopLine(hop6), strings.TrimSuffix(hop6, "\n"); got != want {
		t.Errorf("hopLine = %q, want %q", got, want)
	}
	if got, want := hopLine("Cannot find device \"nosuch\"\n"), `Cannot find device "nosuch"`; got != want {
		t.Errorf("hopLine = %q, want %q", got, want)
	}
	ecmp := "192.0.2.10 nhid 31 proto bgp metric 20 \\\tnexthop via 10.0.1.2 dev node1 weight 1 \\\tnexthop via 10.0.3.2 dev node2 weight 1 \n"
	want := "192.0.2.10 nhid 31 proto bgp metric 20 nexthop via 10.0.1.2 dev node1 weight 1 nexthop via 10.0.3.2 dev node2 weight 1"
	if got := routeLine(ecmp); got != want {
		t.Errorf("routeLine = %q, want %q", got, want)
	}
	if got := routeLine(""); got != "" {
		t.Errorf("routeLine of nothing = %q", got)
	}
	for route, n := range map[string]int{
		"": 0,
		"192.0.2.10 via 10.0.1.2 dev node1 proto bgp metric 20": 1,
		strings.TrimSpace(ecmp):                                 2,
	} {
		if got := nextHops(route); got != n {
			t.Errorf("nextHops(%q) = %d, want %d", route, got, n)
		}
	}
}

func TestLastLines(t *testing.T) {
	var many []string
	for i := range 23 {
		many = append(many, strings.Repeat("x", i+1))
	}
	tests := []struct {
		name, out, want string
	}{
		{"none", "", "\n"},
		{"few", "a\nb\n", "a\nb\n"},
		{"many", strings.Join(many, "\n") + "\n", "(the last 20 of 23)\n" + strings.Join(many[3:], "\n") + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lastLines(tt.out, 20); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWorkloadsTable(t *testing.T) {
	expires := time.Date(2026, 12, 4, 14, 23, 34, 232094527, time.UTC)
	ws := []syncd.WorkloadInfo{
		{Namespace: "default", Name: "vm2", Source: "api", IPs: []netip.Addr{netip.MustParseAddr("10.0.10.10"), netip.MustParseAddr("fd00:0:10::10")},
			Labels: map[string]string{"tier": "db", "app": "employee"}, Expires: expires},
		{Namespace: "default", Name: "vm9", Source: "file", IPs: []netip.Addr{netip.MustParseAddr("10.0.10.11")}},
	}
	want := "WORKLOAD             SOURCE  IPS                        LABELS        EXPIRES\n" +
		"default/vm2          api     10.0.10.10,fd00:0:10::10   app=employee,tier=db 2026-12-04T14:23:34.232094527Z\n" +
		"default/vm9          file    10.0.10.11" + strings.Repeat(" ", 16+1+13+1) + "\n" // no labels, no expiry
	if got := workloadsTable(ws); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got, want := workloadsTable(nil), "WORKLOAD             SOURCE  IPS                        LABELS        EXPIRES\n(none)\n"; got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestFrontendBackends(t *testing.T) {
	u := &loaderapi.Uplink{Frontends: []loaderapi.UplinkFrontend{
		{Frontend: "tcp/192.0.2.10:6379", Backends: []loaderapi.UplinkBackend{
			{Addr: "10.244.1.10:6379", Local: true, State: "active"},
			{Addr: "10.244.2.12:6379", State: "draining"},
		}},
		{Frontend: "tcp/192.0.2.11:80", Backends: []loaderapi.UplinkBackend{{Addr: "10.244.1.11:80", State: "active"}}},
	}}
	got := frontendBackends(u, "tcp/192.0.2.10:6379")
	want := []string{"10.244.1.10:6379 local active", "10.244.2.12:6379 remote draining"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := frontendBackends(u, "tcp/192.0.2.12:6379"); len(got) != 0 {
		t.Errorf("an unknown frontend has backends %q", got)
	}
}

func TestLastApplyFailed(t *testing.T) {
	table := "NAME  ORIGIN\ndb    file\n"
	if lastApplyFailed(table) {
		t.Error("a table without a last apply line failed")
	}
	if !lastApplyFailed(table + "last apply failed: bad policy\nglobal view: connected\n") {
		t.Error("a table with a last apply line did not fail")
	}
}

func TestDeregChecks(t *testing.T) {
	s := parse(t, readFile(t, defaultFile))
	for fam := range families {
		got := s.deregChecks(fam)
		if len(got) == 0 {
			t.Fatalf("%s: the default file has no deregistration checks", families[fam].name)
		}
		for _, c := range got {
			if v := s.vm(c.Client); v == nil || v.Sync == "" {
				t.Errorf("%s: %v: the client is not a vm roost-sync registers", families[fam].name, c)
			}
			if c.Expect != c.Deregistered {
				t.Errorf("%s: %v: expects %s, not what it gives deregistered (%s)", families[fam].name, c, c.Expect, c.Deregistered)
			}
		}
	}
}
