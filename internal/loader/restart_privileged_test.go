package loader

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/datapath"
)

// udpProbePolicy lets employee send UDP to db's port 7000, on top of the
// seed.
const udpProbePolicy = `---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: udp-probe
spec:
  endpointSelector:
    matchLabels:
      app: protected-db
  ingress:
  - fromEndpoints:
    - matchLabels:
        app: employee
    toPorts:
    - ports:
      - port: "7000"
        protocol: UDP
`

const dbProbe = "10.244.1.10:7000"

// udpSink counts the distinct sequence numbers it receives, by source.
type udpSink struct {
	conn *net.UDPConn
	mu   sync.Mutex
	seen map[netip.Addr]map[uint64]bool
}

func sinkUDP(t *testing.T, ns, addr string) *udpSink {
	t.Helper()
	s := &udpSink{seen: map[netip.Addr]map[uint64]bool{}}
	if err := inNS(ns, func() error {
		a, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		s.conn, err = net.ListenUDP("udp4", a)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.conn.SetReadBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.conn.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := s.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n < 8 {
				continue
			}
			s.mu.Lock()
			src := from.Addr().Unmap()
			if s.seen[src] == nil {
				s.seen[src] = map[uint64]bool{}
			}
			s.seen[src][binary.BigEndian.Uint64(buf)] = true
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *udpSink) received(src netip.Addr) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen[src])
}

// waitReceived waits until the sink has n datagrams from src, and reports
// whether they came (within 10 s).
func (s *udpSink) waitReceived(src netip.Addr, n int) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if s.received(src) >= n {
			return true
		}
	}
	return false
}

// udpSender sends numbered datagrams from a namespace until stopped.
type udpSender struct {
	sent atomic.Int64
	stop chan struct{}
	done chan error
}

func sendUDP(t *testing.T, ns, addr string) *udpSender {
	t.Helper()
	var conn *net.UDPConn
	if err := inNS(ns, func() error {
		a, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		conn, err = net.DialUDP("udp4", nil, a)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s := &udpSender{stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		defer conn.Close()
		var buf [8]byte
		for seq := uint64(0); ; seq++ {
			select {
			case <-s.stop:
				s.done <- nil
				return
			default:
			}
			binary.BigEndian.PutUint64(buf[:], seq)
			if _, err := conn.Write(buf[:]); err != nil {
				s.done <- fmt.Errorf("send %d: %w", seq, err)
				return
			}
			s.sent.Add(1)
			time.Sleep(500 * time.Microsecond)
		}
	}()
	t.Cleanup(func() { s.halt() })
	return s
}

// halt stops the sender and returns its error, once.
func (s *udpSender) halt() error {
	select {
	case <-s.stop:
		return nil
	default:
	}
	close(s.stop)
	return <-s.done
}

// chatter exchanges lines over one TCP connection until stopped.
type chatter struct {
	rounds atomic.Int64
	stop   chan struct{}
	done   chan error
}

func chat(t *testing.T, ns, addr string) *chatter {
	t.Helper()
	c, err := dial(ns, addr, 3*time.Second)
	if err != nil {
		t.Fatalf("%s -> %s: %v", ns, addr, err)
	}
	ch := &chatter{stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		defer c.Close()
		r := bufio.NewReader(c)
		for i := 0; ; i++ {
			select {
			case <-ch.stop:
				ch.done <- nil
				return
			default:
			}
			line := fmt.Sprintf("line %d", i)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := fmt.Fprintln(c, line); err != nil {
				ch.done <- fmt.Errorf("round %d: %w", i, err)
				return
			}
			got, err := r.ReadString('\n')
			if err != nil || got != line+"\n" {
				ch.done <- fmt.Errorf("round %d: echo %q, %v", i, got, err)
				return
			}
			ch.rounds.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { ch.halt() })
	return ch
}

func (ch *chatter) halt() error {
	select {
	case <-ch.stop:
		return nil
	default:
	}
	close(ch.stop)
	return <-ch.done
}

// TestPrivilegedRestartNoGap restarts the loader twice (Close, Open,
// Apply) while guest and employee send UDP to db without pause, and two TCP
// connections (employee to db, and db to employee, whose replies pass by
// conntrack alone) exchange lines: not one guest datagram may arrive, not
// one of employee's may be lost, and neither connection may break.
func TestPrivilegedRestartNoGap(t *testing.T) {
	lab := newLab(t)
	db, emp, guest := lab.pods["db"], lab.pods["employee"], lab.pods["guest"]
	serveTCP(t, db.ns, dbRedis)
	serveTCP(t, emp.ns, empHTTP)
	sink := sinkUDP(t, db.ns, dbProbe)
	res := compile(t, seedPolicy+udpProbePolicy, lab.endpoints())

	ld := lab.open(t, AttachAuto)
	apply(t, ld, res)
	before, err := ld.Counters()
	if err != nil {
		t.Fatal(err)
	}
	toDB, fromDB := chat(t, emp.ns, dbRedis), chat(t, db.ns, empHTTP)
	empUDP, guestUDP := sendUDP(t, emp.ns, dbProbe), sendUDP(t, guest.ns, dbProbe)

	progress := func(step string) { waitFlowing(t, step, sink, emp, guest, toDB, fromDB) }
	progress("start")
	for i := range 2 {
		if err := ld.Close(); err != nil {
			t.Fatal(err)
		}
		progress(fmt.Sprintf("restart %d, no loader", i))
		ld = lab.open(t, AttachAuto)
		progress(fmt.Sprintf("restart %d, opened", i))
		rep := apply(t, ld, res)
		updated := 0
		for _, c := range rep.Endpoints {
			if c.Action == Updated {
				updated++
			}
		}
		if rep.Counts != (Counts{}) || len(rep.Endpoints) != 3 || updated != 3 {
			t.Errorf("restart %d: apply %+v; want the 3 endpoints updated and nothing written", i, rep)
		}
		progress(fmt.Sprintf("restart %d, applied", i))
	}

	for name, err := range map[string]error{
		"employee udp": empUDP.halt(), "guest udp": guestUDP.halt(),
		"employee -> db tcp": toDB.halt(), "db -> employee tcp": fromDB.halt(),
	} {
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	sent := int(empUDP.sent.Load())
	if !sink.waitReceived(emp.ip, sent) {
		t.Errorf("employee sent %d datagrams, db received %d: %d lost", sent, sink.received(emp.ip), sent-sink.received(emp.ip))
	}
	if n := sink.received(guest.ip); n != 0 {
		t.Errorf("db received %d of guest's %d datagrams; want none", n, guestUDP.sent.Load())
	}
	after, err := ld.Counters()
	if err != nil {
		t.Fatal(err)
	}
	drops := after[datapath.ReasonDropPolicyDefault].Packets - before[datapath.ReasonDropPolicyDefault].Packets
	if guestSent := uint64(guestUDP.sent.Load()); drops < guestSent {
		t.Errorf("%d default-deny drops counted for guest's %d datagrams", drops, guestSent)
	}
	t.Logf("employee: %d datagrams, all received; guest: %d, all dropped; tcp rounds %d and %d",
		sent, guestUDP.sent.Load(), toDB.rounds.Load(), fromDB.rounds.Load())
}

// waitFlowing waits until employee's datagrams and both TCP connections have
// moved on by some amount (traffic flowed during the step before), and fails
// if db has received any of guest's datagrams.
func waitFlowing(t *testing.T, step string, sink *udpSink, emp, guest *pod, conns ...*chatter) {
	t.Helper()
	if !sink.waitReceived(emp.ip, sink.received(emp.ip)+50) {
		t.Fatalf("%s: employee's datagrams stopped arriving", step)
	}
	for _, c := range conns {
		n := c.rounds.Load()
		for deadline := time.Now().Add(10 * time.Second); c.rounds.Load() < n+10; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: a TCP connection stopped", step)
			}
		}
	}
	if n := sink.received(guest.ip); n != 0 {
		t.Fatalf("%s: db received %d of guest's datagrams", step, n)
	}
}
