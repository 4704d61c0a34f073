package maglev

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzBuild builds tables from arbitrary backends: keys are the lines of
// keys, weights its bytes (255 standing for the largest weight), and size
// picks a table size, valid or not. Build must not panic; an accepted set
// gives a table whose every entry names a backend, which does not depend on
// the order of the backends, which balances as the package doc says and
// which the test's reference implementation agrees with; a refused one
// gives one of the documented errors.
func FuzzBuild(f *testing.F) {
	f.Add("10.244.1.10:6379\n10.244.2.11:6379\n[fd00::1]:80", []byte{}, uint8(0))
	f.Add("a\nb\nc\nd", []byte{1, 2, 3, 255}, uint8(1))
	f.Add("a\nb\na", []byte{}, uint8(0))
	f.Add("a\n\nb", []byte{}, uint8(2))
	f.Add("x", []byte{0}, uint8(4))
	sizes := []uint64{251, 257, 1021, 4093, 0, 252, 131101}
	f.Fuzz(func(t *testing.T, keys string, weights []byte, size uint8) {
		m := sizes[int(size)%len(sizes)]
		var bs []Backend
		if keys != "" {
			for i, k := range strings.Split(keys, "\n") {
				b := Backend{Key: k}
				if i < len(weights) {
					b.Weight = uint32(weights[i])
					if weights[i] == 255 {
						b.Weight = 1<<32 - 1
					}
				}
				bs = append(bs, b)
			}
		}
		tab, err := Build(bs, m)
		if err != nil {
			if !tab.Empty() {
				t.Fatalf("Build returned a table with its error %v", err)
			}
			msg := err.Error()
			switch {
			case errors.Is(err, ErrBadSize):
				if CheckSize(m) == nil {
					t.Fatalf("Build refused size %d, which CheckSize accepts: %v", m, err)
				}
			case msg == "a backend has an empty key":
				if !slices.ContainsFunc(bs, func(b Backend) bool { return b.Key == "" }) {
					t.Fatalf("%v, but no key is empty", err)
				}
			case strings.HasSuffix(msg, " is listed twice"):
				n := 0
				for _, b := range bs {
					if msg == "backend "+strconv.Quote(b.Key)+" is listed twice" {
						n++
					}
				}
				if n < 2 {
					t.Fatalf("%v, but that key is not listed twice", err)
				}
			case strings.Contains(msg, "do not fit"):
				if uint64(len(bs)) <= m {
					t.Fatalf("%v, with %d backends", err, len(bs))
				}
			default:
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		if len(bs) == 0 {
			if !tab.Empty() || tab.Size != 0 || tab.Lookup(7) != -1 {
				t.Fatalf("no backends but table %+v", tab)
			}
			return
		}
		if tab.Size != m || uint64(len(tab.Entries)) != m || len(tab.Keys) != len(bs) {
			t.Fatalf("Size %d, %d entries, %d keys; want %d, %d, %d", tab.Size, len(tab.Entries), len(tab.Keys), m, m, len(bs))
		}
		if !slices.IsSorted(tab.Keys) {
			t.Fatalf("Keys not sorted: %q", tab.Keys)
		}
		for i, e := range tab.Entries {
			if int(e) >= len(tab.Keys) {
				t.Fatalf("entry %d is %d, but there are %d backends", i, e, len(tab.Keys))
			}
		}
		reversed := slices.Clone(bs)
		slices.Reverse(reversed)
		again, err := Build(reversed, m)
		if err != nil || !slices.Equal(again.Entries, tab.Entries) {
			t.Fatalf("the table depends on the order of the backends (%v)", err)
		}
		if m <= 1021 && len(bs) <= 64 {
			if want := reference(bs, m); !slices.Equal(keysOf(tab), want) {
				t.Fatalf("the table differs from the reference implementation's")
			}
		}
		var sum float64
		for _, b := range bs {
			sum += float64(max(b.Weight, 1))
		}
		c := counts(tab)
		for _, b := range bs {
			j, _ := slices.BinarySearch(tab.Keys, b.Key)
			share := float64(max(b.Weight, 1)) / sum
			d := float64(c[j]) - float64(m)*share
			if d > 1+float64(len(bs))*share || -d > 1+float64(len(bs))*share {
				t.Fatalf("backend %q of weight %d has %d entries of %d, want %.1f ± %.2f", b.Key, b.Weight, c[j], m, float64(m)*share, 1+float64(len(bs))*share)
			}
		}
	})
}
