package socklb

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/roost-net/roost/bpf"
	"github.com/roost-net/roost/internal/lbkey"
)

func TestEntryCheck(t *testing.T) {
	f4 := Frontend{Addr: netip.MustParseAddr("10.96.0.10"), Port: 80, Proto: TCP}
	be4 := netip.MustParseAddrPort("10.244.1.10:8080")
	for _, tc := range []struct {
		name string
		e    Entry
		want string // "" = valid
	}{
		{"valid", Entry{Frontend: f4, Backends: []netip.AddrPort{be4}}, ""},
		{"no backends is valid (refused)", Entry{Frontend: f4}, ""},
		{"v4-mapped backend of a v4 frontend", Entry{Frontend: f4, Backends: []netip.AddrPort{netip.MustParseAddrPort("[::ffff:10.244.1.10]:8080")}}, ""},
		{"no address", Entry{Frontend: Frontend{Port: 80, Proto: TCP}}, "no address"},
		{"unspecified address", Entry{Frontend: Frontend{Addr: netip.IPv4Unspecified(), Port: 80, Proto: TCP}}, "no address"},
		{"SCTP", Entry{Frontend: Frontend{Addr: f4.Addr, Port: 80, Proto: 132}}, "protocol 132 is neither TCP nor UDP"},
		{"port 0", Entry{Frontend: Frontend{Addr: f4.Addr, Port: 0, Proto: UDP}}, "port 0"},
		{"other family", Entry{Frontend: f4, Backends: []netip.AddrPort{netip.MustParseAddrPort("[fd00::1]:80")}}, "of the other address family"},
		{"backend twice", Entry{Frontend: f4, Backends: []netip.AddrPort{be4, be4}}, "twice"},
		{"backend port 0", Entry{Frontend: f4, Backends: []netip.AddrPort{netip.MustParseAddrPort("10.244.1.10:0")}}, "not an address and port"},
		{"affinity too long", Entry{Frontend: f4, Affinity: MaxAffinity + time.Second}, "affinity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.e.check()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("check: %v, want valid", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("check: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// The programs compare ports as the kernel keeps them: network byte order
// read little-endian.
func TestBe16(t *testing.T) {
	if got := lbkey.BE16(0x1f90); got != 0x901f {
		t.Errorf("lbkey.BE16(8080) = %#x, want 0x901f", got)
	}
}

// Every counter of the programs has a name of its own.
func TestReasonNames(t *testing.T) {
	seen := map[string]bool{}
	for r := bpf.SockReason(0); r < bpf.SockReasonSOCK_REASON_MAX; r++ {
		n, ok := reasonNames[r]
		if !ok || seen[n] {
			t.Errorf("reason %d: name %q missing or twice", r, n)
		}
		seen[n] = true
	}
}
