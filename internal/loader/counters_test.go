package loader

import (
	"errors"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/datapath"
)

func entry(endpoint uint32, remote datapath.Identity) policyKey {
	return policyKey{endpoint: endpoint, remote: remote}
}

func TestCounterSlots(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	s := newCounterSlots(5, clock.now) // slots 1-4
	a, b, c, d, e := entry(7, 0), entry(7, 1), entry(7, 1000), entry(8, 0), entry(8, 1)

	alloc := func(k policyKey, want uint32) {
		t.Helper()
		i, err := s.alloc(k)
		if err != nil {
			t.Fatalf("alloc(%v): %v", k, err)
		}
		if i != want {
			t.Fatalf("alloc(%v) = %d, want %d", k, i, want)
		}
	}
	// As read from the pinned maps on start: 0 is "not counted", 9 is out
	// of range, and a slot named twice stays with the first entry.
	for _, tt := range []struct {
		k    policyKey
		slot uint32
		want bool
	}{{a, 2, true}, {b, 0, false}, {c, 9, false}, {d, 2, false}} {
		if got := s.adopt(tt.k, tt.slot); got != tt.want {
			t.Errorf("adopt(%v, %d) = %v, want %v", tt.k, tt.slot, got, tt.want)
		}
	}

	// Cyclic, after the highest slot in use; an entry keeps its slot.
	alloc(b, 3)
	alloc(c, 4)
	alloc(a, 2)
	if i, ok := s.get(b); !ok || i != 3 {
		t.Errorf("get(b) = %d, %v; want 3", i, ok)
	}
	alloc(d, 1) // wraps around, past 0
	if _, err := s.alloc(e); !errors.Is(err, ErrNoFreeCounter) {
		t.Fatalf("alloc with every slot taken: %v, want ErrNoFreeCounter", err)
	}

	// b and c go; their slots wait out the grace period.
	if n := s.retain(func(k policyKey) bool { return k == a || k == d }); n != 2 {
		t.Errorf("released %d, want 2", n)
	}
	if _, ok := s.get(b); ok {
		t.Error("a released entry still has its slot")
	}
	if _, err := s.alloc(e); !errors.Is(err, ErrNoFreeCounter) {
		t.Fatalf("alloc during the grace period: %v, want ErrNoFreeCounter", err)
	}
	clock.t = clock.t.Add(counterGrace)
	alloc(e, 3)
	alloc(b, 4) // back, but with a new slot (to be reset)
	if s.inUse() != 4 {
		t.Errorf("%d slots in use, want 4", s.inUse())
	}
}
