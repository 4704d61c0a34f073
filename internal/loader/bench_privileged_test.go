package loader

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/policy"
)

// BenchmarkPrivilegedChangeToEnforce measures, with n endpoints known (the
// lab's three local pods and n-3 remote ones), the time from a changed input
// — one remote endpoint's labels flip between app=guest and app=employee,
// which changes whether db admits it — to the datapath enforcing it: compile
// (policy.Compile with the previous identities) plus Apply (map writes). It
// reports both parts; file reading is not included (see roost-loader).
func BenchmarkPrivilegedChangeToEnforce(b *testing.B) {
	pols, err := policy.Parse(strings.NewReader(seedPolicy), "seed.yaml")
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			l := newLab(b)
			ld, err := Open(Options{BPFFS: l.bpffs, NetNS: "/var/run/netns/" + l.node})
			if err != nil {
				b.Fatal(err)
			}
			defer ld.Close()
			var remote []policy.Endpoint
			for i := range n - len(labPods) {
				remote = append(remote, policy.Endpoint{
					Name:   fmt.Sprintf("remote-%d", i),
					IPs:    []netip.Addr{netip.AddrFrom4([4]byte{10, 245, byte(i >> 8), byte(i)})},
					Labels: podLabels("app", "guest", "team", fmt.Sprint(i%50)),
				})
			}
			eps := l.endpoints(remote...)
			res, err := policy.Compile(pols, eps)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := ld.Apply(res); err != nil {
				b.Fatal(err)
			}
			var compile, apply time.Duration
			flip := len(eps) - 1
			for i := 0; b.Loop(); i++ {
				app := "employee"
				if i%2 == 1 {
					app = "guest"
				}
				eps[flip].Labels = map[string]string{"app": app, "team": "x"}
				t0 := time.Now()
				next, err := policy.Compile(pols, eps, policy.WithPrevious(res))
				if err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if _, err := ld.Apply(next); err != nil {
					b.Fatal(err)
				}
				compile += t1.Sub(t0)
				apply += time.Since(t1)
				res = next
			}
			b.ReportMetric(float64(compile.Microseconds())/float64(b.N)/1000, "compile-ms")
			b.ReportMetric(float64(apply.Microseconds())/float64(b.N)/1000, "apply-ms")
		})
	}
}
