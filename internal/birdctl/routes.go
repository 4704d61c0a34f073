package birdctl

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// RouteQuery selects what "show route" lists. Names must be BIRD symbols
// (letters, digits and "_", not starting with a digit).
type RouteQuery struct {
	// For lists the routes of the longest network matching this prefix
	// ("for"); for one address use a host prefix (/32, /128).
	For      netip.Prefix
	Table    string // "table T"; "" for every table
	Protocol string // "protocol P": routes protocol P brought in
	Export   string // "export P": routes protocol P sends (e.g. to a BGP peer)
	All      bool   // "all": route attributes (ignored by RouteCount)
}

// Route is one route of "show route".
type Route struct {
	Net        string       // the network as BIRD printed it, e.g. "10.0.0.0/24"
	Prefix     netip.Prefix // Net, when it is an IP prefix (invalid otherwise)
	Table      string       // e.g. "master4"
	Dest       string       // "unicast", "blackhole", "unreachable", "prohibited"
	Gateway    netip.Addr   // first next hop's gateway ("via"), if any
	Interface  string       // first next hop's interface ("on", "dev"), if any
	NextHops   []NextHop    // every next hop, in BIRD's order (several for ECMP)
	Protocol   string       // protocol the route came from
	Since      string       // as BIRD printed it, like Protocol.Since
	From       netip.Addr   // "from" (the BGP neighbor, when not the gateway)
	Primary    bool         // best route of its network ("*", or "!" when kernel sync failed)
	Preference int          // e.g. 200 for static, 100 for BGP
	Info       string       // what follows the preference, e.g. "[AS65001i]" for BGP
	// Attrs holds, with All, "Type" (e.g. "BGP univ") and the route's
	// attributes by name, e.g. "BGP.as_path": "65001 65002".
	Attrs map[string]string
}

// NextHop is one next hop of a route.
type NextHop struct {
	Gateway   netip.Addr // invalid for a device route
	Interface string
	Weight    int // ECMP weight when BIRD prints one, else 0
}

// Routes runs "show route" with q. A For that matches no network is an
// *Error matching ErrNotFound; a Protocol or Export whose channels are all
// down (e.g. a BGP session not established) one matching ErrNoTables.
func (c *Client) Routes(ctx context.Context, q RouteQuery) ([]Route, error) {
	req, err := q.request()
	if err != nil {
		return nil, err
	}
	if q.All {
		req += " all"
	}
	rep, err := c.Cmd(ctx, req)
	if err != nil {
		return nil, err
	}
	rs, err := parseRoutes(rep)
	if err != nil {
		return nil, fmt.Errorf("parse %q reply: %w", req, err)
	}
	return rs, nil
}

// RouteCount runs "show route ... count" with q and returns how many routes
// matched (the first number of "N of M routes for K networks"), summed over
// tables. It reads no route, so it is the cheap way to size a large table.
// BIRD 2.0.12 prints no count for a query with For (it answers a bare
// 0000), so for those RouteCount lists the network's routes and counts them.
func (c *Client) RouteCount(ctx context.Context, q RouteQuery) (int, error) {
	if q.For.IsValid() {
		q.All = false
		rs, err := c.Routes(ctx, q)
		return len(rs), err
	}
	req, err := q.request()
	if err != nil {
		return 0, err
	}
	req += " count"
	rep, err := c.Cmd(ctx, req)
	if err != nil {
		return 0, err
	}
	n, err := parseRouteCount(rep)
	if err != nil {
		return 0, fmt.Errorf("parse %q reply: %w", req, err)
	}
	return n, nil
}

// request returns the "show route" request for q, without "all" or
// "count".
func (q RouteQuery) request() (string, error) {
	var b strings.Builder
	b.WriteString("show route")
	if q.For.IsValid() {
		b.WriteString(" for ")
		if q.For.IsSingleIP() {
			b.WriteString(q.For.Addr().String())
		} else {
			b.WriteString(q.For.String())
		}
	}
	for _, o := range []struct{ kw, name string }{{"table", q.Table}, {"protocol", q.Protocol}, {"export", q.Export}} {
		if o.name == "" {
			continue
		}
		if !isSymbol(o.name) {
			return "", fmt.Errorf("show route %s %q: not a BIRD symbol name", o.kw, o.name)
		}
		b.WriteString(" " + o.kw + " " + o.name)
	}
	return b.String(), nil
}

// isSymbol reports whether s is a plain BIRD symbol: [A-Za-z_][A-Za-z0-9_]*,
// at most 64 bytes.
func isSymbol(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, c := range []byte(s) {
		letter := c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z')
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// parseRoutes parses a "show route [all]" reply. Its 1007 lines are table
// headings ("Table master4:"), blank separators, route rows and, starting
// with a tab, next hops of the row before; 1008 and 1012 lines are
// attributes of the last row, and "\t\t" lines continue the last attribute.
func parseRoutes(rep *Reply) ([]Route, error) {
	if err := expect("show route", rep, CodeOK); err != nil {
		return nil, err
	}
	n := 0 // route rows, at most: a large table is thousands of routes
	for _, l := range rep.Lines {
		if l.Code == CodeRoute && l.Text != "" && l.Text[0] != '\t' {
			n++
		}
	}
	rs := make([]Route, 0, n)
	var table, lastAttr string
	for _, l := range rep.Lines {
		switch l.Code {
		case CodeRoute:
			switch {
			case l.Text == "":
			case strings.HasPrefix(l.Text, "Table ") && strings.HasSuffix(l.Text, ":"):
				table = strings.TrimSuffix(strings.TrimPrefix(l.Text, "Table "), ":")
			case strings.HasPrefix(l.Text, "\t"):
				if len(rs) == 0 {
					return nil, fmt.Errorf("next hop %q before any route", l.Text)
				}
				if err := rs[len(rs)-1].addNextHop(l.Text); err != nil {
					return nil, err
				}
			default:
				r, err := parseRouteRow(l.Text)
				if err != nil {
					return nil, err
				}
				if r.Net == "" { // another route of the network above
					if len(rs) == 0 {
						return nil, fmt.Errorf("route row %q without a network", l.Text)
					}
					r.Net, r.Prefix = rs[len(rs)-1].Net, rs[len(rs)-1].Prefix
				}
				r.Table = table
				rs = append(rs, r)
				lastAttr = ""
			}
		case CodeRouteDetail, CodeRouteAttr:
			if len(rs) == 0 {
				return nil, fmt.Errorf("route attribute %q before any route", l.Text)
			}
			r := &rs[len(rs)-1]
			if r.Attrs == nil {
				r.Attrs = map[string]string{}
			}
			if more, ok := strings.CutPrefix(l.Text, "\t\t"); ok && lastAttr != "" {
				r.Attrs[lastAttr] += " " + strings.TrimSpace(more)
				continue
			}
			key, val, _ := strings.Cut(strings.TrimSpace(l.Text), ":")
			lastAttr = key
			r.Attrs[key] = strings.TrimSpace(val)
		}
	}
	return rs, nil
}

// parseRouteRow parses "NET  DEST [PROTO SINCE[ from ADDR]] [*] (PREF...) INFO".
// NET is empty on rows for further routes of the same network.
func parseRouteRow(text string) (Route, error) {
	bad := func(why string) (Route, error) { return Route{}, fmt.Errorf("route row %q: %s", text, why) }
	head, rest, ok := strings.Cut(text, " [")
	if !ok {
		return bad("no [protocol since]")
	}
	var r Route
	f := strings.Fields(head)
	switch {
	case strings.HasPrefix(head, " ") && len(f) <= 1: // no network
		r.Dest = strings.Join(f, "")
	case len(f) == 1: // no destination
		r.Net = f[0]
	case len(f) > 1:
		r.Net, r.Dest = strings.Join(f[:len(f)-1], " "), f[len(f)-1]
	default:
		return bad("no network")
	}
	if p, err := netip.ParsePrefix(r.Net); err == nil {
		r.Prefix = p
	}
	src, rest, ok := strings.Cut(rest, "]")
	if !ok {
		return bad("no ] after protocol")
	}
	r.Protocol, r.Since, _ = strings.Cut(src, " ")
	if since, from, ok := strings.Cut(r.Since, " from "); ok {
		a, err := netip.ParseAddr(from)
		if err != nil {
			return bad("from: " + err.Error())
		}
		r.Since, r.From = since, a
	}
	if r.Protocol == "" {
		return bad("no protocol")
	}
	rest = strings.TrimLeft(rest, " ")
	if rest != "" && (rest[0] == '*' || rest[0] == '!') {
		r.Primary = true
		rest = strings.TrimLeft(rest[1:], " ")
	}
	if pref, ok := strings.CutPrefix(rest, "("); ok {
		// "(200)", or for BGP "(100)", "(100/20)", "(100/?)", "(100s)".
		end := strings.IndexByte(pref, ')')
		if end < 0 {
			return bad("no ) after preference")
		}
		digits := pref[:end]
		if i := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
			digits = digits[:i]
		}
		n, err := strconv.Atoi(digits)
		if err != nil {
			return bad("preference: " + err.Error())
		}
		r.Preference, rest = n, pref[end+1:]
	}
	r.Info = strings.TrimSpace(rest)
	return r, nil
}

// addNextHop parses a next-hop line ("\tvia 10.0.0.1 on eth0 [weight 1]",
// "\tdev eth0") into r.
func (r *Route) addNextHop(text string) error {
	var nh NextHop
	f := strings.Fields(text)
	for i := 0; i < len(f); i++ {
		arg := ""
		if i+1 < len(f) {
			arg = f[i+1]
		}
		var err error
		switch f[i] {
		case "via":
			nh.Gateway, err = netip.ParseAddr(arg)
			i++
		case "on", "dev":
			nh.Interface = arg
			i++
		case "weight":
			nh.Weight, err = strconv.Atoi(arg)
			i++
		case "mpls":
			i++
		}
		if err != nil {
			return fmt.Errorf("next hop %q: %s: %w", text, f[i-1], err)
		}
	}
	if len(r.NextHops) == 0 {
		r.Gateway, r.Interface = nh.Gateway, nh.Interface
	}
	r.NextHops = append(r.NextHops, nh)
	return nil
}

// parseRouteCount parses a "show route ... count" reply: a 1007 line
// "N of M routes for K networks in table T" per table and, for several
// tables, a final 0014 "Total: N of M routes ...".
func parseRouteCount(rep *Reply) (int, error) {
	if err := expect("show route count", rep, CodeOK, CodeRouteTotal); err != nil {
		return 0, err
	}
	sum := 0
	for _, l := range rep.Lines {
		if l.Code != CodeRoute && l.Code != CodeRouteTotal {
			continue
		}
		f := strings.Fields(strings.TrimPrefix(l.Text, "Total: "))
		if len(f) < 3 || f[1] != "of" {
			return 0, fmt.Errorf("count line %q", l.Text)
		}
		n, err := strconv.Atoi(f[0])
		if err != nil {
			return 0, fmt.Errorf("count line %q: %w", l.Text, err)
		}
		if l.Code == CodeRouteTotal {
			return n, nil
		}
		sum += n
	}
	return sum, nil
}
