package main

import (
	"fmt"
	"net/netip"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"

	"github.com/roost-net/roost/internal/loader"
	"github.com/roost-net/roost/internal/loaderconfig"
	"github.com/roost-net/roost/internal/xdplb"
)

// openUplink opens the uplink load balancer pinned under dir and attaches
// it to the configured interfaces. The outer source addresses default to
// the first global address of each family on the first interface.
func openUplink(c loaderconfig.XDPLB, dir string) (*xdplb.LB, error) {
	src4, src6 := c.SourceIPv4, c.SourceIPv6
	if !src4.IsValid() || !src6.IsValid() {
		l, err := netlink.LinkByName(c.Interfaces[0])
		if err != nil {
			return nil, fmt.Errorf("uplink %s: %w", c.Interfaces[0], err)
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("uplink %s: addresses: %w", c.Interfaces[0], err)
		}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok || !ip.Unmap().IsGlobalUnicast() {
				continue
			}
			ip = ip.Unmap()
			if ip.Is4() && !src4.IsValid() {
				src4 = ip
			}
			if ip.Is6() && !src6.IsValid() {
				src6 = ip
			}
		}
	}
	lb, err := xdplb.Open(dir, xdplb.Config{MaglevSize: c.MaglevSize, Source4: src4, Source6: src6})
	if err != nil {
		return nil, err
	}
	mode := xdplb.Mode(c.Mode)
	if mode == "" {
		mode = xdplb.ModeAuto
	}
	if err := lb.Attach(c.Interfaces, mode); err != nil {
		lb.Close()
		return nil, err
	}
	return lb, nil
}

// nodePortAddrs are the node's addresses where node ports are served: its
// own, but link-local ones (169.254.1.1 on every pod's veth).
func nodePortAddrs(l *loader.Loader, log logrus.FieldLogger) []netip.Addr {
	addrs, err := l.HostAddresses()
	if err != nil {
		log.WithError(err).Warn("node ports: the node's addresses are unknown")
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if !a.IsLinkLocalUnicast() {
			out = append(out, a)
		}
	}
	return out
}
