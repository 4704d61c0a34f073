package birdctl

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

var (
	// ErrNothingToDo: BIRD answered 0019 "Nothing to do" to configure
	// confirm (no configure timeout is pending: it was confirmed already,
	// or its undo has run) or to configure undo (no previous config).
	ErrNothingToDo = errors.New("bird: nothing to do")
	// ErrShuttingDown: BIRD ignored a configure because it is shutting down.
	ErrShuttingDown = errors.New("bird: reconfiguration ignored, shutting down")
)

// ConfigureOptions are the arguments of "configure".
type ConfigureOptions struct {
	File string // config file; "" for the one BIRD was started with (-c)
	// Timeout, when positive, sends "configure ... timeout N" with N its
	// whole seconds (rounded up): BIRD undoes the new config unless
	// ConfigureConfirm comes before N seconds pass.
	Timeout time.Duration
}

// ConfigureResult is BIRD's answer to a configure or configure undo that it
// accepted.
type ConfigureResult struct {
	// Code is CodeReconfigured (done), CodeReconfigInProgress (protocols
	// are still shutting down for the new config), CodeReconfigQueued
	// (another reconfiguration runs; this one follows it) or, for undo,
	// CodeUnqueued (undo dropped a queued config; the running
	// reconfiguration goes on).
	Code    int
	Message string        // BIRD's text, e.g. "Reconfigured"
	File    string        // "Reading configuration from FILE"; "" for undo
	UndoIn  time.Duration // "Undo scheduled in N s"; zero without a timeout
}

// Done reports whether BIRD runs the new configuration already.
func (r ConfigureResult) Done() bool { return r.Code == CodeReconfigured }

// ConfigStatus is BIRD's answer to "configure status".
type ConfigStatus struct {
	// Code is CodeReconfigured ("Daemon is up and running"),
	// CodeReconfigInProgress ("Reconfiguration in progress"),
	// CodeReconfigQueued ("Reconfiguration in progress, next one enqueued")
	// or CodeShuttingDown ("Shutdown in progress").
	Code        int
	Message     string
	Unconfirmed bool          // a configure timeout waits for confirm
	UndoIn      time.Duration // time left before BIRD undoes it
}

// ConfigureCheck runs `configure check "file"` (file "" checks the file BIRD
// was started with): BIRD parses the file in its own mount namespace without
// applying it. A file BIRD cannot read or parse is an *Error matching
// ErrConfig, whose Text is "FILE:LINE:COL message" or "FILE: reason".
func (c *Client) ConfigureCheck(ctx context.Context, file string) error {
	req := "configure check"
	if file != "" {
		q, err := quote("config file", file)
		if err != nil {
			return err
		}
		req += " " + q
	}
	rep, err := c.Cmd(ctx, req)
	if err != nil {
		return err
	}
	return expect(req, rep, CodeConfigOK)
}

// Configure runs `configure ["file"] [timeout N]`. A file BIRD cannot read
// or parse is an *Error matching ErrConfig, and BIRD keeps its running
// config; a restricted session gets one matching ErrAccessDenied. When BIRD
// is shutting down, the result comes with ErrShuttingDown.
func (c *Client) Configure(ctx context.Context, o ConfigureOptions) (ConfigureResult, error) {
	req := "configure"
	if o.File != "" {
		q, err := quote("config file", o.File)
		if err != nil {
			return ConfigureResult{}, err
		}
		req += " " + q
	}
	if o.Timeout > 0 {
		secs := int64(o.Timeout / time.Second)
		if o.Timeout%time.Second != 0 {
			secs++
		}
		req += " timeout " + strconv.FormatInt(secs, 10)
	}
	rep, err := c.Cmd(ctx, req)
	if err != nil {
		return ConfigureResult{}, err
	}
	return parseConfigure(req, rep)
}

// ConfigureConfirm runs "configure confirm", keeping a config applied with a
// timeout. It returns ErrNothingToDo when no timeout is pending, which after
// a configure with timeout means BIRD has undone it already.
func (c *Client) ConfigureConfirm(ctx context.Context) error {
	rep, err := c.Cmd(ctx, "configure confirm")
	if err != nil {
		return err
	}
	return parseConfirm(rep)
}

// ConfigureUndo runs "configure undo", going back to the config before the
// last configure. It returns ErrNothingToDo when there is none to go back
// to (e.g. after an undo).
func (c *Client) ConfigureUndo(ctx context.Context) (ConfigureResult, error) {
	rep, err := c.Cmd(ctx, "configure undo")
	if err != nil {
		return ConfigureResult{}, err
	}
	return parseUndo(rep)
}

// ConfigureStatus runs "configure status".
func (c *Client) ConfigureStatus(ctx context.Context) (ConfigStatus, error) {
	const req = "configure status"
	rep, err := c.Cmd(ctx, req)
	if err != nil {
		return ConfigStatus{}, err
	}
	return parseConfigStatus(rep)
}

// parseConfirm parses the reply to configure confirm.
func parseConfirm(rep *Reply) error {
	const req = "configure confirm"
	if rep.Code == CodeNothingToDo {
		return fmt.Errorf("%s: %w", req, ErrNothingToDo)
	}
	return expect(req, rep, CodeConfirmed)
}

// parseUndo parses the reply to configure undo.
func parseUndo(rep *Reply) (ConfigureResult, error) {
	const req = "configure undo"
	if rep.Code == CodeNothingToDo {
		return ConfigureResult{}, fmt.Errorf("%s: %w", req, ErrNothingToDo)
	}
	return parseConfigure(req, rep)
}

// parseConfigure parses the reply to configure or configure undo.
func parseConfigure(req string, rep *Reply) (ConfigureResult, error) {
	if err := expect(req, rep, CodeReconfigured, CodeReconfigInProgress, CodeReconfigQueued, CodeUnqueued, CodeShuttingDown); err != nil {
		return ConfigureResult{}, err
	}
	res := ConfigureResult{Code: rep.Code, Message: rep.Text}
	for _, l := range rep.Lines {
		switch l.Code {
		case CodeReadingConfig:
			res.File = strings.TrimPrefix(l.Text, "Reading configuration from ")
		case CodeUndoScheduled:
			// "Undo scheduled in 30 s"
			d, err := parseSeconds(strings.TrimPrefix(l.Text, "Undo scheduled in "))
			if err != nil {
				return ConfigureResult{}, fmt.Errorf("parse %q reply: %w", req, err)
			}
			res.UndoIn = d
		}
	}
	if rep.Code == CodeShuttingDown {
		return res, fmt.Errorf("%s: %w", req, ErrShuttingDown)
	}
	return res, nil
}

// parseConfigStatus parses the reply to configure status: a 0003..0006
// line, maybe a 0022 "Configuration unconfirmed, undo in 28.995 s" line,
// and a final 0000.
func parseConfigStatus(rep *Reply) (ConfigStatus, error) {
	if err := expect("configure status", rep, CodeOK); err != nil {
		return ConfigStatus{}, err
	}
	var s ConfigStatus
	for _, l := range rep.Lines {
		switch l.Code {
		case CodeReconfigured, CodeReconfigInProgress, CodeReconfigQueued, CodeShuttingDown:
			s.Code, s.Message = l.Code, l.Text
		case CodeUndoScheduled:
			d, err := parseSeconds(strings.TrimPrefix(l.Text, "Configuration unconfirmed, undo in "))
			if err != nil {
				return ConfigStatus{}, fmt.Errorf("parse configure status reply: %w", err)
			}
			s.Unconfirmed, s.UndoIn = true, d
		}
	}
	if s.Message == "" {
		return ConfigStatus{}, fmt.Errorf("parse configure status reply: no state line")
	}
	return s, nil
}

// parseSeconds parses BIRD's "30 s" or "28.995 s".
func parseSeconds(s string) (time.Duration, error) {
	num, ok := strings.CutSuffix(s, " s")
	f, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || !(f >= 0 && f <= 1e9) {
		return 0, fmt.Errorf("duration %q: want seconds like \"30 s\"", s)
	}
	return time.Duration(f * float64(time.Second)).Round(time.Millisecond), nil
}

// quote returns s as a BIRD string literal. BIRD's strings have no escapes,
// so s must hold no '"', no newline and no other control character.
func quote(what, s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("%s: empty", what)
	}
	for _, r := range s {
		if r == '"' || r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("%s %q: %q cannot be quoted for bird", what, s, r)
		}
	}
	return `"` + s + `"`, nil
}
