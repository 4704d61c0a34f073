// Package maglev builds Maglev lookup tables (Eisenbud et al., "Maglev: A
// Fast and Reliable Software Network Load Balancer", NSDI 2016, section
// 3.4) for load-balancing a service's flows over its backends. It is pure:
// no BPF, no I/O, no clock, no randomness.
//
// Every node must build the identical table from the same backends, in
// whatever order it learned them, so that a flow rehashed by ECMP to
// another node still reaches the same backend. The table is therefore a
// function of the set of backends (keys and weights) and the table size
// only, and the construction below is part of the package's contract: a
// change to it, or an implementation elsewhere that differs in any detail,
// splits the cluster's agreement on where flows go. TestGolden pins it.
//
// # Construction
//
// Inputs are a prime table size M (see CheckSize) and N backends, each a
// non-empty key string that is the same on every node (such as
// "10.244.1.10:6379" or "[fd00::1]:80") and a weight w ≥ 1 (0 stands for
// 1).
//
//  1. Backends are sorted by key, comparing the keys' bytes (Go string
//     order, which is also C's memcmp order); backend i is the i-th in that
//     order. Two backends with the same key are an error.
//  2. For each backend, with FNV-1a-64(b) the 64-bit FNV-1a hash of the
//     bytes b (offset basis 14695981039346656037, prime 1099511628211):
//     offset = FNV-1a-64(0x00 ‖ key) mod M and
//     skip = FNV-1a-64(0x01 ‖ key) mod (M−1) + 1,
//     where ‖ is concatenation and the key is taken as its bytes. The
//     backend's preference list is permutation[j] = (offset + j·skip) mod M
//     for j = 0, 1, …, M−1; it visits every entry once since M is prime and
//     0 < skip < M.
//  3. Let W be the largest weight. Backend i takes its k-th entry (k ≥ 1)
//     in turn r = ⌈k·W/wᵢ⌉; within a turn, backends go in index order.
//     Taking an entry means walking the backend's preference list from
//     where it stopped last time to the first entry not yet taken, and
//     setting it to i. Population stops when all M entries are taken.
//     With equal weights every backend takes one entry per turn: this is
//     the paper's algorithm exactly. With weights it is the schedule of
//     Katran's weighted Maglev, MaglevHashV2: a backend earns wᵢ credit per
//     turn and takes an entry whenever its credit reaches W. (In Katran a
//     weight of 0 gets no entries; here 0 means 1.)
//
// A flow whose packet hash is h then goes to backend Entries[h mod M].
//
// For example, with M = 16381, the key "10.244.1.10:6379" has offset 8330
// and skip 13761.
//
// # Properties
//
// With equal weights every backend gets ⌊M/N⌋ or ⌈M/N⌉ entries. With
// weights, backend i gets M·wᵢ/S entries (S the sum of the weights) to
// within 1 + N·wᵢ/S; a backend whose share is below one entry may get none.
// When one of N backends leaves or joins, 1/N of the entries change hands,
// plus some more: Maglev trades minimal disruption for balance, and the
// excess shrinks as M/N grows (the paper advises M > 100·N). Measured with
// N up to 163 (TestDisruption), the excess reaches 2 % of the entries with
// M = 16381 (Cilium's default) and stays under 1 % with DefaultSize, 65537.
package maglev

import (
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
)

// Table sizes accepted by CheckSize.
const (
	// DefaultSize is the table size unless configured: the smallest of the
	// usual sizes with which one backend of N leaving moves at most 1/N + 1 %
	// of the flows, for N up to 163 (see Properties). Cilium's default,
	// 16381, moves up to 2 % more; a table of 65537 entries costs 256 KiB
	// (4-byte entries) and about 3 ms to build for 100 backends.
	DefaultSize = 65537
	// MinSize is the smallest table size: about 100 entries per backend
	// for two backends, below which the table has too few entries for
	// Maglev's balance and disruption to mean much. It is the smallest
	// size Cilium offers.
	MinSize = 251
	// MaxSize (2¹⁷−1) is the largest table size, Cilium's largest too.
	// It bounds the memory of a service's table in the datapath
	// (512 KiB as 4-byte entries) and the time Build takes.
	MaxSize = 131071
)

// Backend is one destination of a service.
type Backend struct {
	// Key names the backend identically on every node, such as
	// "10.244.1.10:6379" or "[fd00::1]:80". It must not be empty. Only
	// its bytes matter: the package does not parse it.
	Key string
	// Weight is the backend's share of the flows relative to the other
	// backends'. 0 means 1, the default; there is no weight that drains a
	// backend: leave it out instead.
	Weight uint32
}

// Table is a Maglev lookup table. Its zero value is the table of a service
// without backends, which must drop (or not load-balance) its flows.
type Table struct {
	// Size is the number of entries, the M of the construction; 0 when
	// there are no backends.
	Size uint64
	// Keys are the backends' keys, sorted.
	Keys []string
	// Entries are, for each hash modulo Size, the index in Keys of the
	// backend to use. It has Size entries.
	Entries []uint32
}

// Empty reports whether t has no backends, so that Lookup has nothing to
// return.
func (t Table) Empty() bool {
	return len(t.Entries) == 0
}

// Lookup returns the index in t.Keys of the backend of a flow whose packet
// hash is hash, or -1 if t is empty.
func (t Table) Lookup(hash uint32) int {
	if len(t.Entries) == 0 {
		return -1
	}
	return int(t.Entries[uint64(hash)%uint64(len(t.Entries))])
}

// ErrBadSize is the error CheckSize and Build wrap for a size they refuse.
var ErrBadSize = errors.New("bad maglev table size")

// CheckSize returns nil if m can be the size of a table: a prime from
// MinSize to MaxSize. Otherwise it returns an error wrapping ErrBadSize
// that names m.
func CheckSize(m uint64) error {
	if m < MinSize || m > MaxSize {
		return fmt.Errorf("%w %d: must be a prime from %d to %d (default %d)", ErrBadSize, m, MinSize, MaxSize, DefaultSize)
	}
	if !isPrime(m) {
		return fmt.Errorf("%w %d: not a prime; primes near it include %d and %d", ErrBadSize, m, prevPrime(m), nextPrime(m))
	}
	return nil
}

func isPrime(m uint64) bool {
	if m < 2 {
		return false
	}
	for d := uint64(2); d*d <= m; d++ {
		if m%d == 0 {
			return false
		}
	}
	return true
}

func prevPrime(m uint64) uint64 {
	for m > MinSize && !isPrime(m) {
		m--
	}
	return m
}

func nextPrime(m uint64) uint64 {
	for m < MaxSize && !isPrime(m) {
		m++
	}
	return m
}

// Build returns the table of size m for the backends, which may come in
// any order. With no backends it returns the empty table (if m is a valid
// size). It returns an error if m is refused by CheckSize (wrapping
// ErrBadSize), if a key is empty or listed twice (naming it), or if there
// are more backends than entries.
func Build(backends []Backend, m uint64) (Table, error) {
	if err := CheckSize(m); err != nil {
		return Table{}, err
	}
	if len(backends) == 0 {
		return Table{}, nil
	}
	if uint64(len(backends)) > m {
		return Table{}, fmt.Errorf("%d backends do not fit a maglev table of %d entries; use a larger size (at least 100 per backend)", len(backends), m)
	}
	bs := slices.Clone(backends)
	slices.SortFunc(bs, func(a, b Backend) int { return strings.Compare(a.Key, b.Key) })
	for i, b := range bs {
		if b.Key == "" {
			return Table{}, errors.New("a backend has an empty key")
		}
		if i > 0 && b.Key == bs[i-1].Key {
			return Table{}, fmt.Errorf("backend %q is listed twice", b.Key)
		}
	}

	n := len(bs)
	keys := make([]string, n)
	cur := make([]cursor, n)
	weight := make([]uint64, n)
	var maxW uint64
	for i, b := range bs {
		keys[i] = b.Key
		offset, skip := permutation(b.Key, m)
		cur[i] = cursor{pos: uint32(offset), skip: uint32(skip)}
		weight[i] = uint64(max(b.Weight, 1))
		maxW = max(maxW, weight[i])
	}

	p := population{
		entries: make([]uint32, m),
		used:    make([]uint64, (m+63)/64),
		size:    uint32(m),
	}
	if slices.Min(weight) == maxW {
		// Every backend takes an entry in every turn: the paper's loop.
		for k := uint64(0); k < m; {
			for i := 0; i < n && k < m; i++ {
				p.take(&cur[i], uint32(i))
				k++
			}
		}
		return Table{Size: m, Keys: keys, Entries: p.entries}, nil
	}

	// The turns to come, as a min-heap of backends ordered by the turn of
	// their next entry, then by index.
	sched := schedule{turn: make([]uint64, n), heap: make([]uint32, n)}
	for i := range n {
		sched.turn[i] = ceilDiv(maxW, weight[i])
		sched.heap[i] = uint32(i)
	}
	for i := n/2 - 1; i >= 0; i-- {
		sched.down(i)
	}
	taken := make([]uint64, n)
	for range m {
		i := sched.heap[0]
		p.take(&cur[i], i)
		taken[i]++
		sched.turn[i] = ceilDiv((taken[i]+1)*maxW, weight[i])
		sched.down(0)
	}
	return Table{Size: m, Keys: keys, Entries: p.entries}, nil
}

// permutation returns the offset and skip of the backend with the key in a
// table of size m.
func permutation(key string, m uint64) (offset, skip uint64) {
	return fnv1a(0, key) % m, fnv1a(1, key)%(m-1) + 1
}

// fnv1a returns the 64-bit FNV-1a hash of the seed byte followed by the
// key's bytes.
func fnv1a(seed byte, key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte{seed})
	h.Write([]byte(key))
	return h.Sum64()
}

func ceilDiv(a, b uint64) uint64 {
	return (a + b - 1) / b
}

// cursor is where a backend is in its preference list.
type cursor struct {
	pos, skip uint32
}

// next moves c to the next entry of its preference list in a table of
// size m.
func (c *cursor) next(m uint32) {
	c.pos += c.skip
	if c.pos >= m {
		c.pos -= m
	}
}

// population is a table being populated.
type population struct {
	entries []uint32
	// used marks the entries taken, one bit each: probing it stays in the
	// CPU's cache, where probing entries would not.
	used []uint64
	size uint32
}

// take gives backend i the next entry of its preference list that is not
// taken yet; c is where that list stands.
func (p *population) take(c *cursor, i uint32) {
	for p.used[c.pos/64]&(1<<(c.pos%64)) != 0 {
		c.next(p.size)
	}
	p.used[c.pos/64] |= 1 << (c.pos % 64)
	p.entries[c.pos] = i
	c.next(p.size)
}

// schedule orders the backends by the turn in which each takes its next
// entry.
type schedule struct {
	turn []uint64 // by backend
	heap []uint32 // backends, a binary min-heap by (turn, index)
}

func (s *schedule) less(a, b uint32) bool {
	return s.turn[a] < s.turn[b] || s.turn[a] == s.turn[b] && a < b
}

// down restores the heap property below position j.
func (s *schedule) down(j int) {
	h := s.heap
	for {
		l := 2*j + 1
		if l >= len(h) {
			return
		}
		c := l
		if r := l + 1; r < len(h) && s.less(h[r], h[l]) {
			c = r
		}
		if !s.less(h[c], h[j]) {
			return
		}
		h[j], h[c] = h[c], h[j]
		j = c
	}
}
