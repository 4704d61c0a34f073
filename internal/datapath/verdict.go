package datapath

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/roost-net/roost/bpf"
)

// Verdict is what a verdict table says about one (protocol, port).
type Verdict uint8

// Verdicts, as bpf/datapath.h defines them.
const (
	VerdictNone  = Verdict(bpf.PolicyVerdictVERDICT_NONE) // no rule: default deny
	VerdictAllow = Verdict(bpf.PolicyVerdictVERDICT_ALLOW)
	VerdictDeny  = Verdict(bpf.PolicyVerdictVERDICT_DENY) // a deny rule
)

// String returns "none", "allow" or "deny".
func (v Verdict) String() string {
	switch v {
	case VerdictNone:
		return "none"
	case VerdictAllow:
		return "allow"
	case VerdictDeny:
		return "deny"
	}
	return fmt.Sprintf("verdict-%d", uint8(v))
}

// IP protocol numbers a Rule names most often.
const (
	ProtoAny    uint8 = 0 // in a Rule: every protocol (an L3 rule)
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
	ProtoSCTP   uint8 = 132
)

// Rule allows, or with Deny denies, one IP protocol over a range of ports,
// for one remote identity on one endpoint.
type Rule struct {
	// Proto is the IP protocol number, or ProtoAny for every protocol,
	// which requires the full port range. Cilium's protocol ANY with ports
	// is three rules: TCP, UDP and SCTP.
	Proto uint8
	// FirstPort and LastPort are the inclusive destination port range:
	// 0-65535 for all ports. For ICMP and ICMPv6 they are message types;
	// protocols without ports have only port 0.
	FirstPort, LastPort uint16
	Deny                bool
}

// AnyProtocol returns the rule of an L3-only allow: every protocol, every port.
func AnyProtocol() Rule { return Rule{Proto: ProtoAny, FirstPort: 0, LastPort: 65535} }

// MaxBounds is how many interval starts one verdict table holds.
const MaxBounds = int(bpf.PolicyVerdictLimitsVERDICT_TABLE_MAX)

// ErrTableTooLarge is returned when rules need more than MaxBounds bounds.
var ErrTableTooLarge = errors.New("verdict table too large")

const keySpace = 1 << 24 // (protocol << 16 | port)

// VerdictTable maps every (protocol, port) to a verdict, as the kernel's
// verdicts map holds it: sorted interval starts, each with the verdict of
// the keys from it up to the next start. Its zero value denies everything.
type VerdictTable struct {
	bounds []uint32 // start << 8 | verdict, strictly increasing starts
}

func ruleRange(r Rule) (lo, hi uint32, err error) {
	if r.FirstPort > r.LastPort {
		return 0, 0, fmt.Errorf("rule %+v: first port %d after last port %d", r, r.FirstPort, r.LastPort)
	}
	if r.Proto == ProtoAny {
		if r.FirstPort != 0 || r.LastPort != 65535 {
			return 0, 0, fmt.Errorf("rule %+v: protocol any needs the full port range 0-65535", r)
		}
		return 0, keySpace - 1, nil
	}
	base := uint32(r.Proto) << 16
	return base | uint32(r.FirstPort), base | uint32(r.LastPort), nil
}

// NewVerdictTable builds the table of rules: a (protocol, port) that any
// deny rule covers is denied, else one that an allow rule covers is allowed,
// else it has no verdict (default deny). It returns an error wrapping
// ErrTableTooLarge when the result needs more than MaxBounds bounds, and one
// naming the rule when a rule is invalid.
func NewVerdictTable(rules []Rule) (VerdictTable, error) {
	type delta struct{ allow, deny int }
	deltas := map[uint32]delta{}
	add := func(p uint32, allow, deny int) {
		d := deltas[p]
		d.allow += allow
		d.deny += deny
		deltas[p] = d
	}
	for _, r := range rules {
		lo, hi, err := ruleRange(r)
		if err != nil {
			return VerdictTable{}, err
		}
		if r.Deny {
			add(lo, 0, 1)
			add(hi+1, 0, -1)
		} else {
			add(lo, 1, 0)
			add(hi+1, -1, 0)
		}
	}
	points := make([]uint32, 0, len(deltas))
	for p := range deltas {
		if p < keySpace {
			points = append(points, p)
		}
	}
	slices.Sort(points)

	var t VerdictTable
	allow, deny, prev := 0, 0, VerdictNone
	for _, p := range points {
		allow += deltas[p].allow
		deny += deltas[p].deny
		v := VerdictNone
		switch {
		case deny > 0:
			v = VerdictDeny
		case allow > 0:
			v = VerdictAllow
		}
		if v != prev {
			t.bounds = append(t.bounds, p<<8|uint32(v))
			prev = v
		}
	}
	if len(t.bounds) > MaxBounds {
		return VerdictTable{}, fmt.Errorf("%w: %d bounds, at most %d", ErrTableTooLarge, len(t.bounds), MaxBounds)
	}
	return t, nil
}

// Len returns the number of bounds in the table.
func (t VerdictTable) Len() int { return len(t.bounds) }

// Lookup returns the verdict for a packet of protocol proto to port (the
// ICMP type for ICMP), exactly as the kernel's binary search finds it.
func (t VerdictTable) Lookup(proto uint8, port uint16) Verdict {
	probe := (uint32(proto)<<16|uint32(port))<<8 | 0xFF
	n, _ := slices.BinarySearchFunc(t.bounds, probe, func(b, p uint32) int {
		if b <= p {
			return -1
		}
		return 1
	})
	if n == 0 {
		return VerdictNone
	}
	return Verdict(t.bounds[n-1] & 0xFF)
}

// Encode returns the table as the verdicts map stores it.
func (t VerdictTable) Encode() *bpf.PolicyVerdictTable {
	var v bpf.PolicyVerdictTable
	v.Len = uint32(copy(v.Bounds[:], t.bounds))
	return &v
}

// DecodeVerdictTable returns the table a verdicts map entry holds, or an
// error when the entry is not a valid table.
func DecodeVerdictTable(v *bpf.PolicyVerdictTable) (VerdictTable, error) {
	if int(v.Len) > len(v.Bounds) {
		return VerdictTable{}, fmt.Errorf("verdict table: length %d over %d", v.Len, len(v.Bounds))
	}
	t := VerdictTable{bounds: slices.Clone(v.Bounds[:v.Len])}
	for i, b := range t.bounds {
		if b&0xFF > uint32(VerdictDeny) {
			return VerdictTable{}, fmt.Errorf("verdict table: bound %d has verdict %d", i, b&0xFF)
		}
		if i > 0 && b>>8 <= t.bounds[i-1]>>8 {
			return VerdictTable{}, fmt.Errorf("verdict table: bound %d does not start after bound %d", i, i-1)
		}
	}
	return t, nil
}

// String lists the table's intervals, such as "6/80-80 allow, 6/81 none".
// The last interval runs to the end of the key space.
func (t VerdictTable) String() string {
	if len(t.bounds) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(t.bounds))
	for i, b := range t.bounds {
		start := b >> 8
		s := fmt.Sprintf("%d/%d", start>>16, start&0xFFFF)
		if i+1 < len(t.bounds) {
			end := t.bounds[i+1]>>8 - 1
			s += fmt.Sprintf("-%d/%d", end>>16, end&0xFFFF)
		} else {
			s += "-"
		}
		parts = append(parts, s+" "+Verdict(b&0xFF).String())
	}
	return strings.Join(parts, ", ")
}
