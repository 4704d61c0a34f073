package loader

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
)

// HostAddresses returns the addresses of the node's own interfaces in the
// loader's network namespace, sorted, each once and without a zone: the
// addresses traffic from the node itself comes from, which policy sees as
// the host. Loopback addresses (127.0.0.0/8, ::1) are left out: nothing
// sent from them reaches an endpoint.
func (l *Loader) HostAddresses() ([]netip.Addr, error) {
	l.mu.Lock() // the netlink handle serves one request at a time
	defer l.mu.Unlock()
	addrs, err := l.nl.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list the node's addresses: %w", err)
	}
	return hostAddrs(addrs), nil
}

// hostAddrs keeps the addresses HostAddresses reports.
func hostAddrs(addrs []netlink.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		if a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap().WithZone("")
		if ip.IsLoopback() || ip.IsUnspecified() {
			continue
		}
		out = append(out, ip)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// WatchAddresses calls changed whenever an address is added to or removed
// from an interface in the loader's network namespace, until ctx ends, and
// then returns nil. Should the kernel's notifications break off (the
// socket overflowed, say), it calls changed, since a change may have been
// missed, and subscribes again a second later; it returns an error only if
// it cannot subscribe at all.
func (l *Loader) WatchAddresses(ctx context.Context, changed func()) error {
	for first := true; ; first = false {
		err := l.watchAddresses(ctx, changed)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && first:
			return err
		}
		l.log.WithError(err).Warn("address notifications broke off; subscribing again")
		changed()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// watchAddresses is one subscription of WatchAddresses; it returns when ctx
// ends or the subscription does.
func (l *Loader) watchAddresses(ctx context.Context, changed func()) error {
	updates := make(chan netlink.AddrUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	opts := netlink.AddrSubscribeOptions{}
	if l.ns.IsOpen() {
		opts.Namespace = &l.ns
	}
	errc := make(chan error, 1)
	opts.ErrorCallback = func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	if err := netlink.AddrSubscribeWithOptions(updates, done, opts); err != nil {
		return fmt.Errorf("watch the node's addresses: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return fmt.Errorf("watch the node's addresses: %w", err)
		case _, ok := <-updates:
			if !ok {
				return fmt.Errorf("watch the node's addresses: the subscription ended")
			}
			changed()
		}
	}
}
