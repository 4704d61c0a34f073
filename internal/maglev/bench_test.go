package maglev

import (
	"fmt"
	"testing"
)

func BenchmarkBuild(b *testing.B) {
	for _, m := range []uint64{16381, DefaultSize, MaxSize} {
		for _, n := range []int{10, 100, 1000} {
			if uint64(n)*100 > m*10 {
				continue
			}
			b.Run(fmt.Sprintf("M=%d/N=%d", m, n), func(b *testing.B) {
				bs := backends("ipv4", n)
				for b.Loop() {
					if _, err := Build(bs, m); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkBuildWeighted has one backend of weight 1 000 000 among
// backends of weight 1: most turns give nothing to most backends.
func BenchmarkBuildWeighted(b *testing.B) {
	for _, m := range []uint64{16381, DefaultSize} {
		b.Run(fmt.Sprintf("M=%d/N=100", m), func(b *testing.B) {
			bs := backends("ipv4", 100)
			bs[0].Weight = 1_000_000
			for b.Loop() {
				if _, err := Build(bs, m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
