package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/inspect"
)

func TestPrintRoutes(t *testing.T) {
	p4, p6 := netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64")
	sessions := []inspect.Session{
		{Name: "tor1", Protocol: "bgp_tor1", Neighbor: netip.MustParseAddr("10.0.1.1"), BGPState: "Established"},
		{Name: "tor2", Protocol: "bgp_tor2", Neighbor: netip.MustParseAddr("fe80::1%eth1"), BGPState: "Established"},
	}
	exported := map[string]map[netip.Prefix]bool{"bgp_tor1": {p4: true}, "bgp_tor2": {p6: true}}
	inBird := map[netip.Prefix]bool{p4: true, p6: true}
	tests := []struct {
		name  string
		facts inspect.Facts
		want  []string // the table's lines, with runs of spaces as one
	}{
		{
			name: "dual stack, blackholes on",
			facts: inspect.Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p4, p6}, BlackholeRoutes: true},
				InBird: inBird, Sessions: sessions, Exported: exported,
				Blackholes: map[netip.Prefix]bool{p4: true, p6: true},
			},
			want: []string{
				"PREFIX DESIRED IN BIRD TO TOR1 TO TOR2 BLACKHOLE PROBLEMS",
				"10.244.1.0/24 yes yes yes - yes -",
				"fd00:10:244:1::/64 yes yes - yes yes -",
			},
		},
		{
			name: "blackholes off",
			facts: inspect.Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p4, p6}},
				InBird: inBird, Sessions: sessions, Exported: exported,
			},
			want: []string{
				"PREFIX DESIRED IN BIRD TO TOR1 TO TOR2 BLACKHOLE PROBLEMS",
				"10.244.1.0/24 yes yes yes - - -",
				"fd00:10:244:1::/64 yes yes - yes - -",
			},
		},
		{
			name: "blackholes on, kernel unreadable",
			facts: inspect.Facts{
				Status: agentapi.Status{Desired: []netip.Prefix{p4}, BlackholeRoutes: true},
				InBird: inBird, Sessions: sessions, Exported: exported, BlackholeError: "permission denied",
			},
			want: []string{
				"PREFIX DESIRED IN BIRD TO TOR1 TO TOR2 BLACKHOLE PROBLEMS",
				"10.244.1.0/24 yes yes yes - ? -",
				"fd00:10:244:1::/64 no yes - yes ? sent to tor2 but not desired by the agent (BIRD runs an old config? see roostctl status)",
				"kernel blackholes unknown: permission denied",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := printRoutes(&buf, inspect.Routes(tt.facts), tt.facts); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
				got = append(got, strings.Join(strings.Fields(l), " "))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestPrintStatusPeers(t *testing.T) {
	tests := []struct {
		name string
		peer agentapi.Peer
		want string
	}{
		{"established", agentapi.Peer{Name: "tor1", Neighbor: netip.MustParseAddr("10.0.1.1"), ASN: 65000, Family: "ipv4", State: "up", BGPState: "Established", Exported: 2},
			"Peer tor1: 10.0.1.1 AS65000 ipv4, up Established, 2 exported"},
		{"bird down", agentapi.Peer{Name: "tor1", Neighbor: netip.MustParseAddr("10.0.1.1"), ASN: 65000, Family: "ipv4", State: agentapi.StateUnknown, BGPState: agentapi.StateUnknown},
			"Peer tor1: 10.0.1.1 AS65000 ipv4, state unknown (BIRD does not answer)"},
		{"not polled", agentapi.Peer{Name: "tor2", Neighbor: netip.MustParseAddr("fe80::1%eth1"), ASN: 65000, Family: "ipv6"},
			"Peer tor2: fe80::1%eth1 AS65000 ipv6, not polled yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := printStatus(&buf, agentapi.Status{Peers: []agentapi.Peer{tt.peer}}); err != nil {
				t.Fatal(err)
			}
			var got string
			for _, l := range strings.Split(buf.String(), "\n") {
				if strings.HasPrefix(l, "Peer ") {
					got = strings.Join(strings.Fields(l), " ")
				}
			}
			if got != tt.want {
				t.Errorf("got %q, want %q\n%s", got, tt.want, buf.String())
			}
		})
	}
}

// birdReplies are the replies of a dual-stack node's BIRD 2.0.12: an IPv4
// session to tor1 and a link-local IPv6 session to tor2, both Established,
// each sent its family's prefix.
var birdReplies = map[string]string{
	"restrict": "0016 Access restricted\n",
	"show protocols all": `2002-Name       Proto      Table      State  Since         Info
1002-bgp_tor1   BGP        ---        up     19:54:39.762  Established   
1006-  Description:    tor1
     BGP state:          Established
     Neighbor address: 10.0.1.1
     Neighbor AS:      65000
     Local AS:         65101
   Channel ipv4
     State:          UP
     Table:          master4
     Routes:         0 imported, 1 exported, 0 preferred
 
1002-bgp_tor2   BGP        ---        up     19:54:39.762  Established   
1006-  Description:    tor2
     BGP state:          Established
     Neighbor address: fe80::1%eth1
     Neighbor AS:      65000
     Local AS:         65101
   Channel ipv6
     State:          UP
     Table:          master6
     Routes:         0 imported, 1 exported, 0 preferred
 
0000 
`,
	"show route protocol roost_owned4": "1007-Table master4:\n 10.244.1.0/24        blackhole [roost_owned4 19:54:35.391] * (200)\n0000 \n",
	"show route protocol roost_owned6": "1007-Table master6:\n fd00:10:244:1::/64   blackhole [roost_owned6 19:54:35.391] * (200)\n0000 \n",
	"show route export bgp_tor1":       "1007-Table master4:\n 10.244.1.0/24        blackhole [roost_owned4 19:54:35.391] * (200)\n0000 \n",
	"show route export bgp_tor2":       "1007-Table master6:\n fd00:10:244:1::/64   blackhole [roost_owned6 19:54:35.391] * (200)\n0000 \n",
}

// fakeBird serves replies on a BIRD control socket and returns its path.
func fakeBird(t *testing.T, replies map[string]string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rctl") // short: sun_path holds 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "bird.ctl")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.Write([]byte("0001 BIRD 2.0.12 ready.\n"))
				br := bufio.NewReader(conn)
				for {
					req, err := br.ReadString('\n')
					if err != nil {
						return
					}
					reply, ok := replies[strings.TrimSuffix(req, "\n")]
					if !ok {
						reply = "9001 syntax error\n"
					}
					if _, err := conn.Write([]byte(reply)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return path
}

// agentWith serves st on an agent's TCP status address.
func agentWith(t *testing.T, st agentapi.Status) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != agentapi.PathStatus {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(st)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestRoutesCommandDualStack runs roostctl routes against a fake BIRD and
// agent: a healthy dual-stack node is all OK and exits 0.
func TestRoutesCommandDualStack(t *testing.T) {
	p4, p6 := netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64")
	bird := fakeBird(t, birdReplies)
	down := maps.Clone(birdReplies)
	down["show route export bgp_tor2"] = "9001 No valid tables\n"
	birdDown := fakeBird(t, down)
	tests := []struct {
		name     string
		bird     string
		wantOK   bool
		problems string
	}{
		{name: "healthy", bird: bird, wantOK: true},
		{name: "v6 prefix not sent", bird: birdDown, problems: "not sent to tor2: in BIRD and the session is up, but the export filter rejects it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agent := agentWith(t, agentapi.Status{Desired: []netip.Prefix{p4, p6}, LastApply: agentapi.Apply{Result: agentapi.ResultOK}})
			out, err := roostctl("--agent", agent, "--bird-socket", tt.bird, "routes", "-o", "json")
			if (err == nil) != tt.wantOK {
				t.Errorf("err = %v, want OK %v\n%s", err, tt.wantOK, out)
			}
			var rows []inspect.Route
			if err := json.Unmarshal([]byte(out), &rows); err != nil {
				t.Fatalf("decode: %v\n%s", err, out)
			}
			if len(rows) != 2 || rows[0].Prefix != p4 || rows[1].Prefix != p6 {
				t.Fatalf("rows = %+v", rows)
			}
			var problems []string
			for _, r := range rows {
				if r.Blackhole != nil {
					t.Errorf("%s: blackhole %v with blackholeRoutes off", r.Prefix, *r.Blackhole)
				}
				problems = append(problems, r.Problems...)
			}
			if got := strings.Join(problems, "\n"); got != tt.problems {
				t.Errorf("problems:\n%s\nwant\n%s", got, tt.problems)
			}
			if !slices.Equal(rows[0].ExpectedOn, []string{"tor1"}) || !slices.Equal(rows[1].ExpectedOn, []string{"tor2"}) {
				t.Errorf("expected on %q and %q", rows[0].ExpectedOn, rows[1].ExpectedOn)
			}
		})
	}
	// The table says the same, "-" where a prefix is not for the peer.
	agent := agentWith(t, agentapi.Status{Desired: []netip.Prefix{p4, p6}})
	out, err := roostctl("--agent", agent, "--bird-socket", bird, "routes")
	if err != nil || !strings.Contains(strings.Join(strings.Fields(out), " "), "10.244.1.0/24 yes yes yes - - -") {
		t.Errorf("routes table: %v\n%s", err, out)
	}
}
