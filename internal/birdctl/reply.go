package birdctl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Reply codes BIRD 2.0.12 sends that this package looks at. The class is in
// the first digit: 0xxx done, 1xxx table row, 2xxx table heading, 8xxx
// run-time error, 9xxx parse error.
const (
	CodeOK                 = 0    // "" (end of a table)
	CodeWelcome            = 1    // "BIRD 2.0.12 ready." (greeting)
	CodeReadingConfig      = 2    // "Reading configuration from FILE"
	CodeReconfigured       = 3    // "Reconfigured"; also "Daemon is up and running" in configure status
	CodeReconfigInProgress = 4    // "Reconfiguration in progress"
	CodeReconfigQueued     = 5    // "Reconfiguration already in progress, queueing new config"
	CodeShuttingDown       = 6    // "Reconfiguration ignored, shutting down"
	CodeStatus             = 13   // final line of show status
	CodeRouteTotal         = 14   // "Total: N of M routes ..." (count over several tables)
	CodeRestricted         = 16   // "Access restricted"
	CodeUnqueued           = 17   // "Reconfiguration already in progress, removing queued config" (undo)
	CodeConfirmed          = 18   // "Reconfiguration confirmed"
	CodeNothingToDo        = 19   // "Nothing to do"
	CodeConfigOK           = 20   // "Configuration OK"
	CodeUndoRequested      = 21   // "Undo requested"
	CodeUndoScheduled      = 22   // "Undo scheduled in N s"; "Configuration unconfirmed, undo in T s"
	CodeGracefulRestart    = 24   // "Graceful restart recovery in progress"
	CodeVersion            = 1000 // "BIRD 2.0.12"
	CodeProtocol           = 1002 // show protocols row
	CodeProtocolDetail     = 1006 // show protocols all detail
	CodeRoute              = 1007 // show route row
	CodeRouteDetail        = 1008 // show route all: "Type: ..."
	CodeStatusDetail       = 1011 // show status detail
	CodeRouteAttr          = 1012 // show route all: route attributes
	CodeProtocolHeading    = 2002 // show protocols heading
	CodeNetworkNotFound    = 8001 // "Network not found"
	CodeConfigError        = 8002 // "FILE:LINE:COL message" or "FILE: error"
	CodeNoProtocols        = 8003 // "No protocols match"
	CodeAccessDenied       = 8007 // "Access denied"
	CodeParseError         = 9001 // "syntax error, ...", "No valid tables", ...
)

// maxLineLen bounds one reply line. BIRD formats lines in a 512-byte buffer;
// the bound only keeps a broken peer from making the client buffer forever.
const maxLineLen = 64 << 10

// Line is one line of a reply: its code and its text without the code and
// separator. A continuation line (" text") carries the code of the line
// before it.
type Line struct {
	Code int
	Text string
}

// Reply is BIRD's complete answer to one request. Code and Text are those of
// the final line ("DDDD text"), which is also the last element of Lines.
type Reply struct {
	Code  int
	Text  string
	Lines []Line
}

// ErrProtocol is wrapped by errors about bytes that do not follow the control
// socket's framing. After one, the connection is out of step and is closed.
var ErrProtocol = errors.New("malformed reply from bird")

// readReply reads one reply from r: every line up to and including the first
// final line, and nothing after it. Asynchronous lines ("+text") belong to no
// reply; they are passed to async (without the "+"), if it is not nil, and
// are not part of the result. A continuation line takes the code of the last
// coded line of the same reply; one with no such line is an error. A line of
// just four digits is taken as final with empty text.
//
// It returns io.ErrUnexpectedEOF when the input ends inside a reply, io.EOF
// when it ends before any byte of one, an error wrapping ErrProtocol for
// malformed lines, and the reader's own errors.
func readReply(r *bufio.Reader, async func(string)) (*Reply, error) {
	var rep Reply
	code := -1 // code of the last coded line of this reply
	started := false
	for {
		line, err := readLine(r)
		if err != nil {
			if err == io.EOF && (started || len(line) > 0) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		started = true
		switch {
		case line[0] == '+':
			if async != nil {
				async(string(line[1:]))
			}
		case line[0] == ' ':
			if code < 0 {
				return nil, fmt.Errorf("%w: continuation line %q with no code before it", ErrProtocol, clip(line))
			}
			rep.Lines = append(rep.Lines, Line{Code: code, Text: string(line[1:])})
		default:
			c, ok := parseCode(line)
			if !ok || (len(line) > 4 && line[4] != '-' && line[4] != ' ') {
				return nil, fmt.Errorf("%w: line %q", ErrProtocol, clip(line))
			}
			code = c
			var text string
			if len(line) > 4 {
				text = string(line[5:])
			}
			rep.Lines = append(rep.Lines, Line{Code: c, Text: text})
			if len(line) == 4 || line[4] == ' ' {
				rep.Code, rep.Text = c, text
				return &rep, nil
			}
		}
	}
}

// readLine returns the next line of r without its "\n". A line is never
// empty: BIRD sends no empty lines, so one is reported as ErrProtocol. At the
// end of input it returns the bytes of an unterminated line, if any, with
// io.EOF.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		buf := append([]byte(nil), line...)
		for err == bufio.ErrBufferFull {
			if len(buf) > maxLineLen {
				return nil, fmt.Errorf("%w: line longer than %d bytes", ErrProtocol, maxLineLen)
			}
			line, err = r.ReadSlice('\n')
			buf = append(buf, line...)
		}
		line = buf
	}
	if err != nil {
		return line, err
	}
	line = line[:len(line)-1]
	if len(line) > maxLineLen {
		return nil, fmt.Errorf("%w: line longer than %d bytes", ErrProtocol, maxLineLen)
	}
	if len(line) == 0 {
		return nil, fmt.Errorf("%w: empty line", ErrProtocol)
	}
	return line, nil
}

// parseCode parses the four decimal digits that start a coded line.
func parseCode(line []byte) (int, bool) {
	if len(line) < 4 {
		return 0, false
	}
	n := 0
	for _, c := range line[:4] {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// clip shortens a line for an error message.
func clip(b []byte) string {
	const n = 80
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// Error is a BIRD error reply: a final line with an 8xxx (run-time) or 9xxx
// (parse) code. Use errors.As to get it, errors.Is with ErrNotFound,
// ErrConfig, ErrAccessDenied or ErrNoTables for the expected cases.
type Error struct {
	Code    int    // e.g. 8002
	Text    string // BIRD's text, e.g. "/etc/bird/bird.conf:6:1 syntax error, unexpected '}'"
	Request string // the request that got this answer
}

func (e *Error) Error() string {
	return fmt.Sprintf("bird: %q: %04d %s", e.Request, e.Code, e.Text)
}

// Is reports whether e is the expected state target stands for.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code == CodeNetworkNotFound || e.Code == CodeNoProtocols
	case ErrConfig:
		return e.Code == CodeConfigError
	case ErrAccessDenied:
		return e.Code == CodeAccessDenied
	case ErrNoTables:
		return e.Code == CodeParseError && e.Text == "No valid tables"
	}
	return false
}

// Expected states, matched with errors.Is against an *Error.
var (
	// ErrNotFound: 8001 "Network not found" (show route for/prefix) or
	// 8003 "No protocols match" (show protocols pattern).
	ErrNotFound = errors.New("not found")
	// ErrConfig: 8002, the configuration file cannot be read or parsed;
	// Error.Text names the file, line and column.
	ErrConfig = errors.New("configuration error")
	// ErrAccessDenied: 8007, the session is restricted.
	ErrAccessDenied = errors.New("access denied")
	// ErrNoTables: 9001 "No valid tables", which show route protocol P and
	// show route export P answer while P has no channel up (e.g. a BGP
	// session that is not established).
	ErrNoTables = errors.New("no valid tables")
)

// replyError returns the *Error for rep, or nil when rep is not an error.
func replyError(request string, rep *Reply) error {
	if rep.Code < 8000 {
		return nil
	}
	return &Error{Code: rep.Code, Text: rep.Text, Request: request}
}
