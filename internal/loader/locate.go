package loader

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/roost-net/roost/internal/policy"
)

// inNetNS runs f on an OS thread inside the loader's network namespace,
// for the calls that act in the calling thread's namespace (TCX attach
// resolves the ifindex there), and moves the thread back after. Should
// that fail, the thread stays locked, and the runtime discards it with the
// goroutine rather than let it serve others in the wrong namespace.
func (l *Loader) inNetNS(f func() error) error {
	if !l.ns.IsOpen() {
		return f()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(l.ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", l.opts.NetNS, err)
			return
		}
		err = f()
		if backErr := netns.Set(orig); backErr != nil {
			errc <- errors.Join(err, fmt.Errorf("leave network namespace %s: %w", l.opts.NetNS, backErr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// errNotLocal marks an endpoint that does not run behind an interface of
// this node.
var errNotLocal = errors.New("not a local endpoint")

// hostInterface returns the interface the kernel routes ip to when that
// route is a host route (/32 or /128) without gateway to an interface that
// is not the loopback: the host side of a local endpoint's veth. Otherwise
// it returns an error wrapping errNotLocal that says where ip goes. The
// netlink handle works in the loader's namespace.
func (l *Loader) hostInterface(ip netip.Addr) (int, string, error) {
	routes, err := l.nl.RouteGetWithOptions(ip.AsSlice(), &netlink.RouteGetOptions{FIBMatch: true})
	switch {
	case errors.Is(err, unix.ENETUNREACH), errors.Is(err, unix.EHOSTUNREACH), errors.Is(err, unix.ESRCH):
		return 0, "", fmt.Errorf("%w: no route to %s", errNotLocal, ip)
	case err != nil:
		return 0, "", fmt.Errorf("route to %s: %w", ip, err)
	case len(routes) != 1:
		return 0, "", fmt.Errorf("%w: %d routes match %s", errNotLocal, len(routes), ip)
	}
	r := routes[0]
	switch {
	case r.Type != unix.RTN_UNICAST:
		return 0, "", fmt.Errorf("%w: %s is routed as %s, not to an interface", errNotLocal, ip, routeType(r.Type))
	case r.Gw != nil || r.Via != nil || len(r.MultiPath) > 0:
		return 0, "", fmt.Errorf("%w: %s is routed via a gateway", errNotLocal, ip)
	case r.Dst == nil:
		return 0, "", fmt.Errorf("%w: %s is routed by the default route", errNotLocal, ip)
	}
	if ones, bits := r.Dst.Mask.Size(); ones != bits {
		return 0, "", fmt.Errorf("%w: %s is routed by %s, not by a host route", errNotLocal, ip, r.Dst)
	}
	lk, err := l.nl.LinkByIndex(r.LinkIndex)
	if err != nil {
		return 0, "", fmt.Errorf("route to %s: interface %d: %w", ip, r.LinkIndex, err)
	}
	if lk.Attrs().Flags&net.FlagLoopback != 0 {
		return 0, "", fmt.Errorf("%w: %s is routed to the loopback %s", errNotLocal, ip, lk.Attrs().Name)
	}
	return r.LinkIndex, lk.Attrs().Name, nil
}

func routeType(t int) string {
	switch t {
	case unix.RTN_LOCAL:
		return "local (an address of this node)"
	case unix.RTN_BLACKHOLE:
		return "blackhole"
	case unix.RTN_UNREACHABLE:
		return "unreachable"
	case unix.RTN_PROHIBIT:
		return "prohibit"
	}
	return fmt.Sprintf("route type %d", t)
}

// Locate returns a copy of eps in which Local says whether the kernel
// routes the endpoint's first address to a host-side interface of this
// node (see the package doc). Endpoints without addresses are not local.
// Only netlink failures are errors.
func (l *Loader) Locate(eps []policy.Endpoint) ([]policy.Endpoint, error) {
	l.mu.Lock() // the netlink handle serves one request at a time
	defer l.mu.Unlock()
	out := make([]policy.Endpoint, len(eps))
	for i, ep := range eps {
		out[i] = ep
		out[i].Local = false
		if len(ep.IPs) == 0 {
			continue
		}
		_, _, err := l.hostInterface(firstIP(ep.IPs))
		if err != nil && !errors.Is(err, errNotLocal) {
			return nil, fmt.Errorf("locate endpoint %q: %w", ep.Name, err)
		}
		out[i].Local = err == nil
	}
	return out, nil
}
