package datapath

import (
	"encoding/binary"
	"net/netip"
)

// testPacket describes one Ethernet frame for the programs under test. The
// zero value of a field means "the usual": TTL/hop limit 64, no fragment, no
// extension headers. Checksums are left zero: nothing on this path checks them.
type testPacket struct {
	src, dst     netip.Addr
	proto        uint8
	sport, dport uint16
	tcpFlags     uint8
	icmpType     uint8
	icmpCode     uint8
	icmpID       uint16
	hopLimit     uint8
	// Fragments: fragOffset in 8-byte units; a later fragment (offset > 0)
	// carries no L4 header. IPv6 gets a fragment header when frag is set.
	frag       bool
	fragID     uint32
	fragOffset uint16
	moreFrags  bool
	// ext lists IPv6 extension headers (by next-header number) placed
	// before the fragment header and the L4 header.
	ext     []uint8
	payload []byte // after the L4 header; for ICMP errors, the quoted packet
}

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

func (p testPacket) l4() []byte {
	be := binary.BigEndian
	if p.frag && p.fragOffset > 0 {
		return p.payload
	}
	var h []byte
	switch p.proto {
	case ProtoTCP:
		h = make([]byte, 20)
		be.PutUint16(h[0:], p.sport)
		be.PutUint16(h[2:], p.dport)
		h[12] = 5 << 4
		h[13] = p.tcpFlags
		be.PutUint16(h[14:], 65535)
	case ProtoUDP:
		h = make([]byte, 8)
		be.PutUint16(h[0:], p.sport)
		be.PutUint16(h[2:], p.dport)
		be.PutUint16(h[4:], uint16(8+len(p.payload)))
	case ProtoSCTP:
		h = make([]byte, 12)
		be.PutUint16(h[0:], p.sport)
		be.PutUint16(h[2:], p.dport)
	case ProtoICMP, ProtoICMPv6:
		h = make([]byte, 8)
		h[0], h[1] = p.icmpType, p.icmpCode
		be.PutUint16(h[4:], p.icmpID)
	}
	return append(h, p.payload...)
}

// ip returns the packet from its IP header on (what an ICMP error quotes).
func (p testPacket) ip() []byte {
	be := binary.BigEndian
	ttl := p.hopLimit
	if ttl == 0 {
		ttl = 64
	}
	l4 := p.l4()
	if p.src.Is4() {
		h := make([]byte, 20)
		h[0] = 0x45
		be.PutUint16(h[2:], uint16(20+len(l4)))
		be.PutUint16(h[4:], uint16(p.fragID))
		fo := p.fragOffset
		if p.moreFrags {
			fo |= 0x2000
		}
		be.PutUint16(h[6:], fo)
		h[8], h[9] = ttl, p.proto
		s, d := p.src.As4(), p.dst.As4()
		copy(h[12:], s[:])
		copy(h[16:], d[:])
		return append(h, l4...)
	}
	// IPv6: the chain is ext..., [fragment], proto.
	chain := append([]uint8{}, p.ext...)
	if p.frag {
		chain = append(chain, 44)
	}
	chain = append(chain, p.proto)
	var exts []byte
	for i, nh := range chain[:len(chain)-1] {
		next := chain[i+1]
		switch nh {
		case 44:
			f := make([]byte, 8)
			f[0] = next
			fo := p.fragOffset << 3
			if p.moreFrags {
				fo |= 1
			}
			be.PutUint16(f[2:], fo)
			be.PutUint32(f[4:], p.fragID)
			exts = append(exts, f...)
		case 51: // AH: length in 4-byte units minus 2
			exts = append(exts, next, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
		default: // hop-by-hop, routing, destination options: 8 bytes
			exts = append(exts, next, 0, 1, 4, 0, 0, 0, 0)
		}
	}
	h := make([]byte, 40)
	h[0] = 0x60
	be.PutUint16(h[4:], uint16(len(exts)+len(l4)))
	h[6], h[7] = chain[0], ttl
	s, d := p.src.As16(), p.dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return append(append(h, exts...), l4...)
}

// frame returns the packet as an Ethernet frame.
func (p testPacket) frame() []byte {
	eth := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00}
	if p.src.Is6() {
		eth[12], eth[13] = 0x86, 0xDD
	}
	return append(eth, p.ip()...)
}

// rawFrame returns an Ethernet frame of the given type and payload.
func rawFrame(ethertype uint16, payload []byte) []byte {
	eth := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, byte(ethertype >> 8), byte(ethertype)}
	return append(eth, payload...)
}
