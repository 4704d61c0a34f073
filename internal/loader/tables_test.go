package loader

import (
	"errors"
	"testing"
	"time"
)

func table(n uint32) tableKey {
	var k tableKey
	k.Len, k.Bounds[0] = 1, n<<8|1
	return k
}

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestTables(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	tb := newTables(4, clock.now)
	tb.adopt(1, table(10)) // as read from the pinned maps on start

	alloc := func(want uint32) {
		t.Helper()
		i, err := tb.alloc()
		if err != nil {
			t.Fatalf("alloc: %v", err)
		}
		if i != want {
			t.Fatalf("alloc = %d, want %d", i, want)
		}
	}
	// Cyclic: after the highest index in use.
	alloc(2)
	tb.adopt(2, table(20))
	alloc(3)
	tb.adopt(3, table(30))
	if i, ok := tb.find(table(20)); !ok || i != 2 {
		t.Errorf("find(table 20) = %d, %v; want 2", i, ok)
	}
	if _, ok := tb.find(table(99)); ok {
		t.Error("found a table never written")
	}

	// Release 1 and 2; 0 is never used, so it comes first.
	if n := tb.release(map[uint32]bool{3: true}); n != 2 {
		t.Errorf("released %d, want 2", n)
	}
	if _, ok := tb.find(table(20)); ok {
		t.Error("a released table is still found")
	}
	alloc(0)
	tb.adopt(0, table(40))
	// 1 and 2 were released just now: nothing is free for tableGrace.
	if _, err := tb.alloc(); !errors.Is(err, ErrNoFreeTable) {
		t.Fatalf("alloc during the grace period: %v, want ErrNoFreeTable", err)
	}
	clock.t = clock.t.Add(tableGrace)
	alloc(1)
	if tb.inUse() != 2 {
		t.Errorf("%d tables in use, want 2 (0 and 3)", tb.inUse())
	}
}

// TestTablesSharedContent checks that releasing one of two indices with
// the same table keeps the other findable.
func TestTablesSharedContent(t *testing.T) {
	tb := newTables(8, time.Now)
	tb.adopt(2, table(7))
	tb.adopt(5, table(7))
	tb.release(map[uint32]bool{5: true})
	if i, ok := tb.find(table(7)); !ok || i != 5 {
		t.Errorf("find = %d, %v; want 5", i, ok)
	}
	if _, ok := tb.content(2); ok {
		t.Error("released index 2 still has content")
	}
}
