package main

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/inspect"
)

// badASReplies are the replies of a node's BIRD 2.0.12 (AS 65101) whose two
// sessions are refused over AS numbers: BIRD refused tor1's (agent.yaml says
// 65001), tor2 refused the node's.
var badASReplies = map[string]string{
	"restrict": "0016 Access restricted\n",
	"show protocols all": `2002-Name       Proto      Table      State  Since         Info
1002-bgp_tor1   BGP        ---        start  01:03:24.692  Idle          BGP Error: Bad peer AS
1006-  Description:    tor1
     BGP state:          Idle
       Neighbor address: 10.0.1.1
       Neighbor AS:      65001
       Local AS:         65101
       Error wait:       49.326/60
       Last error:       BGP Error: Bad peer AS
     Channel ipv4
       State:          DOWN
       Table:          master4
       Preference:     100
       Input filter:   REJECT
       Output filter:  REJECT
       GR recovery:    pending
 
1002-bgp_tor2   BGP        ---        start  01:03:39.071  Idle          Received: Bad peer AS
1006-  Description:    tor2
     BGP state:          Idle
       Neighbor address: 10.0.2.1
       Neighbor AS:      65000
       Local AS:         65101
       Error wait:       41.168/60
       Last error:       Received: Bad peer AS
     Channel ipv4
       State:          DOWN
       Table:          master4
       Preference:     100
       Input filter:   REJECT
       Output filter:  REJECT
       GR recovery:    pending
 
0000 
`,
	"show route protocol roost_owned4": "1007-Table master4:\n 10.244.1.0/24        blackhole [roost_owned4 01:03:22.757] * (200)\n0000 \n",
	"show route protocol roost_owned6": "0000 \n",
	"show route export bgp_tor1":       "9001 No valid tables\n",
	"show route export bgp_tor2":       "9001 No valid tables\n",
}

// badASLog is what that BIRD wrote to its log file (bird.logFile).
const badASLog = "2026-12-04 01:03:22.757 <INFO> Started\n" +
	"2026-12-04 01:03:24.691 <RMT> bgp_tor1: Error: Bad peer AS: 65000\n" +
	"2026-12-04 01:03:39.070 <RMT> bgp_tor2: Received: Bad peer AS: 65101\n"

const (
	hintTor1 = "Bad peer AS: tor1 sent AS 65000, agent.yaml expects 65001 (peers[].asn); fix one side"
	hintTor2 = "Bad peer AS: tor2 refused this node's AS 65101 (agent.yaml asn); fix one side: tor2's neighbor statement for this node, or asn in agent.yaml"
)

// tableLines returns out's lines with runs of spaces as one.
func tableLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return lines
}

func TestPeersBadPeerAS(t *testing.T) {
	bird := fakeBird(t, badASReplies)
	// The default log file is bird.log beside the socket.
	if err := os.WriteFile(filepath.Join(filepath.Dir(bird), "bird.log"), []byte(badASLog), 0o640); err != nil {
		t.Fatal(err)
	}
	out, err := roostctl("--bird-socket", bird, "peers")
	if err != nil {
		t.Fatalf("peers: %v\n%s", err, out)
	}
	want := []string{
		"NAME NEIGHBOR ASN STATE BGP STATE SINCE EXPORTED LAST ERROR",
		"tor1 10.0.1.1 65001 start Idle 01:03:24.692 0 " + hintTor1,
		"tor2 10.0.2.1 65000 start Idle 01:03:39.071 0 " + hintTor2,
	}
	if got := tableLines(out); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	out, err = roostctl("--bird-socket", bird, "peers", "-o", "json")
	var ss []inspect.Session
	if err != nil || json.Unmarshal([]byte(out), &ss) != nil || len(ss) != 2 {
		t.Fatalf("peers -o json: %v\n%s", err, out)
	}
	if s := ss[0]; s.LastError != "BGP Error: Bad peer AS" || s.ReceivedASN != 65000 || s.ExpectedASN != 65001 || s.LocalASN != 65101 || s.Hint != hintTor1 {
		t.Errorf("tor1 = %+v", s)
	}
	if s := ss[1]; s.LastError != "Received: Bad peer AS" || s.ReceivedASN != 0 || s.ExpectedASN != 0 || s.LocalASN != 65101 || s.Hint != hintTor2 {
		t.Errorf("tor2 = %+v", s)
	}
	for _, field := range []string{`"receivedASN": 65000`, `"expectedASN": 65001`, `"localASN": 65101`, `"hint": "Bad peer AS: tor1 sent AS 65000`} {
		if !strings.Contains(out, field) {
			t.Errorf("JSON lacks %s:\n%s", field, out)
		}
	}
}

// TestPeersBadPeerASWithoutLog: without BIRD's log, peers still succeeds,
// says what it knows, and where the rest is.
func TestPeersBadPeerASWithoutLog(t *testing.T) {
	bird := fakeBird(t, badASReplies)
	missing := filepath.Join(t.TempDir(), "bird.log")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "missing", args: []string{"--bird-log", missing},
			want: "The AS it sent is in BIRD's log when agent.yaml sets bird.logFile (--bird-log: open " + missing + ": no such file or directory)"},
		{name: "default beside the socket, missing", args: nil,
			want: "(--bird-log: open " + filepath.Join(filepath.Dir(bird), "bird.log") + ": no such file or directory)"},
		{name: "none", args: []string{"--bird-log", ""},
			want: "The AS it sent is in BIRD's log when agent.yaml sets bird.logFile (name it with roostctl --bird-log)"},
		{name: "a directory", args: []string{"--bird-log", t.TempDir()}, want: "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := roostctl(append(append([]string{"--bird-socket", bird}, tt.args...), "peers")...)
			if err != nil {
				t.Fatalf("peers fails without BIRD's log: %v\n%s", err, out)
			}
			lines := tableLines(out)
			if len(lines) != 3 {
				t.Fatalf("got\n%s", out)
			}
			const head = "tor1 10.0.1.1 65001 start Idle 01:03:24.692 0 Bad peer AS: tor1 sent an AS other than 65001, which agent.yaml expects (peers[].asn); fix one side. "
			if !strings.HasPrefix(lines[1], head) || !strings.Contains(lines[1], tt.want) {
				t.Errorf("tor1's line:\n%s\nwant it to start\n%s\nand hold\n%s", lines[1], head, tt.want)
			}
			if !strings.HasSuffix(lines[2], hintTor2) {
				t.Errorf("tor2's line: %s", lines[2])
			}
		})
	}
}

// TestRoutesBadPeerAS: routes says why a prefix is not sent in the words
// peers uses.
func TestRoutesBadPeerAS(t *testing.T) {
	bird := fakeBird(t, badASReplies)
	log := filepath.Join(t.TempDir(), "bird.log")
	if err := os.WriteFile(log, []byte(badASLog), 0o640); err != nil {
		t.Fatal(err)
	}
	agent := agentWith(t, agentapi.Status{Desired: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}, LastApply: agentapi.Apply{Result: agentapi.ResultOK}})
	out, err := roostctl("--agent", agent, "--bird-socket", bird, "--bird-log", log, "routes", "-o", "json")
	if err == nil {
		t.Errorf("routes exits 0 with no peer sent the prefix:\n%s", out)
	}
	var rows []inspect.Route
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("decode: %v\n%s", err, out)
	}
	want := []string{
		"not sent to tor1: session is Idle, not Established (last error: " + hintTor1 + ")",
		"not sent to tor2: session is Idle, not Established (last error: " + hintTor2 + ")",
	}
	if got := strings.Join(rows[0].Problems, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
}
