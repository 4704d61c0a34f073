// Package lbkey holds what roost's two Service load balancers (socklb at
// the socket, xdplb at the uplink) share in how they name a frontend and
// write it into BPF maps: the frontend itself, the byte orders of the
// programs' keys, and deleting a key that may be gone already.
package lbkey

import (
	"errors"
	"net/netip"

	"github.com/cilium/ebpf"
)

// Protocols a frontend can have.
const (
	TCP uint8 = 6
	UDP uint8 = 17
)

// Frontend is where clients connect: an address, a port and a protocol
// (TCP or UDP).
type Frontend struct {
	Addr  netip.Addr
	Port  uint16
	Proto uint8
}

// String returns "tcp/10.96.0.10:6379" or "udp/[fd00::10]:53".
func (f Frontend) String() string {
	p := "tcp"
	if f.Proto == UDP {
		p = "udp"
	}
	return p + "/" + netip.AddrPortFrom(f.Addr, f.Port).String()
}

// Mapped returns a's 16 bytes as the programs key addresses: IPv6, or
// IPv4-mapped (::ffff:a.b.c.d).
func Mapped(a netip.Addr) [16]uint8 { return a.Unmap().As16() }

// BE16 is port in network byte order, as the programs compare it (a
// little-endian load of the big-endian bytes); it is its own inverse.
func BE16(port uint16) uint16 { return port>>8 | port<<8 }

// DeleteIfPresent deletes key from m; a key that is not there is no error.
func DeleteIfPresent(m *ebpf.Map, key any) error {
	if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}
