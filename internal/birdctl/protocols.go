package birdctl

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ProtocolQuery selects what "show protocols" lists.
type ProtocolQuery struct {
	All     bool   // "all": details (BGP state, channels, route counts)
	Pattern string // shell-like pattern of names ("tor*"); "" for every protocol
}

// Protocol is one protocol of "show protocols [all]".
type Protocol struct {
	Name  string
	Proto string // "BGP", "Static", "Device", "Kernel", "Pipe", ...
	Table string // main channel's table, "---" for none
	State string // "up", "down", "start", "stop"
	// Since is the time of the last state change as BIRD printed it, not
	// parsed: BIRD 2's default "timeformat protocol" prints "hh:mm:ss.fff"
	// within 20 hours and "YYYY-MM-DD" before that, in its local time zone.
	Since string
	Info  string // e.g. "Established", "Active        Socket: Connection refused"

	// With All, for every protocol that has one:
	Description string // the protocol's "description"

	// With All, for BGP protocols:
	BGPState        string     // "Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established"
	NeighborAddress netip.Addr // with zone for link-local IPv6
	NeighborAS      uint32
	LocalAS         uint32
	NeighborID      netip.Addr // the peer's router id, once it has sent OPEN
	LastError       string     // e.g. "Socket: No route to host", "Received: Administrative shutdown"

	// With All, for every protocol with channels:
	Channels []Channel
}

// Channel is one channel of a protocol in "show protocols all".
type Channel struct {
	Name         string // "ipv4", "ipv6"
	State        string // "UP", "DOWN"
	Table        string
	InputFilter  string // "ACCEPT", "REJECT", "(unnamed)" or a filter name
	OutputFilter string
	Imported     int
	Filtered     int // only counted with "import keep filtered"
	Exported     int
	Preferred    int
}

// Protocols runs "show protocols [all] ["pattern"]". A pattern that matches
// nothing is an *Error matching ErrNotFound.
func (c *Client) Protocols(ctx context.Context, q ProtocolQuery) ([]Protocol, error) {
	req := "show protocols"
	if q.All {
		req += " all"
	}
	if q.Pattern != "" {
		p, err := quote("protocol pattern", q.Pattern)
		if err != nil {
			return nil, err
		}
		req += " " + p
	}
	rep, err := c.Cmd(ctx, req)
	if err != nil {
		return nil, err
	}
	ps, err := parseProtocols(rep)
	if err != nil {
		return nil, fmt.Errorf("parse %q reply: %w", req, err)
	}
	return ps, nil
}

// parseProtocols parses a "show protocols [all]" reply.
func parseProtocols(rep *Reply) ([]Protocol, error) {
	if err := expect("show protocols", rep, CodeOK); err != nil {
		return nil, err
	}
	var ps []Protocol
	var ch *Channel // channel whose details follow, nil before the first
	for _, l := range rep.Lines {
		switch l.Code {
		case CodeProtocol:
			p, err := parseProtocolRow(l.Text)
			if err != nil {
				return nil, err
			}
			ps = append(ps, p)
			ch = nil
		case CodeProtocolDetail:
			if len(ps) == 0 {
				return nil, fmt.Errorf("protocol detail %q before any protocol", l.Text)
			}
			p := &ps[len(ps)-1]
			text := strings.TrimSpace(l.Text)
			key, val, ok := strings.Cut(text, ":")
			if !ok {
				if name, isCh := strings.CutPrefix(text, "Channel "); isCh {
					p.Channels = append(p.Channels, Channel{Name: name})
					ch = &p.Channels[len(p.Channels)-1]
				}
				continue // headings like "Local capabilities", blank lines
			}
			val = strings.TrimSpace(val)
			var err error
			if ch != nil {
				err = ch.set(key, val)
			} else {
				err = p.setBGP(key, val)
			}
			if err != nil {
				return nil, fmt.Errorf("protocol %s: %s: %w", p.Name, key, err)
			}
		}
	}
	return ps, nil
}

// parseProtocolRow parses a row "Name Proto Table State Since  Info". Since
// may hold single spaces (some timeformats do); two spaces end it.
func parseProtocolRow(text string) (Protocol, error) {
	var f [4]string
	rest := text
	for i := range f {
		rest = strings.TrimLeft(rest, " ")
		end := strings.IndexByte(rest, ' ')
		if end < 0 {
			end = len(rest)
		}
		f[i], rest = rest[:end], rest[end:]
		if f[i] == "" {
			return Protocol{}, fmt.Errorf("protocol row %q: want name, protocol, table, state and since", text)
		}
	}
	rest = strings.TrimLeft(rest, " ")
	since, info, _ := strings.Cut(rest, "  ")
	return Protocol{
		Name: f[0], Proto: f[1], Table: f[2], State: f[3],
		Since: strings.TrimSpace(since), Info: strings.TrimSpace(info),
	}, nil
}

// setBGP records one protocol-level detail; keys it does not know are
// ignored.
func (p *Protocol) setBGP(key, val string) error {
	var err error
	switch key {
	case "Description":
		p.Description = val
	case "BGP state":
		p.BGPState = val
	case "Neighbor address":
		p.NeighborAddress, err = netip.ParseAddr(val)
	case "Neighbor AS":
		p.NeighborAS, err = parseAS(val)
	case "Local AS":
		p.LocalAS, err = parseAS(val)
	case "Neighbor ID":
		p.NeighborID, err = netip.ParseAddr(val)
	case "Last error":
		p.LastError = val
	}
	return err
}

// parseAS parses an AS number.
func parseAS(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err
}

// set records one channel detail; keys it does not know are ignored.
func (ch *Channel) set(key, val string) error {
	switch key {
	case "State":
		ch.State = val
	case "Table":
		ch.Table = val
	case "Input filter":
		ch.InputFilter = val
	case "Output filter":
		ch.OutputFilter = val
	case "Routes":
		// "2 imported, 0 exported, 2 preferred", with "N filtered, " after
		// imported when the channel keeps filtered routes.
		for part := range strings.SplitSeq(val, ",") {
			num, what, ok := strings.Cut(strings.TrimSpace(part), " ")
			n, err := strconv.Atoi(num)
			if !ok || err != nil {
				return fmt.Errorf("route counts %q", val)
			}
			switch what {
			case "imported":
				ch.Imported = n
			case "filtered":
				ch.Filtered = n
			case "exported":
				ch.Exported = n
			case "preferred":
				ch.Preferred = n
			}
		}
	}
	return nil
}
