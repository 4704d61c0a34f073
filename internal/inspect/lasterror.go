package inspect

import (
	"fmt"

	"github.com/roost-net/roost/internal/birdctl"
)

// Last errors of BIRD's BGP protocols (Session.LastError) that Explain
// explains, as "show protocols all" prints them.
const (
	// LastErrorBadPeerAS means BIRD refused the peer's OPEN message: the
	// peer's AS number is not the one bird.conf names for it (agent.yaml
	// peers[].asn). Which AS the peer sent is only in BIRD's log.
	LastErrorBadPeerAS = "BGP Error: Bad peer AS"
	// LastErrorPeerRefusedAS means the peer refused this node's OPEN
	// message with a Bad Peer AS notification: its neighbor statement for
	// this node names another AS than this node's (agent.yaml asn).
	LastErrorPeerRefusedAS = "Received: Bad peer AS"
)

// BirdLog is what roostctl learned from BIRD's log file (agent.yaml
// bird.logFile) for Explain.
type BirdLog struct {
	// File is the log file read, or "" when none was given.
	File string
	// Err says why File could not be read; "" when it was.
	Err string
	// BadPeerAS is what the file's tail (birdctl.MaxLogTail) says, per
	// BIRD protocol, of sessions refused over an AS number.
	BadPeerAS map[string]birdctl.BadPeerAS
}

// NeedsBirdLog reports whether Explain needs BIRD's log to explain s: the
// session is down because BIRD refused the AS number the peer sent, which
// only the log tells.
func (s Session) NeedsBirdLog() bool {
	return !s.Established() && s.LastError == LastErrorBadPeerAS
}

// Explain returns s with Hint set when its last error is one an operator
// must act on and Explain knows (LastErrorBadPeerAS,
// LastErrorPeerRefusedAS), saying what each side has and which to fix. For
// LastErrorBadPeerAS it also sets ExpectedASN and, when log tells it and it
// differs from what BIRD expects now, ReceivedASN. An established session,
// or any other last error, is returned as it is.
func Explain(s Session, log BirdLog) Session {
	if s.Established() {
		return s
	}
	switch s.LastError {
	case LastErrorBadPeerAS:
		s.ExpectedASN = s.ASN
		got := log.BadPeerAS[s.Protocol]
		if log.Err == "" && got.Error && got.ErrorAS != 0 && got.ErrorAS != s.ASN {
			s.ReceivedASN = got.ErrorAS
			s.Hint = fmt.Sprintf("Bad peer AS: %s sent AS %d, agent.yaml expects %d (peers[].asn); fix one side",
				s.Name, s.ReceivedASN, s.ExpectedASN)
			return s
		}
		var why string
		switch {
		case log.File == "":
			why = "The AS it sent is in BIRD's log when agent.yaml sets bird.logFile (name it with roostctl --bird-log)"
		case log.Err != "":
			why = fmt.Sprintf("The AS it sent is in BIRD's log when agent.yaml sets bird.logFile (--bird-log: %s)", log.Err)
		default:
			// No line, or only one older than BIRD's current config.
			why = fmt.Sprintf("BIRD's log %s has no recent %q line for %s saying which AS it sent", log.File, "Bad peer AS", s.Protocol)
		}
		s.Hint = fmt.Sprintf("Bad peer AS: %s sent an AS other than %d, which agent.yaml expects (peers[].asn); fix one side. %s",
			s.Name, s.ExpectedASN, why)
	case LastErrorPeerRefusedAS:
		as := "this node's AS"
		if s.LocalASN != 0 {
			as = fmt.Sprintf("this node's AS %d", s.LocalASN)
		}
		s.Hint = fmt.Sprintf("Bad peer AS: %s refused %s (agent.yaml asn); fix one side: %s's neighbor statement for this node, or asn in agent.yaml",
			s.Name, as, s.Name)
	}
	return s
}

// LastErrorText is what `roostctl peers` and `roostctl routes` show as s's
// last error: Hint when Explain set one, else BIRD's own words (LastError).
func (s Session) LastErrorText() string {
	if s.Hint != "" {
		return s.Hint
	}
	return s.LastError
}
