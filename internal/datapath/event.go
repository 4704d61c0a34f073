package datapath

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/roost-net/roost/bpf"
)

// DropEvent is one packet to_endpoint dropped, as read from the drops ring
// buffer.
type DropEvent struct {
	// Time is CLOCK_MONOTONIC (coarse) when the packet was dropped.
	Time time.Duration
	// Src and Dst are the packet's addresses; invalid when the packet was
	// not IP or did not parse far enough.
	Src, Dst netip.Addr
	// SrcPort and DstPort are the L4 ports, or both the echo identifier of
	// an ICMP echo; 0 when unknown.
	SrcPort, DstPort uint16
	Proto            uint8
	ICMPType         uint8 // ICMP and ICMPv6 only
	// SrcIdentity is the source's identity; IdentityAny when the drop came
	// before the lookup (malformed, unknown endpoint).
	SrcIdentity Identity
	Endpoint    uint32 // 0 when the endpoint is unknown
	Ifindex     uint32 // host-side interface
	Len         uint32 // packet length
	Reason      Reason
}

// dropEventSize is the size of struct drop_event.
var dropEventSize = binary.Size(bpf.PolicyDropEvent{})

// ParseDropEvent decodes one ring-buffer record of the drops map. It returns
// an error when raw is shorter than a drop event or names an unknown family.
func ParseDropEvent(raw []byte) (DropEvent, error) {
	if len(raw) < dropEventSize {
		return DropEvent{}, fmt.Errorf("drop event: %d bytes, want %d", len(raw), dropEventSize)
	}
	var e bpf.PolicyDropEvent
	if err := binary.Read(bytes.NewReader(raw[:dropEventSize]), binary.NativeEndian, &e); err != nil {
		return DropEvent{}, fmt.Errorf("drop event: %w", err)
	}
	ev := DropEvent{
		Time:        time.Duration(e.Time),
		SrcPort:     e.Sport,
		DstPort:     e.Dport,
		Proto:       e.Proto,
		ICMPType:    e.IcmpType,
		SrcIdentity: Identity(e.SrcIdentity),
		Endpoint:    e.Endpoint,
		Ifindex:     e.Ifindex,
		Len:         e.Len,
		Reason:      Reason(e.Reason),
	}
	switch e.Family {
	case 0:
	case 4:
		ev.Src = netip.AddrFrom4([4]byte(e.Src[:4]))
		ev.Dst = netip.AddrFrom4([4]byte(e.Dst[:4]))
	case 6:
		ev.Src = netip.AddrFrom16(e.Src)
		ev.Dst = netip.AddrFrom16(e.Dst)
	default:
		return DropEvent{}, fmt.Errorf("drop event: unknown address family %d", e.Family)
	}
	return ev, nil
}
