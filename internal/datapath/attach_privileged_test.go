package datapath

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/roost-net/roost/internal/testenv"
)

// inNetNS runs f on a thread inside the named network namespace.
func inNetNS(t *testing.T, ns string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	setns := func(path string) {
		t.Helper()
		fd, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer fd.Close()
		if err := unix.Setns(int(fd.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Fatalf("setns %s: %v", path, err)
		}
	}
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	setns("/var/run/netns/" + ns)
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime discards it.
			t.Errorf("setns back: %v", err)
			return
		}
		runtime.UnlockOSThread()
	}()
	f()
}

// ping reports whether one echo from namespace ns to dst is answered.
func ping(ns string, dst netip.Addr) bool {
	argv := testenv.InNS(ns, "ping", "-c", "1", "-W", "1", "-q", dst.String())
	return exec.Command(argv[0], argv[1:]...).Run() == nil
}

// TestPrivilegedAttached attaches the programs with TCX to the host side of
// a veth whose other end is the endpoint (two namespaces: "host" and "pod")
// and checks real traffic: the hook sees packets into the endpoint, ARP and
// neighbor discovery pass, pings into the endpoint pass only when allowed,
// and replies to its own pings always do.
func TestPrivilegedAttached(t *testing.T) {
	testenv.Privileged(t)
	testenv.Binary(t, "ping")
	hostNS, podNS := testenv.NetNS(t, "dph"), testenv.NetNS(t, "dpp")
	hostIf, podIf := testenv.Name("h"), testenv.Name("p")
	testenv.Veth(t, hostNS, hostIf, "10.9.0.1/24", podNS, podIf, "10.9.0.2/24")
	testenv.Run(t, "ip", "-n", hostNS, "addr", "add", "fd09::1/64", "dev", hostIf, "nodad")
	testenv.Run(t, "ip", "-n", podNS, "addr", "add", "fd09::2/64", "dev", podIf, "nodad")
	hostV4, podV4, hostV6, podV6 := ip("10.9.0.1"), ip("10.9.0.2"), ip("fd09::1"), ip("fd09::2")

	d := loadDatapath(t)
	var ifindex int
	inNetNS(t, hostNS, func() {
		ifc, err := net.InterfaceByName(hostIf)
		if err != nil {
			t.Fatal(err)
		}
		ifindex = ifc.Index
		for _, a := range []struct {
			prog *ebpf.Program
			at   ebpf.AttachType
		}{{d.objs.ToEndpoint, ebpf.AttachTCXEgress}, {d.objs.FromEndpoint, ebpf.AttachTCXIngress}} {
			l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: a.prog, Attach: a.at})
			if err != nil {
				t.Fatalf("attach %v: %v", a.at, err)
			}
			t.Cleanup(func() { l.Close() })
		}
	})

	// The endpoint allows pings from the host identity only once told to.
	noICMP, err := NewVerdictTable([]Rule{{Proto: ProtoTCP, FirstPort: 8080, LastPort: 8080}})
	if err != nil {
		t.Fatal(err)
	}
	echo, err := NewVerdictTable([]Rule{{Proto: ProtoICMP, FirstPort: 8, LastPort: 8}, {Proto: ProtoICMPv6, FirstPort: 128, LastPort: 128}})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []error{
		d.maps.SetVerdictTable(1, noICMP),
		d.maps.SetVerdictTable(2, echo),
		d.maps.SetIdentity(netip.PrefixFrom(hostV4, 32), IdentityHost),
		d.maps.SetIdentity(netip.PrefixFrom(hostV6, 128), IdentityHost),
		d.maps.SetPolicy(testEndpoint, IdentityAny, PolicyEntry{Table: 1}),
		d.maps.SetEndpoint(ifindex, Endpoint{ID: testEndpoint, EnforceIngress: true}),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}

	counted := func(r Reason) uint64 {
		t.Helper()
		c, err := d.maps.Counters()
		if err != nil {
			t.Fatal(err)
		}
		return c[r].Packets
	}

	if ping(hostNS, podV4) {
		t.Error("host -> pod ping passed without a rule allowing it")
	}
	// The link's own IPv6 chatter (MLD reports, router solicitations to
	// multicast groups) is dropped too, at times of its own choosing: look
	// for the echo request among the events.
	evs := d.readEvents(t)
	i := slices.IndexFunc(evs, func(ev DropEvent) bool { return ev.Dst == podV4 })
	if i < 0 || evs[i].Reason != ReasonDropPolicyDefault || evs[i].Src != hostV4 ||
		evs[i].Proto != ProtoICMP || evs[i].ICMPType != 8 || evs[i].SrcIdentity != IdentityHost ||
		evs[i].Endpoint != testEndpoint || evs[i].Ifindex != uint32(ifindex) {
		t.Errorf("drop events %+v, want the echo request from %v, identity host, on ifindex %d", evs, hostV4, ifindex)
	}
	if counted(ReasonPassNonIP) == 0 {
		t.Error("no ARP counted as passed")
	}

	if !ping(podNS, hostV4) {
		t.Error("pod -> host ping: the reply did not pass")
	}
	if !ping(podNS, hostV6) {
		t.Error("pod -> host IPv6 ping: the reply did not pass")
	}
	if counted(ReasonTrackNew) < 2 || counted(ReasonPassReply) < 2 {
		t.Errorf("counters: track-new %d, pass-reply %d; want 2 each at least", counted(ReasonTrackNew), counted(ReasonPassReply))
	}

	if err := d.maps.SetPolicy(testEndpoint, IdentityHost, PolicyEntry{Table: 2}); err != nil {
		t.Fatal(err)
	}
	if !ping(hostNS, podV4) {
		t.Error("host -> pod ping dropped although allowed")
	}
	if !ping(hostNS, podV6) {
		t.Error("host -> pod IPv6 ping dropped although allowed")
	}
	if counted(ReasonPassNDP) == 0 {
		t.Error("no neighbor discovery counted as passed")
	}

	// Without its endpoint entry the interface passes nothing in.
	if err := d.maps.DeleteEndpoint(ifindex); err != nil {
		t.Fatal(err)
	}
	if ping(hostNS, podV4) {
		t.Error("ping passed with the endpoint unknown")
	}
	if counted(ReasonDropUnknownEndpoint) == 0 {
		t.Error("no drop counted for the unknown endpoint")
	}
}
