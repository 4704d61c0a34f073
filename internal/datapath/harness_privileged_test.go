package datapath

import (
	"errors"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/roost-net/roost/bpf"
)

// Return codes of the programs (TCX_NEXT / TC_ACT_UNSPEC and TC_ACT_SHOT).
const (
	retPass int32 = -1
	retDrop int32 = 2
)

// testIfindex is the interface BPF_PROG_TEST_RUN gives the packet: lo.
const testIfindex = 1

// testDatapath is one freshly loaded copy of the Policy collection, closed
// at the end of the test.
type testDatapath struct {
	objs  bpf.PolicyObjects
	maps  *Maps
	drops *ringbuf.Reader
}

func loadDatapath(tb testing.TB) *testDatapath {
	tb.Helper()
	d := &testDatapath{}
	if err := bpf.LoadPolicyObjects(&d.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			tb.Fatalf("load: %+v", ve)
		}
		tb.Fatalf("load: %v", err)
	}
	tb.Cleanup(func() { d.objs.Close() })
	rd, err := ringbuf.NewReader(d.objs.Drops)
	if err != nil {
		tb.Fatalf("drops reader: %v", err)
	}
	tb.Cleanup(func() { rd.Close() })
	d.drops = rd
	d.maps = NewMaps(&d.objs)
	return d
}

// result is what one program run did.
type result struct {
	ret     int32
	reasons map[Reason]Counter // counter increments
	// entries are the increments of policy_counters slots 1 to
	// testCounterSlots, by slot.
	entries map[uint32]EntryCounter
	events  []DropEvent
}

// testCounterSlots is how many policy_counters slots run watches: those
// the tests give entries.
const testCounterSlots = 8

// entryCounters reads policy_counters slots 1 to testCounterSlots.
func (d *testDatapath) entryCounters(t *testing.T) map[uint32]EntryCounter {
	t.Helper()
	out := map[uint32]EntryCounter{}
	for i := uint32(1); i <= testCounterSlots; i++ {
		c, err := d.maps.EntryCounter(i)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = c
	}
	return out
}

func (c Counter) minus(o Counter) Counter {
	return Counter{Packets: c.Packets - o.Packets, Bytes: c.Bytes - o.Bytes}
}

// onCPU0 runs f on CPU 0, so that every run sees the same per-CPU flow
// cache (BPF_PROG_TEST_RUN runs the program on the calling CPU).
func onCPU0(t testing.TB, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, cpu0 [16]uint64 // cpu_set_t, 1024 CPUs
	cpu0[0] = 1
	affinity := func(op uintptr, set *[16]uint64) {
		t.Helper()
		if _, _, errno := syscall.RawSyscall(op, 0, unsafe.Sizeof(*set), uintptr(unsafe.Pointer(set))); errno != 0 {
			t.Fatalf("sched affinity: %v", errno)
		}
	}
	affinity(syscall.SYS_SCHED_GETAFFINITY, &old)
	affinity(syscall.SYS_SCHED_SETAFFINITY, &cpu0)
	defer affinity(syscall.SYS_SCHED_SETAFFINITY, &old)
	f()
}

// run runs prog on frame once, on CPU 0, and returns its verdict, the
// counters it moved and the drop events it wrote.
func (d *testDatapath) run(t *testing.T, prog *ebpf.Program, frame []byte) result {
	t.Helper()
	before, err := d.maps.Counters()
	if err != nil {
		t.Fatal(err)
	}
	entriesBefore := d.entryCounters(t)
	var ret uint32
	onCPU0(t, func() { ret, err = prog.Run(&ebpf.RunOptions{Data: frame}) })
	if err != nil {
		t.Fatalf("run %v: %v", prog, err)
	}
	after, err := d.maps.Counters()
	if err != nil {
		t.Fatal(err)
	}
	r := result{ret: int32(ret), reasons: map[Reason]Counter{}, entries: map[uint32]EntryCounter{}}
	for reason, c := range after {
		b := before[reason]
		if c != b {
			r.reasons[reason] = c.minus(b)
		}
	}
	for i, c := range d.entryCounters(t) {
		b := entriesBefore[i]
		if c != b {
			r.entries[i] = EntryCounter{Allowed: c.Allowed.minus(b.Allowed), Denied: c.Denied.minus(b.Denied),
				DefaultDenied: c.DefaultDenied.minus(b.DefaultDenied)}
		}
	}
	r.events = d.readEvents(t)
	return r
}

// readEvents returns the drop events waiting in the ring buffer.
func (d *testDatapath) readEvents(t *testing.T) []DropEvent {
	t.Helper()
	var out []DropEvent
	d.drops.SetDeadline(time.Now())
	for {
		rec, err := d.drops.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatalf("read drops: %v", err)
		}
		ev, err := ParseDropEvent(rec.RawSample)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
}

// expect checks that a run passed or dropped frame with reason, counted it
// once under that reason alone, and wrote a drop event (when dropped) equal
// to want, whose Len and Reason need not be set.
func (r result) expect(t *testing.T, frame []byte, reason Reason, want *DropEvent) {
	t.Helper()
	wantRet := retPass
	if reason.Dropped() {
		wantRet = retDrop
	}
	if r.ret != wantRet {
		t.Errorf("returned %d, want %d", r.ret, wantRet)
	}
	wantCounts := map[Reason]Counter{reason: {Packets: 1, Bytes: uint64(len(frame))}}
	if diff := cmp.Diff(wantCounts, r.reasons); diff != "" {
		t.Errorf("counters moved (-want +got):\n%s", diff)
	}
	var wantEvents []DropEvent
	if reason.Dropped() {
		if want == nil {
			t.Fatal("test bug: a drop needs an expected event")
		}
		ev := *want
		ev.Len, ev.Reason = uint32(len(frame)), reason
		wantEvents = append(wantEvents, ev)
	}
	if diff := cmp.Diff(wantEvents, r.events, cmpopts.IgnoreFields(DropEvent{}, "Time"), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("drop events (-want +got):\n%s", diff)
	}
}

// dropOf returns the drop event to_endpoint writes for p when the endpoint
// is ep and the source identity id.
func dropOf(p testPacket, endpoint uint32, id Identity) *DropEvent {
	ev := &DropEvent{
		Src: p.src, Dst: p.dst, Proto: p.proto, SrcIdentity: id,
		Endpoint: endpoint, Ifindex: testIfindex,
	}
	later := p.frag && p.fragOffset > 0
	switch {
	case later:
	case p.proto == ProtoTCP || p.proto == ProtoUDP || p.proto == ProtoSCTP:
		ev.SrcPort, ev.DstPort = p.sport, p.dport
	case p.proto == ProtoICMP || p.proto == ProtoICMPv6:
		ev.ICMPType = p.icmpType
		if isEcho(p.proto, p.icmpType) {
			ev.SrcPort, ev.DstPort = p.icmpID, p.icmpID
		}
	}
	return ev
}

func isEcho(proto, typ uint8) bool {
	if proto == ProtoICMP {
		return typ == 0 || typ == 8
	}
	return typ == 128 || typ == 129
}

// step runs one packet through prog (to_endpoint when nil) and checks it
// like expect, with the drop event dropOf(pkt, testEndpoint, id).
func (d *testDatapath) step(t *testing.T, prog *ebpf.Program, pkt testPacket, reason Reason, id Identity) {
	t.Helper()
	if prog == nil {
		prog = d.objs.ToEndpoint
	}
	var want *DropEvent
	if reason.Dropped() {
		want = dropOf(pkt, testEndpoint, id)
	}
	frame := pkt.frame()
	d.run(t, prog, frame).expect(t, frame, reason, want)
}
