package datapath

import (
	"net/netip"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/testenv"
)

// conn returns the conntrack entry of endpoint testEndpoint from local to
// peer, failing the test when there is none.
func (d *testDatapath) conn(t *testing.T, proto uint8, local, peer netip.AddrPort) Conn {
	t.Helper()
	conns, err := d.maps.Conns()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		if c.Endpoint == testEndpoint && c.Proto == proto && c.Local == local && c.Peer == peer {
			return c
		}
	}
	t.Fatalf("no conntrack entry %d %v -> %v in %v", proto, local, peer, conns)
	return Conn{}
}

func ap(s string, port uint16) netip.AddrPort { return netip.AddrPortFrom(ip(s), port) }

// TestPrivilegedConntrack checks that replies to connections the endpoint
// opened pass its ingress policy, and nothing else does: TCP, UDP, ICMP
// echo, ICMP errors, IPv6, expiry and the TCP states.
func TestPrivilegedConntrack(t *testing.T) {
	testenv.Privileged(t)
	d := loadDatapath(t)
	setupFixture(t, d)
	from, to := d.objs.FromEndpoint, d.objs.ToEndpoint
	const peer = "198.51.100.7" // world

	t.Run("tcp", func(t *testing.T) {
		syn := testPacket{src: podV4, dst: ip(peer), proto: ProtoTCP, sport: 40000, dport: 443, tcpFlags: tcpSYN}
		synAck := testPacket{src: ip(peer), dst: podV4, proto: ProtoTCP, sport: 443, dport: 40000, tcpFlags: tcpSYN | tcpACK}
		otherPort := synAck
		otherPort.dport = 40001
		d.step(t, to, synAck, ReasonDropPolicyDefault, IdentityWorld) // nothing opened yet
		d.step(t, from, syn, ReasonTrackNew, 0)
		opened := d.conn(t, ProtoTCP, ap("10.0.0.10", 40000), ap(peer, 443))
		if opened.Flags != 0 {
			t.Errorf("after SYN: flags %v, want none", opened.Flags)
		}
		d.step(t, to, synAck, ReasonPassReply, 0)
		d.step(t, to, otherPort, ReasonDropPolicyDefault, IdentityWorld)
		syn.tcpFlags = tcpACK
		d.step(t, from, syn, ReasonTrackSeen, 0)
		est := d.conn(t, ProtoTCP, ap("10.0.0.10", 40000), ap(peer, 443))
		if est.Flags != CTEstablished || est.Expires-opened.Expires < 5*time.Hour {
			t.Errorf("after ACK: %+v, want established and 6 h longer than %v", est, opened.Expires)
		}
		synAck.tcpFlags = tcpRST
		d.step(t, to, synAck, ReasonPassReply, 0)
		closed := d.conn(t, ProtoTCP, ap("10.0.0.10", 40000), ap(peer, 443))
		if closed.Flags&CTClosed == 0 || closed.Expires >= est.Expires || closed.Expires > opened.Expires {
			t.Errorf("after RST: %+v, want closed and 10 s", closed)
		}
		// A new SYN on a closed entry opens it again.
		syn.tcpFlags = tcpSYN
		d.step(t, from, syn, ReasonTrackNew, 0)
		if c := d.conn(t, ProtoTCP, ap("10.0.0.10", 40000), ap(peer, 443)); c.Flags != 0 {
			t.Errorf("after new SYN: flags %v, want none", c.Flags)
		}
	})

	t.Run("tcp without SYN opens nothing", func(t *testing.T) {
		ack := testPacket{src: podV4, dst: ip(peer), proto: ProtoTCP, sport: 40100, dport: 443, tcpFlags: tcpACK}
		d.step(t, from, ack, ReasonTrackNone, 0)
		reply := testPacket{src: ip(peer), dst: podV4, proto: ProtoTCP, sport: 443, dport: 40100, tcpFlags: tcpACK}
		d.step(t, to, reply, ReasonDropPolicyDefault, IdentityWorld)
	})

	t.Run("tcp FIN both ways closes", func(t *testing.T) {
		out := testPacket{src: podV4, dst: ip(peer), proto: ProtoTCP, sport: 40200, dport: 443, tcpFlags: tcpSYN}
		in := testPacket{src: ip(peer), dst: podV4, proto: ProtoTCP, sport: 443, dport: 40200, tcpFlags: tcpSYN | tcpACK}
		d.step(t, from, out, ReasonTrackNew, 0)
		d.step(t, to, in, ReasonPassReply, 0)
		out.tcpFlags = tcpFIN | tcpACK
		d.step(t, from, out, ReasonTrackSeen, 0)
		if c := d.conn(t, ProtoTCP, ap("10.0.0.10", 40200), ap(peer, 443)); c.Flags != CTEstablished|CTTxFIN {
			t.Errorf("after endpoint FIN: flags %v", c.Flags)
		}
		in.tcpFlags = tcpFIN | tcpACK
		d.step(t, to, in, ReasonPassReply, 0)
		if c := d.conn(t, ProtoTCP, ap("10.0.0.10", 40200), ap(peer, 443)); c.Flags != CTEstablished|CTTxFIN|CTRxFIN|CTClosed {
			t.Errorf("after peer FIN: flags %v", c.Flags)
		}
	})

	t.Run("udp", func(t *testing.T) {
		q := testPacket{src: podV4, dst: ip(peer), proto: ProtoUDP, sport: 33333, dport: 53}
		a := testPacket{src: ip(peer), dst: podV4, proto: ProtoUDP, sport: 53, dport: 33333}
		d.step(t, to, a, ReasonDropPolicyDefault, IdentityWorld)
		d.step(t, from, q, ReasonTrackNew, 0)
		d.step(t, from, q, ReasonTrackSeen, 0)
		d.step(t, to, a, ReasonPassReply, 0)
		a.sport = 54
		d.step(t, to, a, ReasonDropPolicyDefault, IdentityWorld)
	})

	t.Run("sctp", func(t *testing.T) {
		out := testPacket{src: podV4, dst: ip(peer), proto: ProtoSCTP, sport: 3000, dport: 3868}
		in := testPacket{src: ip(peer), dst: podV4, proto: ProtoSCTP, sport: 3868, dport: 3000}
		d.step(t, from, out, ReasonTrackNew, 0)
		d.step(t, to, in, ReasonPassReply, 0)
	})

	t.Run("icmp echo", func(t *testing.T) {
		req := testPacket{src: podV4, dst: ip(peer), proto: ProtoICMP, icmpType: 8, icmpID: 77}
		reply := testPacket{src: ip(peer), dst: podV4, proto: ProtoICMP, icmpType: 0, icmpID: 77}
		d.step(t, to, reply, ReasonDropPolicyDefault, IdentityWorld)
		d.step(t, from, req, ReasonTrackNew, 0)
		d.step(t, to, reply, ReasonPassReply, 0)
		reply.icmpID = 78
		d.step(t, to, reply, ReasonDropPolicyDefault, IdentityWorld)
		// A request from the peer with the tracked id is no reply.
		d.step(t, to, testPacket{src: ip(peer), dst: podV4, proto: ProtoICMP, icmpType: 8, icmpID: 77}, ReasonDropPolicyDefault, IdentityWorld)
		// Answering a ping opens nothing.
		d.step(t, from, testPacket{src: podV4, dst: ip(peer), proto: ProtoICMP, icmpType: 0, icmpID: 79}, ReasonTrackNone, 0)
		d.step(t, to, testPacket{src: ip(peer), dst: podV4, proto: ProtoICMP, icmpType: 0, icmpID: 79}, ReasonDropPolicyDefault, IdentityWorld)
	})

	t.Run("ipv6", func(t *testing.T) {
		const peer6 = "2001:db8::7"
		syn := testPacket{src: podV6, dst: ip(peer6), proto: ProtoTCP, sport: 40000, dport: 443, tcpFlags: tcpSYN}
		synAck := testPacket{src: ip(peer6), dst: podV6, proto: ProtoTCP, sport: 443, dport: 40000, tcpFlags: tcpSYN | tcpACK}
		d.step(t, to, synAck, ReasonDropPolicyDefault, IdentityWorld)
		d.step(t, from, syn, ReasonTrackNew, 0)
		d.step(t, to, synAck, ReasonPassReply, 0)
		req := testPacket{src: podV6, dst: ip(peer6), proto: ProtoICMPv6, icmpType: 128, icmpID: 5}
		reply := testPacket{src: ip(peer6), dst: podV6, proto: ProtoICMPv6, icmpType: 129, icmpID: 5}
		d.step(t, to, reply, ReasonDropPolicyDefault, IdentityWorld)
		d.step(t, from, req, ReasonTrackNew, 0)
		d.step(t, to, reply, ReasonPassReply, 0)
		// Replies are looked up by the IPv6 key, not by an IPv4 one with the same bytes.
		d.conn(t, ProtoTCP, netip.AddrPortFrom(podV6, 40000), ap(peer6, 443))
	})

	t.Run("icmp errors about opened connections", func(t *testing.T) {
		q := testPacket{src: podV4, dst: ip(peer), proto: ProtoUDP, sport: 44444, dport: 53}
		d.step(t, from, q, ReasonTrackNew, 0)
		unreach := testPacket{src: ip("192.0.2.1"), dst: podV4, proto: ProtoICMP, icmpType: 3, icmpCode: 3, payload: q.ip()}
		d.step(t, to, unreach, ReasonPassRelated, 0)
		other := q
		other.sport = 44445
		unreachOther := unreach
		unreachOther.payload = other.ip()
		d.step(t, to, unreachOther, ReasonDropPolicyDefault, IdentityWorld)
		// The quoted packet must be one the endpoint sent.
		spoofed := q
		spoofed.src = ip("10.0.0.99")
		unreachSpoofed := unreach
		unreachSpoofed.payload = spoofed.ip()
		d.step(t, to, unreachSpoofed, ReasonDropPolicyDefault, IdentityWorld)

		// IPv6 packet too big about a TCP connection.
		syn := testPacket{src: podV6, dst: ip("2001:db8::8"), proto: ProtoTCP, sport: 41000, dport: 443, tcpFlags: tcpSYN}
		d.step(t, from, syn, ReasonTrackNew, 0)
		ptb := testPacket{src: ip("2001:db8::1"), dst: podV6, proto: ProtoICMPv6, icmpType: 2, payload: syn.ip()}
		d.step(t, to, ptb, ReasonPassRelated, 0)
		// An echo request the endpoint sent, quoted in time exceeded.
		ping := testPacket{src: podV4, dst: ip(peer), proto: ProtoICMP, icmpType: 8, icmpID: 900}
		d.step(t, from, ping, ReasonTrackNew, 0)
		exceeded := testPacket{src: ip("192.0.2.1"), dst: podV4, proto: ProtoICMP, icmpType: 11, payload: ping.ip()}
		d.step(t, to, exceeded, ReasonPassRelated, 0)
	})

	t.Run("explicit deny does not block replies", func(t *testing.T) {
		out := testPacket{src: podV4, dst: ip("10.0.1.3"), proto: ProtoTCP, sport: 42000, dport: 5432, tcpFlags: tcpSYN}
		in := testPacket{src: ip("10.0.1.3"), dst: podV4, proto: ProtoTCP, sport: 5432, dport: 42000, tcpFlags: tcpSYN | tcpACK}
		d.step(t, to, in, ReasonDropPolicyDeny, idBlocked)
		d.step(t, from, out, ReasonTrackNew, 0)
		d.step(t, to, in, ReasonPassReply, 0)
	})

	t.Run("expired entry", func(t *testing.T) {
		c := Conn{Endpoint: testEndpoint, Local: ap("10.0.0.10", 45000), Peer: ap(peer, 80), Proto: ProtoTCP, Expires: 1, Flags: CTEstablished}
		k, v := encodeConn(c)
		if err := d.objs.Conntrack.Put(k, v); err != nil {
			t.Fatal(err)
		}
		if got := d.conn(t, ProtoTCP, c.Local, c.Peer); got != c {
			t.Fatalf("conntrack entry round trip: got %+v, want %+v", got, c)
		}
		in := testPacket{src: ip(peer), dst: podV4, proto: ProtoTCP, sport: 80, dport: 45000, tcpFlags: tcpACK}
		d.step(t, to, in, ReasonDropPolicyDefault, IdentityWorld)
		// The endpoint's own packets do not revive it without a SYN.
		out := testPacket{src: podV4, dst: ip(peer), proto: ProtoTCP, sport: 45000, dport: 80, tcpFlags: tcpACK}
		d.step(t, from, out, ReasonTrackNone, 0)
		d.step(t, to, in, ReasonDropPolicyDefault, IdentityWorld)
	})

	t.Run("entries belong to one endpoint", func(t *testing.T) {
		out := testPacket{src: podV4, dst: ip(peer), proto: ProtoUDP, sport: 46000, dport: 123}
		in := testPacket{src: ip(peer), dst: podV4, proto: ProtoUDP, sport: 123, dport: 46000}
		d.step(t, from, out, ReasonTrackNew, 0)
		if err := d.maps.SetEndpoint(testIfindex, Endpoint{ID: testEndpoint + 1, EnforceIngress: true}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.maps.SetEndpoint(testIfindex, Endpoint{ID: testEndpoint, EnforceIngress: true}) })
		frame := in.frame()
		want := dropOf(in, testEndpoint+1, IdentityWorld)
		d.run(t, to, frame).expect(t, frame, ReasonDropPolicyDefault, want)
	})

	t.Run("unknown endpoint tracks nothing", func(t *testing.T) {
		if err := d.maps.DeleteEndpoint(testIfindex); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.maps.SetEndpoint(testIfindex, Endpoint{ID: testEndpoint, EnforceIngress: true}) })
		out := testPacket{src: podV4, dst: ip(peer), proto: ProtoUDP, sport: 47000, dport: 123}
		d.step(t, from, out, ReasonTrackUnknownEndpoint, 0)
	})
}

// TestPrivilegedFragments checks that later fragments get the verdict of
// their first fragment, and only L3 rules without it.
func TestPrivilegedFragments(t *testing.T) {
	testenv.Privileged(t)
	d := loadDatapath(t)
	setupFixture(t, d)

	frag := func(src, dst string, proto uint8, dport uint16, id uint32, offset uint16, more bool) testPacket {
		return testPacket{src: ip(src), dst: ip(dst), proto: proto, sport: 40000, dport: dport,
			frag: true, fragID: id, fragOffset: offset, moreFrags: more, payload: make([]byte, 24)}
	}
	t.Run("v4 allowed first fragment", func(t *testing.T) {
		d.step(t, nil, frag("10.0.1.1", "10.0.0.10", ProtoTCP, 80, 100, 0, true), ReasonPassPolicy, 0)
		d.step(t, nil, frag("10.0.1.1", "10.0.0.10", ProtoTCP, 80, 100, 3, true), ReasonPassPolicy, 0)
		d.step(t, nil, frag("10.0.1.1", "10.0.0.10", ProtoTCP, 80, 100, 6, false), ReasonPassPolicy, 0)
		// Another datagram's fragment, first never seen.
		d.step(t, nil, frag("10.0.1.1", "10.0.0.10", ProtoTCP, 80, 101, 3, false), ReasonDropFragment, idFrontend)
	})
	t.Run("v4 denied first fragment", func(t *testing.T) {
		d.step(t, nil, frag("10.0.1.1", "10.0.0.10", ProtoTCP, 81, 102, 0, true), ReasonDropPolicyDefault, idFrontend)
		d.step(t, nil, frag("10.0.1.1", "10.0.0.10", ProtoTCP, 81, 102, 3, false), ReasonDropFragment, idFrontend)
	})
	t.Run("v4 first fragment of denied port under L3 allow", func(t *testing.T) {
		d.step(t, nil, frag("10.0.1.2", "10.0.0.10", ProtoTCP, 22, 103, 0, true), ReasonDropPolicyDeny, idAdmin)
		d.step(t, nil, frag("10.0.1.2", "10.0.0.10", ProtoTCP, 22, 103, 3, false), ReasonDropFragment, idAdmin)
	})
	t.Run("v6 allowed first fragment", func(t *testing.T) {
		d.step(t, nil, frag("fd00:1::1", "fd00::10", ProtoUDP, 53, 104, 0, true), ReasonPassPolicy, 0)
		d.step(t, nil, frag("fd00:1::1", "fd00::10", ProtoUDP, 53, 104, 3, false), ReasonPassPolicy, 0)
		d.step(t, nil, frag("fd00:1::1", "fd00::10", ProtoUDP, 53, 105, 3, false), ReasonDropFragment, idFrontend)
	})
	t.Run("fragmented reply", func(t *testing.T) {
		q := testPacket{src: podV4, dst: ip("198.51.100.7"), proto: ProtoUDP, sport: 35000, dport: 53}
		d.step(t, d.objs.FromEndpoint, q, ReasonTrackNew, 0)
		d.step(t, nil, frag("198.51.100.7", "10.0.0.10", ProtoUDP, 35000, 106, 0, true), ReasonDropPolicyDefault, IdentityWorld)
		first := frag("198.51.100.7", "10.0.0.10", ProtoUDP, 35000, 107, 0, true)
		first.sport = 53
		d.step(t, nil, first, ReasonPassReply, 0)
		d.step(t, nil, frag("198.51.100.7", "10.0.0.10", ProtoUDP, 0, 107, 3, false), ReasonPassReply, 0)
	})
	t.Run("atomic fragment is no fragment", func(t *testing.T) {
		// IPv6 fragment header with offset 0 and no more fragments.
		d.step(t, nil, frag("fd00:1::1", "fd00::10", ProtoUDP, 53, 108, 0, false), ReasonPassPolicy, 0)
		d.step(t, nil, frag("fd00:1::1", "fd00::10", ProtoUDP, 54, 109, 0, false), ReasonDropPolicyDefault, idFrontend)
	})
}
