package maglev

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// keyFamilies make backend keys the way callers will: pod addresses with a
// port, IPv6 ones, and one address with many ports (keys that differ only
// in their last bytes, the weakest case for FNV-1a).
var keyFamilies = map[string]func(i int) string{
	"ipv4": func(i int) string { return fmt.Sprintf("10.244.%d.%d:6379", i/200, 10+i%200) },
	"ipv6": func(i int) string { return fmt.Sprintf("[fd00:10:244::%x]:80", i+1) },
	"port": func(i int) string { return fmt.Sprintf("192.0.2.1:%d", 30000+i) },
}

// familyNames are the keys of keyFamilies, sorted, for a stable test order.
var familyNames = []string{"ipv4", "ipv6", "port"}

func backends(family string, n int) []Backend {
	bs := make([]Backend, n)
	for i := range bs {
		bs[i] = Backend{Key: keyFamilies[family](i)}
	}
	return bs
}

func mustBuild(t testing.TB, bs []Backend, m uint64) Table {
	t.Helper()
	tab, err := Build(bs, m)
	if err != nil {
		t.Fatalf("Build(%d backends, %d): %v", len(bs), m, err)
	}
	return tab
}

// reference builds a table as the package doc describes it, as literally
// as possible: its own FNV-1a from the published constants, full
// permutation lists, and Katran's credit loop (which, with equal weights,
// is the paper's loop). It is slow and only for comparison.
func reference(bs []Backend, m uint64) []string {
	bs = slices.Clone(bs)
	slices.SortFunc(bs, func(a, b Backend) int { return strings.Compare(a.Key, b.Key) })
	fnv := func(b []byte) uint64 {
		h := uint64(14695981039346656037)
		for _, c := range b {
			h ^= uint64(c)
			h *= 1099511628211
		}
		return h
	}
	n := len(bs)
	perm := make([][]uint64, n)
	var maxW uint64
	for i, b := range bs {
		offset := fnv(append([]byte{0}, b.Key...)) % m
		skip := fnv(append([]byte{1}, b.Key...))%(m-1) + 1
		perm[i] = make([]uint64, m)
		for j := range m {
			perm[i][j] = (offset + j*skip) % m
		}
		maxW = max(maxW, uint64(max(b.Weight, 1)))
	}
	entry := make([]int, m)
	for i := range entry {
		entry[i] = -1
	}
	next := make([]uint64, n)
	credit := make([]uint64, n)
	filled := uint64(0)
	for {
		for i := range n {
			credit[i] += uint64(max(bs[i].Weight, 1))
			if credit[i] < maxW {
				continue
			}
			credit[i] -= maxW
			c := perm[i][next[i]]
			for entry[c] >= 0 {
				next[i]++
				c = perm[i][next[i]]
			}
			entry[c] = i
			next[i]++
			filled++
			if filled == m {
				out := make([]string, m)
				for j, e := range entry {
					out[j] = bs[e].Key
				}
				return out
			}
		}
	}
}

// keysOf returns the key of every entry of t.
func keysOf(t Table) []string {
	out := make([]string, len(t.Entries))
	for i, e := range t.Entries {
		out[i] = t.Keys[e]
	}
	return out
}

func TestBuildMatchesReference(t *testing.T) {
	weighted := func(ws ...uint32) []Backend {
		bs := backends("ipv4", len(ws))
		for i, w := range ws {
			bs[i].Weight = w
		}
		return bs
	}
	tests := []struct {
		name     string
		backends []Backend
		m        uint64
	}{
		{"one", backends("ipv4", 1), 251},
		{"two", backends("ipv4", 2), 251},
		{"ten ipv6", backends("ipv6", 10), 1021},
		{"ports", backends("port", 37), 4093},
		{"as many as entries", backends("ipv4", 251), 251},
		{"default size", backends("ipv4", 100), DefaultSize},
		{"weighted", weighted(1, 2, 3, 0, 5), 1021},
		{"one heavy", weighted(1, 1, 1, 1000, 1, 1), 509},
		{"extreme weights", weighted(1, 1<<32-1, 7, 1<<31), 251},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := keysOf(mustBuild(t, tt.backends, tt.m))
			want := reference(tt.backends, tt.m)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("entry %d is %s, the reference says %s", i, got[i], want[i])
				}
			}
		})
	}
}

func TestOrderIndependent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, name := range familyNames {
		t.Run(name, func(t *testing.T) {
			bs := backends(name, 60)
			for i := range bs {
				bs[i].Weight = uint32(1 + i%4)
			}
			want := mustBuild(t, bs, DefaultSize)
			for range 50 {
				shuffled := slices.Clone(bs)
				rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				got := mustBuild(t, shuffled, DefaultSize)
				if !slices.Equal(got.Keys, want.Keys) || !slices.Equal(got.Entries, want.Entries) {
					t.Fatalf("the table depends on the order of the backends: %v", shuffled)
				}
			}
		})
	}
}

func TestKeysSorted(t *testing.T) {
	tab := mustBuild(t, []Backend{{Key: "b"}, {Key: "c"}, {Key: "a"}, {Key: "B"}}, 251)
	if want := []string{"B", "a", "b", "c"}; !slices.Equal(tab.Keys, want) {
		t.Errorf("Keys = %q, want %q", tab.Keys, want)
	}
}

// TestWeights checks that 0 means 1 and that only the ratios of the
// weights matter.
func TestWeights(t *testing.T) {
	bs := backends("ipv4", 20)
	want := mustBuild(t, bs, 4093)
	for _, scale := range []uint32{1, 3, 1000, 1<<32 - 1} {
		scaled := slices.Clone(bs)
		for i := range scaled {
			scaled[i].Weight = scale
		}
		if got := mustBuild(t, scaled, 4093); !slices.Equal(got.Entries, want.Entries) {
			t.Errorf("all weights %d give another table than all weights 0", scale)
		}
	}
	ratio := func(scale uint32) Table {
		s := slices.Clone(bs)
		for i := range s {
			s[i].Weight = scale * uint32(1+i%3)
		}
		return mustBuild(t, s, 4093)
	}
	if !slices.Equal(ratio(1).Entries, ratio(17).Entries) {
		t.Errorf("weights 1, 2, 3 give another table than weights 17, 34, 51")
	}
	if slices.Equal(ratio(1).Entries, want.Entries) {
		t.Errorf("weights 1, 2, 3 give the same table as equal weights")
	}
}

// counts returns how many entries of t each backend has.
func counts(t Table) []int {
	c := make([]int, len(t.Keys))
	for _, e := range t.Entries {
		c[e]++
	}
	return c
}

// TestBalance checks that with equal weights every backend gets ⌊M/N⌋ or
// ⌈M/N⌉ entries (the first M mod N rounds of turns give one more).
func TestBalance(t *testing.T) {
	for _, m := range []uint64{251, 4093, DefaultSize, 65537} {
		for _, n := range []int{1, 2, 3, 7, 50, 99, 100, 101, 160, 251} {
			if uint64(n) > m {
				continue
			}
			tab := mustBuild(t, backends("ipv4", n), m)
			lo, hi := int(m)/n, (int(m)+n-1)/n
			for i, c := range counts(tab) {
				if c < lo || c > hi {
					t.Errorf("M=%d N=%d: backend %s has %d entries, want %d or %d", m, n, tab.Keys[i], c, lo, hi)
				}
			}
		}
	}
}

// TestBalanceWeighted checks the bound of the package doc: backend i gets
// M·wᵢ/S entries to within 1 + N·wᵢ/S.
func TestBalanceWeighted(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, m := range []uint64{251, DefaultSize} {
		for range 30 {
			n := 1 + rng.IntN(40)
			bs := backends("ipv6", n)
			var sum float64
			for i := range bs {
				bs[i].Weight = 1 + rng.Uint32N(100)
				sum += float64(bs[i].Weight)
			}
			tab := mustBuild(t, bs, m)
			c := counts(tab)
			for _, b := range bs {
				// bs is not in key order: look the key up.
				j, _ := slices.BinarySearch(tab.Keys, b.Key)
				share := float64(b.Weight) / sum
				ideal := float64(m) * share
				if d := float64(c[j]) - ideal; d > 1+float64(n)*share || -d > 1+float64(n)*share {
					t.Errorf("M=%d N=%d: backend %s of weight %d has %d entries, want %.1f ± %.2f", m, n, b.Key, b.Weight, c[j], ideal, 1+float64(n)*share)
				}
			}
		}
	}
}

// moved returns the fraction of the entries of a and b (tables of the same
// size) whose backend differs, and the fraction that differ although their
// backend in a is not gone.
func moved(a, b Table, gone string) (all, others float64) {
	var changed, changedOthers int
	for i := range a.Entries {
		if ka := a.Keys[a.Entries[i]]; ka != b.Keys[b.Entries[i]] {
			changed++
			if ka != gone {
				changedOthers++
			}
		}
	}
	return float64(changed) / float64(len(a.Entries)), float64(changedOthers) / float64(len(a.Entries))
}

// TestDisruption checks how many flows move when one of N backends leaves
// (for N from 2 to 100, 128 and 163, the last being M/100 for the default
// size, the paper's advice): at most 1/N + excess, where 1/N are the
// flows of the backend that left. Issue 10 asks for an excess of 1 %. Pure
// Maglev does not meet that with the default size: from N = 6 on, some
// removals move more (the excess grows with N/M; with the key families
// below and every removal, the worst measured is 1.94 % at N = 163, 1.61 %
// at N = 100). It does meet it with M = 65537 (worst measured excess
// 0.78 %, at N = 163). So the bound is checked with 65537, and the
// default size is held to the 2 % it achieves. Removals are sampled: up to
// four backends per N. Adding a backend to N is removing one from N+1 seen
// the other way round; it is checked all the same.
func TestDisruption(t *testing.T) {
	ns := []int{}
	for n := 2; n <= 100; n++ {
		ns = append(ns, n)
	}
	ns = append(ns, 128, 163)
	if testing.Short() {
		ns = []int{2, 3, 6, 12, 50, 100, 163}
	}
	sizes := []struct {
		m      uint64
		excess float64
	}{
		{16381, 0.02},       // Cilium's default: not issue 10's bound (see above)
		{DefaultSize, 0.01}, // issue 10's bound
	}
	for _, size := range sizes {
		for _, name := range familyNames {
			t.Run(fmt.Sprintf("M=%d/%s", size.m, name), func(t *testing.T) {
				t.Parallel()
				worst, worstN := 0.0, 0
				for _, n := range ns {
					bs := backends(name, n)
					full := mustBuild(t, bs, size.m)
					bound := 1/float64(n) + size.excess
					for j := range min(n, 4) {
						gone := j * n / min(n, 4)
						less := mustBuild(t, slices.Delete(slices.Clone(bs), gone, gone+1), size.m)
						f, others := moved(full, less, bs[gone].Key)
						if f > bound {
							t.Errorf("N=%d: %s leaves and %.4f of the flows move, more than 1/N + %.2f = %.4f", n, bs[gone].Key, f, size.excess, bound)
						}
						if others > worst {
							worst, worstN = others, n
						}
					}
					joins := keyFamilies[name](n)
					more := mustBuild(t, append(slices.Clone(bs), Backend{Key: joins}), size.m)
					if f, _ := moved(full, more, ""); f > 1/float64(n+1)+size.excess {
						t.Errorf("N=%d: %s joins and %.4f of the flows move, more than 1/(N+1) + %.2f = %.4f", n, joins, f, size.excess, 1/float64(n+1)+size.excess)
					}
				}
				t.Logf("worst removal: N=%d, %.4f of the flows move from backends that stay", worstN, worst)
			})
		}
	}
}

// TestGolden pins the construction of the package doc: if it fails, nodes
// running the old and the new code disagree on where flows go. Change the
// values only with a plan for running both at once. The keys sort as
// written, so entry i is the i-th key. An implementation in Python written
// from the package doc alone gave the same values.
func TestGolden(t *testing.T) {
	if o, s := permutation("10.244.1.10:6379", 16381); o != 8330 || s != 13761 {
		t.Errorf("offset, skip of 10.244.1.10:6379 = %d, %d; want 8330, 13761 (see the package doc)", o, s)
	}
	keys := []string{"10.244.1.10:6379", "10.244.2.11:6379", "10.244.3.12:6379", "[fd00::1]:80"}
	tests := []struct {
		name    string
		weights []uint32
		first   string // the first 32 entries
		sha256  string // of all entries, as uint32 little-endian
	}{
		{"equal weights", []uint32{0, 0, 0, 0},
			"3 0 1 3 1 2 2 1 0 1 0 2 0 2 3 1 1 3 2 2 2 0 0 0 1 0 2 1 0 1 1 3",
			"033d61a54f2014a73bda18fbe9a41cc45f8c05a53225138eda4c6bafea7be4d0"},
		{"weighted", []uint32{1, 2, 1, 3},
			"3 0 1 3 1 2 3 1 0 1 3 3 0 2 3 1 1 3 1 2 2 1 3 0 1 0 2 1 3 1 3 3",
			"02f82626c16174e4bbcab0805c174df04e8514b6ee9dd2c703a1cfab3ac925b3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := make([]Backend, len(keys))
			for i, k := range keys {
				bs[len(keys)-1-i] = Backend{Key: k, Weight: tt.weights[i]}
			}
			tab := mustBuild(t, bs, 16381) // the values were checked at this size
			if !slices.Equal(tab.Keys, keys) {
				t.Fatalf("Keys = %q, want %q", tab.Keys, keys)
			}
			var first []string
			for _, e := range tab.Entries[:32] {
				first = append(first, fmt.Sprint(e))
			}
			if got := strings.Join(first, " "); got != tt.first {
				t.Errorf("first entries:\n got %s\nwant %s", got, tt.first)
			}
			var b []byte
			for _, e := range tab.Entries {
				b = binary.LittleEndian.AppendUint32(b, e)
			}
			sum := sha256.Sum256(b)
			if got := hex.EncodeToString(sum[:]); got != tt.sha256 {
				t.Errorf("SHA-256 of the entries = %s, want %s", got, tt.sha256)
			}
		})
	}
}

func TestCheckSize(t *testing.T) {
	tests := []struct {
		m    uint64
		want string // in the error; "" for none
	}{
		{251, ""},
		{DefaultSize, ""},
		{65537, ""},
		{131071, ""},
		{0, "bad maglev table size 0: must be a prime from 251 to 131071"},
		{2, "size 2: must be a prime from 251"},
		{241, "size 241: must be a prime from 251"},
		{131101, "size 131101: must be a prime from 251"},
		{1 << 63, "must be a prime"},
		{16384, "size 16384: not a prime; primes near it include 16381 and 16411"},
		{252, "size 252: not a prime; primes near it include 251 and 257"},
		{65535, "size 65535: not a prime"},
		{257 * 263, "size 67591: not a prime"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.m), func(t *testing.T) {
			err := CheckSize(tt.m)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("CheckSize(%d) = %v, want nil", tt.m, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrBadSize) {
				t.Fatalf("CheckSize(%d) = %v, want an ErrBadSize containing %q", tt.m, err, tt.want)
			}
			if _, err := Build(backends("ipv4", 2), tt.m); !errors.Is(err, ErrBadSize) {
				t.Fatalf("Build with size %d = %v, want ErrBadSize", tt.m, err)
			}
		})
	}
}

// TestCheckSizePrimes compares CheckSize with a sieve over the whole range.
func TestCheckSizePrimes(t *testing.T) {
	composite := make([]bool, MaxSize+2)
	for p := 2; p*p <= MaxSize+1; p++ {
		if !composite[p] {
			for q := p * p; q <= MaxSize+1; q += p {
				composite[q] = true
			}
		}
	}
	for m := MinSize - 1; m <= MaxSize+1; m++ {
		want := m >= MinSize && m <= MaxSize && !composite[m]
		if got := CheckSize(uint64(m)) == nil; got != want {
			t.Fatalf("CheckSize(%d) accepts: %v, want %v", m, got, want)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name     string
		backends []Backend
		m        uint64
		want     string
	}{
		{"duplicate", []Backend{{Key: "10.0.0.1:80"}, {Key: "10.0.0.2:80"}, {Key: "10.0.0.1:80", Weight: 3}}, 251, `backend "10.0.0.1:80" is listed twice`},
		{"empty key", []Backend{{Key: "10.0.0.1:80"}, {Key: ""}}, 251, "a backend has an empty key"},
		{"too many", backends("ipv4", 252), 251, "252 backends do not fit a maglev table of 251 entries"},
		{"bad size", backends("ipv4", 2), 1000, "size 1000: not a prime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := Build(tt.backends, tt.m)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Build = %v, want an error containing %q", err, tt.want)
			}
			if !tab.Empty() || tab.Size != 0 || tab.Keys != nil {
				t.Fatalf("Build returned a table with its error: %+v", tab)
			}
		})
	}
}

func TestEmpty(t *testing.T) {
	for _, bs := range [][]Backend{nil, {}} {
		tab, err := Build(bs, DefaultSize)
		if err != nil {
			t.Fatalf("Build(%v) = %v", bs, err)
		}
		if !tab.Empty() || tab.Size != 0 || len(tab.Keys) != 0 {
			t.Errorf("Build(%v) = %+v, want the empty table", bs, tab)
		}
		if got := tab.Lookup(12345); got != -1 {
			t.Errorf("Lookup in the empty table = %d, want -1", got)
		}
	}
	if _, err := Build(nil, 100); !errors.Is(err, ErrBadSize) {
		t.Errorf("Build(nil, 100) = %v, want ErrBadSize: the size is checked even without backends", err)
	}
	if !(Table{}).Empty() {
		t.Errorf("the zero Table is not empty")
	}
}

func TestLookup(t *testing.T) {
	tab := mustBuild(t, backends("ipv4", 5), 251)
	if tab.Empty() || tab.Size != 251 || len(tab.Entries) != 251 {
		t.Fatalf("table of 5 backends: Empty %v, Size %d, %d entries", tab.Empty(), tab.Size, len(tab.Entries))
	}
	for _, h := range []uint32{0, 1, 250, 251, 252, 1<<32 - 1} {
		if got, want := tab.Lookup(h), int(tab.Entries[uint64(h)%251]); got != want {
			t.Errorf("Lookup(%d) = %d, want entry %d, %d", h, got, uint64(h)%251, want)
		}
	}
}
