package datapath

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/roost-net/roost/bpf"
)

// CTFlags is the TCP state of a conntrack entry.
type CTFlags uint32

// Conntrack flags, as bpf/datapath.h defines them.
const (
	CTEstablished = CTFlags(bpf.PolicyCtFlagsCT_ESTABLISHED) // an ACK went either way after the SYN
	CTTxFIN       = CTFlags(bpf.PolicyCtFlagsCT_TX_FIN)      // the endpoint sent FIN
	CTRxFIN       = CTFlags(bpf.PolicyCtFlagsCT_RX_FIN)      // the peer sent FIN
	CTClosed      = CTFlags(bpf.PolicyCtFlagsCT_CLOSED)      // RST, or FIN both ways
)

// String lists the set flags, such as "established|tx-fin", or "-".
func (f CTFlags) String() string {
	var s []string
	for _, n := range []struct {
		f    CTFlags
		name string
	}{{CTEstablished, "established"}, {CTTxFIN, "tx-fin"}, {CTRxFIN, "rx-fin"}, {CTClosed, "closed"}} {
		if f&n.f != 0 {
			s = append(s, n.name)
		}
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, "|")
}

// Conn is one conntrack entry: a connection an endpoint opened, whose
// replies pass its ingress policy while the entry lives.
type Conn struct {
	Endpoint uint32
	// Local is the endpoint's address and port, Peer the other side's.
	// For ICMP echo both ports are the echo identifier.
	Local, Peer netip.AddrPort
	Proto       uint8
	// Expires is CLOCK_MONOTONIC (coarse) when the entry stops counting.
	Expires time.Duration
	Flags   CTFlags
}

func addrFrom(family uint8, b [16]uint8) (netip.Addr, error) {
	switch family {
	case 4:
		return netip.AddrFrom4([4]byte(b[:4])), nil
	case 6:
		return netip.AddrFrom16(b), nil
	}
	return netip.Addr{}, fmt.Errorf("unknown address family %d", family)
}

func addrBytes(a netip.Addr) (family uint8, b [16]uint8) {
	if a.Is4() {
		a4 := a.As4()
		copy(b[:], a4[:])
		return 4, b
	}
	return 6, a.As16()
}

// encodeConn returns the map key and value of c.
func encodeConn(c Conn) (bpf.PolicyCtKey, bpf.PolicyCtValue) {
	k := bpf.PolicyCtKey{Endpoint: c.Endpoint, Proto: c.Proto}
	k.Family, k.EpAddr = addrBytes(c.Local.Addr())
	_, k.PeerAddr = addrBytes(c.Peer.Addr())
	k.EpPort = networkOrder(c.Local.Port())
	k.PeerPort = networkOrder(c.Peer.Port())
	return k, bpf.PolicyCtValue{Expires: uint64(c.Expires), Flags: uint32(c.Flags)}
}

func decodeConn(k bpf.PolicyCtKey, v bpf.PolicyCtValue) (Conn, error) {
	local, err := addrFrom(k.Family, k.EpAddr)
	if err != nil {
		return Conn{}, fmt.Errorf("conntrack key: %w", err)
	}
	peer, _ := addrFrom(k.Family, k.PeerAddr)
	return Conn{
		Endpoint: k.Endpoint,
		Local:    netip.AddrPortFrom(local, networkOrder(k.EpPort)),
		Peer:     netip.AddrPortFrom(peer, networkOrder(k.PeerPort)),
		Proto:    k.Proto,
		Expires:  time.Duration(v.Expires),
		Flags:    CTFlags(v.Flags),
	}, nil
}

// networkOrder swaps a port between host order and the network order the
// conntrack key stores (its own inverse).
func networkOrder(port uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], port)
	return binary.NativeEndian.Uint16(b[:])
}

// Conns returns every conntrack entry, live or expired (an expired entry
// stays until LRU eviction or a new opening packet reuses it).
func (m *Maps) Conns() ([]Conn, error) {
	var (
		out []Conn
		k   bpf.PolicyCtKey
		v   bpf.PolicyCtValue
	)
	it := m.m.Conntrack.Iterate()
	for it.Next(&k, &v) {
		c, err := decodeConn(k, v)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("conntrack: iterate: %w", err)
	}
	return out, nil
}
