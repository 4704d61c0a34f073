package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/birdconf"
	"github.com/roost-net/roost/internal/config"
	"github.com/roost-net/roost/internal/inspect"
	"github.com/roost-net/roost/internal/testenv"
)

// waitLimit bounds the wait for BIRD to report a refused session: a broken
// setup fails there, a working one takes a few seconds (FRR connects every
// 2 s).
const waitLimit = 60 * time.Second

// TestPrivilegedPeersBadPeerAS runs a real BIRD with the config roost-agent
// renders from an agent.yaml (bird.logFile left to its default, beside the
// socket) against a real FRR ToR (AS 65000) in namespaces, with the AS
// numbers of the two sides disagreeing, and checks what roostctl peers and
// routes say (with no --bird-log: the defaults of both sides must agree):
//   - agent.yaml expects AS 65001 of the ToR: BIRD refuses the ToR's OPEN,
//     and peers names both the AS the ToR sent (65000, from BIRD's log) and
//     the AS agent.yaml expects;
//   - the ToR expects AS 65102 of the node (AS 65101): the ToR refuses the
//     node's OPEN, and peers says the ToR refused this node's AS 65101.
//
// Without the log file, peers still succeeds and says where the AS is.
func TestPrivilegedPeersBadPeerAS(t *testing.T) {
	tests := []struct {
		name      string
		peerASN   uint32 // agent.yaml peers[0].asn; the ToR is AS 65000
		torNodeAS uint32 // the node's AS in the ToR's neighbor statement; the node is AS 65101
		lastError string // BIRD's
		json      inspect.Session
		hint      string
	}{
		{
			name: "bird refuses the tor", peerASN: 65001, torNodeAS: 65101,
			lastError: inspect.LastErrorBadPeerAS,
			json:      inspect.Session{ASN: 65001, LocalASN: 65101, ExpectedASN: 65001, ReceivedASN: 65000},
			hint:      "Bad peer AS: tor1 sent AS 65000, agent.yaml expects 65001 (peers[].asn); fix one side",
		},
		{
			name: "the tor refuses the node", peerASN: 65000, torNodeAS: 65102,
			lastError: inspect.LastErrorPeerRefusedAS,
			json:      inspect.Session{ASN: 65000, LocalASN: 65101},
			hint:      "Bad peer AS: tor1 refused this node's AS 65101 (agent.yaml asn); fix one side: tor1's neighbor statement for this node, or asn in agent.yaml",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testenv.Privileged(t)
			node, tor := testenv.NetNS(t, "node"), testenv.NetNS(t, "tor")
			testenv.Veth(t, node, testenv.Name("u"), "10.0.1.2/30", tor, testenv.Name("d"), "10.0.1.1/30")
			testenv.StartFRR(t, tor, testenv.FRRConfig{
				ASN: 65000, RouterID: netip.MustParseAddr("10.0.1.1"),
				Neighbors: []testenv.FRRPeer{{Address: netip.MustParseAddr("10.0.1.2"), ASN: tt.torNodeAS}},
			})

			// Render as roost-agent does, from its agent.yaml.
			b := testenv.NewBird(t, node, testenv.MinimalConfig)
			defaults := config.Default()
			defaults.Node = "node1"
			cfg, err := config.Load(strings.NewReader(fmt.Sprintf(`asn: 65101
routerID: 10.0.1.2
podCIDRs: [10.244.1.0/24]
peers:
  - {name: tor1, address: 10.0.1.1, asn: %d}
bird: {socket: %s, configDir: %s}
`, tt.peerASN, b.Socket, b.Dir)), defaults)
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(filepath.Dir(b.Socket), "bird.log"); cfg.Bird.LogFile != want {
				t.Fatalf("bird.logFile = %q, want the default %q", cfg.Bird.LogFile, want)
			}
			conf, err := birdconf.Render(cfg.BirdInput(cfg.PodCIDRs))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(b.Config, conf, 0o640); err != nil {
				t.Fatal(err)
			}
			b.Start("")

			// Wait until BIRD reports the refusal.
			var s inspect.Session
			deadline := time.Now().Add(waitLimit)
			for {
				out, err := roostctl("--bird-socket", b.Socket, "peers", "-o", "json")
				var ss []inspect.Session
				if err != nil || json.Unmarshal([]byte(out), &ss) != nil || len(ss) != 1 {
					t.Fatalf("peers -o json: %v\n%s", err, out)
				}
				s = ss[0]
				if s.LastError == tt.lastError {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("BIRD did not report %q within %v; session %+v\nBIRD's stderr:\n%s", tt.lastError, waitLimit, s, b.LogText())
				}
				time.Sleep(200 * time.Millisecond)
			}
			logText, _ := os.ReadFile(cfg.Bird.LogFile)
			t.Logf("BIRD's log file %s:\n%s", cfg.Bird.LogFile, logText)

			got := inspect.Session{ASN: s.ASN, LocalASN: s.LocalASN, ExpectedASN: s.ExpectedASN, ReceivedASN: s.ReceivedASN}
			if got != tt.json || s.Hint != tt.hint || s.Name != "tor1" || s.Established() {
				t.Errorf("peers -o json: %+v\nwant %+v with hint\n%s", s, tt.json, tt.hint)
			}
			out, err := roostctl("--bird-socket", b.Socket, "peers")
			if err != nil || !strings.Contains(out, tt.hint) {
				t.Errorf("peers: %v; want LAST ERROR %q\n%s", err, tt.hint, out)
			}

			// routes says the same of the prefix no peer is sent.
			agent := agentWith(t, agentapi.Status{Desired: cfg.PodCIDRs, LastApply: agentapi.Apply{Result: agentapi.ResultOK}})
			out, err = roostctl("--agent", agent, "--bird-socket", b.Socket, "routes")
			if err == nil || !strings.Contains(out, "(last error: "+tt.hint+")") {
				t.Errorf("routes: %v; want the hint as the reason\n%s", err, out)
			}

			// Without the log file, peers succeeds and says where the AS
			// is; of a refusal by the ToR it says as much as before.
			if err := os.Remove(cfg.Bird.LogFile); err != nil {
				t.Fatal(err)
			}
			out, err = roostctl("--bird-socket", b.Socket, "peers")
			want := tt.hint
			if tt.lastError == inspect.LastErrorBadPeerAS {
				want = "Bad peer AS: tor1 sent an AS other than 65001, which agent.yaml expects (peers[].asn); fix one side. " +
					"The AS it sent is in BIRD's log when agent.yaml sets bird.logFile (--bird-log: open " + cfg.Bird.LogFile + ": no such file or directory)"
			}
			if err != nil || !strings.Contains(out, want) {
				t.Errorf("peers without the log file: %v; want LAST ERROR %q\n%s", err, want, out)
			}
		})
	}
}
