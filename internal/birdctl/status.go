package birdctl

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Status is BIRD's answer to "show status".
type Status struct {
	Version         string     // "2.0.12"
	RouterID        netip.Addr // "Router ID is ..."
	Hostname        string
	ServerTime      time.Time
	LastReboot      time.Time
	LastReconfig    time.Time
	GracefulRestart bool   // a 0024 "Graceful restart recovery in progress" line was present
	Message         string // final line: "Daemon is up and running", "Reconfiguration in progress", "Shutdown in progress"
}

// Status runs "show status". BIRD prints times in its local time zone; they
// are parsed in time.Local (see parseTime).
func (c *Client) Status(ctx context.Context) (Status, error) {
	const req = "show status"
	rep, err := c.Cmd(ctx, req)
	if err != nil {
		return Status{}, err
	}
	return parseStatus(rep)
}

// parseStatus parses a "show status" reply.
func parseStatus(rep *Reply) (Status, error) {
	if err := expect("show status", rep, CodeStatus); err != nil {
		return Status{}, err
	}
	s := Status{Message: rep.Text}
	for _, l := range rep.Lines {
		var err error
		switch l.Code {
		case CodeVersion:
			s.Version = strings.TrimPrefix(l.Text, "BIRD ")
		case CodeGracefulRestart:
			s.GracefulRestart = true
		case CodeStatusDetail:
			if v, ok := strings.CutPrefix(l.Text, "Router ID is "); ok {
				if s.RouterID, err = netip.ParseAddr(v); err != nil {
					return Status{}, fmt.Errorf("parse show status: router id: %w", err)
				}
			} else if v, ok := strings.CutPrefix(l.Text, "Hostname is "); ok {
				s.Hostname = v
			} else if v, ok := strings.CutPrefix(l.Text, "Current server time is "); ok {
				s.ServerTime, err = parseTime("server time", v)
			} else if v, ok := strings.CutPrefix(l.Text, "Last reboot on "); ok {
				s.LastReboot, err = parseTime("last reboot", v)
			} else if v, ok := strings.CutPrefix(l.Text, "Last reconfiguration on "); ok {
				s.LastReconfig, err = parseTime("last reconfiguration", v)
			}
			if err != nil {
				return Status{}, fmt.Errorf("parse show status: %w", err)
			}
		}
	}
	return s, nil
}

// timeLayout is BIRD's "timeformat base" default, "iso long ms"
// (2006-01-02 15:04:05.000). When parsing, Go accepts any fraction of a
// second after the seconds, so "iso long" and "iso long us" parse too.
const timeLayout = "2006-01-02 15:04:05"

// parseTime parses a date and time printed by show status, in time.Local
// (BIRD prints local time). Other timeformat settings are an error naming
// what.
func parseTime(what, v string) (time.Time, error) {
	t, err := time.ParseInLocation(timeLayout, v, time.Local)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q: not in BIRD's iso long format (YYYY-MM-DD hh:mm:ss[.fff])", what, v)
	}
	return t, nil
}
