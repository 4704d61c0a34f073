package inspect

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/roost-net/roost/internal/birdctl"
)

func TestExplain(t *testing.T) {
	badAS := Session{Name: "tor1", Protocol: "bgp_tor1", ASN: 65001, LocalASN: 65101, State: "start", BGPState: "Idle", LastError: LastErrorBadPeerAS}
	refused := Session{Name: "tor1", Protocol: "bgp_tor1", ASN: 65000, LocalASN: 65101, State: "start", BGPState: "Idle", LastError: LastErrorPeerRefusedAS}
	logSays := func(b birdctl.BadPeerAS) BirdLog {
		return BirdLog{File: "/run/bird/bird.log", BadPeerAS: map[string]birdctl.BadPeerAS{"bgp_tor1": b}}
	}
	with := func(s Session, edit func(*Session)) Session {
		edit(&s)
		return s
	}
	tests := []struct {
		name      string
		s         Session
		log       BirdLog
		needsLog  bool
		hint      string
		expected  uint32
		received  uint32
		lastError string // what LastErrorText shows; hint when ""
	}{
		{
			name: "bad peer AS, the log tells the AS sent",
			s:    badAS, log: logSays(birdctl.BadPeerAS{Error: true, ErrorAS: 65000, ErrorAt: "2026-12-04 01:03:24.691"}),
			needsLog: true, expected: 65001, received: 65000,
			hint: "Bad peer AS: tor1 sent AS 65000, agent.yaml expects 65001 (peers[].asn); fix one side",
		},
		{
			name: "bad peer AS, 4-byte AS numbers",
			s:    with(badAS, func(s *Session) { s.ASN = 4200000001 }), log: logSays(birdctl.BadPeerAS{Error: true, ErrorAS: 4200000000}),
			needsLog: true, expected: 4200000001, received: 4200000000,
			hint: "Bad peer AS: tor1 sent AS 4200000000, agent.yaml expects 4200000001 (peers[].asn); fix one side",
		},
		{
			name: "bad peer AS, log unreadable",
			s:    badAS, log: BirdLog{File: "/run/bird/bird.log", Err: "open /run/bird/bird.log: no such file or directory"},
			needsLog: true, expected: 65001,
			hint: "Bad peer AS: tor1 sent an AS other than 65001, which agent.yaml expects (peers[].asn); fix one side. " +
				"The AS it sent is in BIRD's log when agent.yaml sets bird.logFile (--bird-log: open /run/bird/bird.log: no such file or directory)",
		},
		{
			name: "bad peer AS, no log file given",
			s:    badAS, log: BirdLog{},
			needsLog: true, expected: 65001,
			hint: "Bad peer AS: tor1 sent an AS other than 65001, which agent.yaml expects (peers[].asn); fix one side. " +
				"The AS it sent is in BIRD's log when agent.yaml sets bird.logFile (name it with roostctl --bird-log)",
		},
		{
			name: "bad peer AS, the log has no line for it",
			s:    badAS, log: BirdLog{File: "/run/bird/bird.log", BadPeerAS: map[string]birdctl.BadPeerAS{"bgp_tor2": {Error: true, ErrorAS: 65000}}},
			needsLog: true, expected: 65001,
			hint: "Bad peer AS: tor1 sent an AS other than 65001, which agent.yaml expects (peers[].asn); fix one side. " +
				`BIRD's log /run/bird/bird.log has no recent "Bad peer AS" line for bgp_tor1 saying which AS it sent`,
		},
		{
			// The line is from before agent.yaml was changed to what
			// the peer sent: it says nothing of the current error.
			name: "bad peer AS, the log's line is older than the config",
			s:    badAS, log: logSays(birdctl.BadPeerAS{Error: true, ErrorAS: 65001}),
			needsLog: true, expected: 65001,
			hint: "Bad peer AS: tor1 sent an AS other than 65001, which agent.yaml expects (peers[].asn); fix one side. " +
				`BIRD's log /run/bird/bird.log has no recent "Bad peer AS" line for bgp_tor1 saying which AS it sent`,
		},
		{
			name: "bad peer AS, the log has only the other direction",
			s:    badAS, log: logSays(birdctl.BadPeerAS{Received: true, ReceivedAS: 65101}),
			needsLog: true, expected: 65001,
			hint: "Bad peer AS: tor1 sent an AS other than 65001, which agent.yaml expects (peers[].asn); fix one side. " +
				`BIRD's log /run/bird/bird.log has no recent "Bad peer AS" line for bgp_tor1 saying which AS it sent`,
		},
		{
			name: "the peer refused this node's AS",
			s:    refused, log: BirdLog{},
			hint: "Bad peer AS: tor1 refused this node's AS 65101 (agent.yaml asn); fix one side: tor1's neighbor statement for this node, or asn in agent.yaml",
		},
		{
			name: "the peer refused this node's AS, local AS unknown",
			s:    with(refused, func(s *Session) { s.LocalASN = 0 }), log: BirdLog{},
			hint: "Bad peer AS: tor1 refused this node's AS (agent.yaml asn); fix one side: tor1's neighbor statement for this node, or asn in agent.yaml",
		},
		{
			name: "established: an old last error is not explained",
			s:    with(badAS, func(s *Session) { s.State, s.BGPState = "up", "Established" }),
			log:  logSays(birdctl.BadPeerAS{Error: true, ErrorAS: 65000}), lastError: LastErrorBadPeerAS,
		},
		{
			name: "another last error",
			s:    with(badAS, func(s *Session) { s.LastError = "Socket: Connection refused" }),
			log:  logSays(birdctl.BadPeerAS{Error: true, ErrorAS: 65000}), lastError: "Socket: Connection refused",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.NeedsBirdLog(); got != tt.needsLog {
				t.Errorf("NeedsBirdLog = %v, want %v", got, tt.needsLog)
			}
			got := Explain(tt.s, tt.log)
			if got.Hint != tt.hint {
				t.Errorf("hint:\n%s\nwant\n%s", got.Hint, tt.hint)
			}
			if got.ExpectedASN != tt.expected || got.ReceivedASN != tt.received {
				t.Errorf("expected %d received %d, want %d and %d", got.ExpectedASN, got.ReceivedASN, tt.expected, tt.received)
			}
			want := tt.lastError
			if want == "" {
				want = tt.hint
			}
			if got.LastErrorText() != want {
				t.Errorf("LastErrorText = %q, want %q", got.LastErrorText(), want)
			}
			// Explain adds; it changes nothing BIRD said.
			back := got
			back.Hint, back.ExpectedASN, back.ReceivedASN = "", 0, 0
			if diff := cmp.Diff(tt.s, back, cmp.Comparer(func(a, b Session) bool { return a == b })); diff != "" {
				t.Errorf("Explain changed the session: %s", diff)
			}
		})
	}
}
