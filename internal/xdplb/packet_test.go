package xdplb

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
)

// Test packets: Ethernet, IPv4 or IPv6, TCP or UDP, with correct
// checksums, so that the tables can check the program's incremental
// updates by recomputing them.

var (
	macRouter = [6]byte{0x02, 0, 0, 0, 0, 0x01}
	macNode   = [6]byte{0x02, 0, 0, 0, 0, 0x02}
)

type pkt struct {
	src, dst       netip.AddrPort
	proto          uint8
	payload        []byte
	udpNoCsum      bool   // IPv4 UDP without a checksum
	flags          uint16 // IPv4 frag_off field
	tcpFlags       uint8
	outer          *outerHdr
	ethSrc, ethDst [6]byte
}

type outerHdr struct{ src, dst netip.Addr }

func sum16(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func pseudo(src, dst netip.Addr, proto uint8, l4len int) uint32 {
	var s uint32
	s += sum16(src.AsSlice()) + sum16(dst.AsSlice())
	s += uint32(proto) + uint32(l4len)
	return s
}

func l4(src, dst netip.AddrPort, proto uint8, payload []byte, tcpFlags uint8, noCsum bool) []byte {
	var h []byte
	if proto == TCP {
		h = make([]byte, 20)
		binary.BigEndian.PutUint16(h[0:], src.Port())
		binary.BigEndian.PutUint16(h[2:], dst.Port())
		binary.BigEndian.PutUint32(h[4:], 1000)
		h[12] = 5 << 4
		h[13] = tcpFlags
		binary.BigEndian.PutUint16(h[14:], 65535)
	} else {
		h = make([]byte, 8)
		binary.BigEndian.PutUint16(h[0:], src.Port())
		binary.BigEndian.PutUint16(h[2:], dst.Port())
		binary.BigEndian.PutUint16(h[4:], uint16(8+len(payload)))
	}
	seg := append(h, payload...)
	if proto == UDP && noCsum {
		return seg
	}
	c := fold(pseudo(src.Addr(), dst.Addr(), proto, len(seg)) + sum16(seg))
	if proto == UDP && c == 0 {
		c = 0xffff
	}
	off := 16
	if proto == UDP {
		off = 6
	}
	binary.BigEndian.PutUint16(seg[off:], c)
	return seg
}

func ip4(src, dst netip.Addr, proto uint8, flags uint16, body []byte) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(body)))
	binary.BigEndian.PutUint16(h[4:], 0x1234)
	binary.BigEndian.PutUint16(h[6:], flags)
	h[8] = 64
	h[9] = proto
	copy(h[12:], src.AsSlice())
	copy(h[16:], dst.AsSlice())
	binary.BigEndian.PutUint16(h[10:], fold(sum16(h)))
	return append(h, body...)
}

func ip6(src, dst netip.Addr, proto uint8, body []byte) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(body)))
	h[6] = proto
	h[7] = 64
	copy(h[8:], src.AsSlice())
	copy(h[24:], dst.AsSlice())
	return append(h, body...)
}

func (p pkt) bytes() []byte {
	payload := p.payload
	if payload == nil {
		payload = []byte("hello")
	}
	var l3 []byte
	seg := l4(p.src, p.dst, p.proto, payload, p.tcpFlags, p.udpNoCsum)
	etype := uint16(0x0800)
	if p.src.Addr().Is4() {
		l3 = ip4(p.src.Addr(), p.dst.Addr(), p.proto, p.flags, seg)
	} else {
		l3 = ip6(p.src.Addr(), p.dst.Addr(), p.proto, seg)
		etype = 0x86dd
	}
	if o := p.outer; o != nil {
		if o.src.Is4() {
			l3 = ip4(o.src, o.dst, 4, 0, l3)
			l3[8] = 64
		} else {
			l3 = ip6(o.src, o.dst, 41, l3)
		}
	}
	eth := make([]byte, 14)
	src, dst := p.ethSrc, p.ethDst
	if src == ([6]byte{}) {
		src, dst = macRouter, macNode
	}
	copy(eth[0:], dst[:])
	copy(eth[6:], src[:])
	binary.BigEndian.PutUint16(eth[12:], etype)
	return append(eth, l3...)
}

// decoded is what the tables compare: the headers as a test reads them,
// with checksums verified.
type decoded struct {
	ethDst, ethSrc [6]byte
	outer          *outerHdr
	src, dst       netip.AddrPort
	proto          uint8
}

func (d decoded) String() string {
	s := fmt.Sprintf("%s -> %s proto %d", d.src, d.dst, d.proto)
	if d.outer != nil {
		s = fmt.Sprintf("[%s -> %s] ", d.outer.src, d.outer.dst) + s
	}
	return s
}

// decode parses b and checks every checksum in it.
func decode(t *testing.T, b []byte) decoded {
	t.Helper()
	var d decoded
	copy(d.ethDst[:], b[0:6])
	copy(d.ethSrc[:], b[6:12])
	l3 := b[14:]
	for {
		var src, dst netip.Addr
		var proto uint8
		var hl int
		if l3[0]>>4 == 4 {
			hl = int(l3[0]&0xf) * 4
			if fold(sum16(l3[:hl])) != 0 {
				t.Fatalf("IPv4 header checksum wrong: % x", l3[:hl])
			}
			src, dst = netip.AddrFrom4([4]byte(l3[12:16])), netip.AddrFrom4([4]byte(l3[16:20]))
			proto = l3[9]
			if int(binary.BigEndian.Uint16(l3[2:])) != len(l3) {
				t.Fatalf("IPv4 total length %d, packet has %d", binary.BigEndian.Uint16(l3[2:]), len(l3))
			}
		} else {
			hl = 40
			src, dst = netip.AddrFrom16([16]byte(l3[8:24])), netip.AddrFrom16([16]byte(l3[24:40]))
			proto = l3[6]
			if int(binary.BigEndian.Uint16(l3[4:]))+40 != len(l3) {
				t.Fatalf("IPv6 payload length %d, packet has %d", binary.BigEndian.Uint16(l3[4:]), len(l3)-40)
			}
		}
		if proto == 4 || proto == 41 {
			d.outer = &outerHdr{src: src, dst: dst}
			l3 = l3[hl:]
			continue
		}
		seg := l3[hl:]
		d.proto = proto
		d.src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(seg[0:]))
		d.dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(seg[2:]))
		noCsum := proto == UDP && src.Is4() && binary.BigEndian.Uint16(seg[6:]) == 0
		if !noCsum && fold(pseudo(src, dst, proto, len(seg))+sum16(seg)) != 0 {
			t.Fatalf("%s checksum wrong", d)
		}
		return d
	}
}
