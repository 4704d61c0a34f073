package agent

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/testenv"
)

// TestPrivilegedAgentGracefulRestart stops the node's BIRD on purpose, the
// way roost's BIRD image does on a container stop or an image upgrade
// (birdc graceful restart), and starts it again a few seconds later in
// graceful-restart recovery (-R), with roost-agent running throughout.
// Both ToRs, FRR in its default graceful-restart helper mode, keep the
// node's PodCIDR as stale while BIRD is gone, and it never leaves their
// FIBs: each is watched through a netlink route subscription in the ToR's
// namespace, which sees every delete however short the gap. Then the
// agent configures the new BIRD, new sessions come up and the ToRs hold
// the route fresh again. Last, a control: a plain shutdown of one session
// (no graceful restart) does take the route out of that ToR's FIB, and
// its watcher counts it, so a count of 0 above means something.
func TestPrivilegedAgentGracefulRestart(t *testing.T) {
	// grDown is how long BIRD stays down: about as long as a container
	// swap, and long enough for a ToR that withdrew the route to have
	// taken it out of its FIB (zebra does so within milliseconds).
	const grDown = 3 * time.Second
	pod := netip.MustParsePrefix("10.244.1.0/24")
	f := newFabric(t)
	p := f.startAgentProc(f.agentYAML(pod.String()))
	f.waitAnnounced(pod.String())
	before := f.waitEstablished()
	p.waitStatus("ready", func(s agentapi.Status) bool { return s.Ready })

	// Without graceful restart on both sides the ToRs would withdraw at
	// once: the ToR must be a helper (FRR's default; frrBGPConfig sets
	// nothing) and BIRD's OPEN must have announced that it can restart.
	for i, tor := range f.tors {
		local, remote, err := tor.GRModes(f.uplinks[i])
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(local, "Helper") || remote != "Restart" {
			t.Fatalf("tor%d's graceful-restart modes for the node: local %q, remote %q; want Helper and Restart", i+1, local, remote)
		}
	}

	var watch [2]*fibWatch
	for i := range f.tors {
		watch[i] = watchFIB(t, f.torNS[i], pod)
	}

	// BIRD goes; each ToR sees its session end and keeps the path, marked
	// stale. Seeing the mark proves that BIRD really went, and went
	// gracefully: otherwise the FIB watch below would prove nothing.
	stopping := time.Now()
	f.bird.StopGraceful(10 * time.Second)
	stopped := time.Now()
	for i, tor := range f.tors {
		tor.WaitFor(t, waitLimit, fmt.Sprintf("tor%d's session down and %s kept as stale", i+1, pod), func() (bool, string) {
			n, paths, stale, err := f.grState(i, pod)
			if err != nil {
				return false, err.Error()
			}
			return n.State != "Established" && paths == 1 && stale == 1,
				fmt.Sprintf("session %s, %d paths, %d stale", n.State, paths, stale)
		})
	}
	// And they keep it as long as BIRD is away.
	for time.Since(stopped) < grDown {
		for i := range f.tors {
			n, paths, stale, err := f.grState(i, pod)
			if err != nil {
				t.Fatal(err)
			}
			if n.State == "Established" || paths != 1 || stale != 1 {
				t.Fatalf("tor%d %v after BIRD stopped: session %s, %d paths to %s, %d stale; want it down and 1 stale path",
					i+1, time.Since(stopped).Round(time.Millisecond), n.State, paths, pod, stale)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}

	restarted := time.Now()
	f.bird.Start("")
	// The agent sees BIRD back and configures it (with the config it
	// already runs: bird.conf on disk is the agent's).
	s := p.waitStatus("the agent configured the restarted BIRD", func(s agentapi.Status) bool {
		return s.Ready && s.LastApply.Result == agentapi.ResultOK && s.LastApply.Time.After(restarted)
	})
	applied := s.LastApply.Time.Sub(restarted)
	for i, tor := range f.tors {
		tor.WaitFor(t, waitLimit, fmt.Sprintf("tor%d's new session with the restarted BIRD", i+1), func() (bool, string) {
			n := f.sessions()[i]
			return n.State == "Established" && n.ConnectionsEstablished > before[i].ConnectionsEstablished, fmt.Sprintf("%+v", n)
		})
	}
	established := time.Since(restarted)
	// BIRD sends the route again, then End-of-RIB: the path is fresh.
	for i, tor := range f.tors {
		tor.WaitFor(t, waitLimit, fmt.Sprintf("tor%d holds %s fresh again", i+1, pod), func() (bool, string) {
			_, paths, stale, err := f.grState(i, pod)
			if err != nil {
				return false, err.Error()
			}
			return paths == 1 && stale == 0, fmt.Sprintf("%d paths, %d stale", paths, stale)
		})
	}
	fresh := time.Since(restarted)
	f.waitAnnounced(pod.String())
	t.Logf("birdc graceful restart to BIRD's exit %v; BIRD down %v; after its start: agent applied %v, sessions established %v, route fresh %v",
		stopped.Sub(stopping).Round(time.Millisecond), restarted.Sub(stopped).Round(time.Millisecond),
		applied.Round(time.Millisecond), established.Round(time.Millisecond), fresh.Round(time.Millisecond))
	for i, w := range watch {
		deletes, events, err := w.result()
		t.Logf("tor%d's FIB changes to %s: [%s]", i+1, pod, events)
		if err != nil {
			t.Fatalf("tor%d: %v: the FIB watch may have missed deletes", i+1, err)
		}
		if deletes > 0 {
			t.Errorf("tor%d took %s out of its FIB %d times during BIRD's graceful restart, want never", i+1, pod, deletes)
		}
	}

	// The control: BIRD shuts its session with tor1 down with a
	// NOTIFICATION (Cease), no graceful restart, and tor1's watcher must
	// see the route go; tor2's still sees nothing.
	testenv.Run(t, "birdc", "-s", f.bird.Socket, "disable", "bgp_tor1")
	f.tors[0].WaitFor(t, waitLimit, fmt.Sprintf("tor1's FIB watcher sees %s go after a plain shutdown", pod), func() (bool, string) {
		deletes, events, err := watch[0].result()
		if err != nil {
			t.Fatalf("tor1: %v", err)
		}
		return deletes > 0, fmt.Sprintf("%d deletes: [%s]", deletes, events)
	})
	_, events, _ := watch[0].result()
	t.Logf("tor1's FIB changes to %s, with the control: [%s]", pod, events)
	if deletes, events, err := watch[1].result(); err != nil || deletes > 0 {
		t.Errorf("tor2's FIB watcher: %d deletes [%s], %v; want none: its session was not touched", deletes, events, err)
	}
	testenv.Run(t, "birdc", "-s", f.bird.Socket, "enable", "bgp_tor1")
	f.waitAnnounced(pod.String())
}

// grState returns tor i's view of its session with the node and how many
// paths to prefix it holds, and how many of them are stale.
func (f *fabric) grState(i int, prefix netip.Prefix) (n testenv.FRRNeighbor, paths, stale int, err error) {
	ns, err := f.tors[i].Neighbors()
	if err != nil {
		return n, 0, 0, err
	}
	ps, err := f.tors[i].Paths(prefix)
	for _, p := range ps {
		if p.Stale {
			stale++
		}
	}
	return ns[f.uplinks[i]], len(ps), stale, err
}

// fibWatch counts how often one prefix leaves the main routing table of a
// namespace, from a netlink route subscription: it sees every delete the
// kernel reports, however short the gap, where a poll sees only gaps
// longer than its interval.
type fibWatch struct {
	ns     string
	prefix netip.Prefix

	mu      sync.Mutex
	deletes int
	events  []string // every change to prefix, for the test's log
	err     error    // the subscription failed: deletes may be missing
}

// watchFIB starts watching prefix in namespace ns until the test ends; it
// fails the test unless ns routes prefix once the watch is in place.
func watchFIB(t *testing.T, ns string, prefix netip.Prefix) *fibWatch {
	t.Helper()
	w := &fibWatch{ns: ns, prefix: prefix}
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatalf("watch %s in %s: %v", prefix, ns, err)
	}
	t.Cleanup(func() { h.Close() })
	updates, done := make(chan netlink.RouteUpdate), make(chan struct{})
	stopped := make(chan struct{}) // closed first: errors after it are the close's
	err = netlink.RouteSubscribeWithOptions(updates, done, netlink.RouteSubscribeOptions{
		Namespace: &h,
		// A full socket buffer (ENOBUFS) ends the subscription: then
		// the count can no longer be trusted.
		ErrorCallback: func(err error) {
			select {
			case <-stopped:
			default:
				w.fail(err)
			}
		},
		ReceiveBufferSize: 1 << 20,
	})
	if err != nil {
		t.Fatalf("watch %s in %s: subscribe: %v", prefix, ns, err)
	}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for u := range updates {
			w.update(u)
		}
	}()
	t.Cleanup(func() {
		close(stopped)
		close(done)
		<-ended
	})
	// Subscribed first, then checked: a delete after this check is seen.
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatalf("watch %s in %s: %v", prefix, ns, err)
	}
	defer nh.Close()
	rs, err := nh.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Dst: prefixNet(prefix), Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil || len(rs) == 0 {
		t.Fatalf("watch %s in %s: not in the FIB when the watch starts: %v %v", prefix, ns, rs, err)
	}
	return w
}

// fail records the first error of the subscription.
func (w *fibWatch) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = fmt.Errorf("route subscription in %s: %w", w.ns, err)
	}
}

// update records one change to the routing tables if it is to prefix in
// the main table.
func (w *fibWatch) update(u netlink.RouteUpdate) {
	if u.Dst == nil || u.Table != unix.RT_TABLE_MAIN {
		return
	}
	ip, ok := netip.AddrFromSlice(u.Dst.IP)
	ones, _ := u.Dst.Mask.Size()
	if !ok || netip.PrefixFrom(ip.Unmap(), ones) != w.prefix {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	kind := "new"
	if u.Type == unix.RTM_DELROUTE {
		kind = "delete"
		w.deletes++
	}
	w.events = append(w.events, fmt.Sprintf("%s %s via %v", time.Now().Format("15:04:05.000"), kind, u.Gw))
}

// result returns how many times prefix left the FIB so far, the changes
// seen, and why the count cannot be trusted, if it cannot.
func (w *fibWatch) result() (deletes int, events string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.deletes, strings.Join(w.events, "; "), w.err
}
