package loader

import (
	"errors"
	"fmt"
	"time"
)

// ErrNoFreeTable is returned when every index of the verdicts map holds a
// table in use, or one released too recently to be rewritten.
var ErrNoFreeTable = errors.New("no free verdict table")

// tableGrace is how long a released verdict table index stays unused. A
// program holds a table for well under a millisecond while it searches it;
// rewriting an index some program may still read would let it see half of
// two tables.
const tableGrace = time.Second

// tables allocates the indices of the verdicts map. A written table is
// never rewritten while a policy entry may point at it: a new table goes to
// a free index, entries are repointed, and the old index is released, to be
// reused only after tableGrace. Identical tables are shared.
//
// Indices are handed out cyclically, so a released index is the last to be
// reused. On start the tables in use are those the pinned policy entries
// point at; every other index is free at once (loading the programs took
// far longer than tableGrace's reason).
type tables struct {
	size    uint32
	byIndex map[uint32]tableKey
	byKey   map[tableKey]uint32
	// released maps indices no entry points at any more to when.
	released map[uint32]time.Time
	next     uint32
	now      func() time.Time
}

func newTables(size uint32, now func() time.Time) *tables {
	return &tables{
		size:     size,
		byIndex:  make(map[uint32]tableKey),
		byKey:    make(map[tableKey]uint32),
		released: make(map[uint32]time.Time),
		now:      now,
	}
}

// adopt records that index holds table k and is in use.
func (t *tables) adopt(index uint32, k tableKey) {
	t.byIndex[index] = k
	if _, ok := t.byKey[k]; !ok {
		t.byKey[k] = index
	}
	delete(t.released, index)
	if index >= t.next {
		t.next = (index + 1) % t.size
	}
}

// find returns the index of a table in use equal to k.
func (t *tables) find(k tableKey) (uint32, bool) {
	i, ok := t.byKey[k]
	return i, ok
}

// content returns the table at index, if it is in use.
func (t *tables) content(index uint32) (tableKey, bool) {
	k, ok := t.byIndex[index]
	return k, ok
}

// alloc returns a free index for a new table: one never used, or released
// at least tableGrace ago. The caller writes the table and then adopts it.
func (t *tables) alloc() (uint32, error) {
	now := t.now()
	for n := uint32(0); n < t.size; n++ {
		i := (t.next + n) % t.size
		if _, used := t.byIndex[i]; used {
			continue
		}
		if at, ok := t.released[i]; ok && now.Sub(at) < tableGrace {
			continue
		}
		delete(t.released, i)
		t.next = (i + 1) % t.size
		return i, nil
	}
	return 0, fmt.Errorf("%w: all %d are in use or were released less than %v ago", ErrNoFreeTable, t.size, tableGrace)
}

// release marks every index in use that is not in keep as released, and
// returns how many it released.
func (t *tables) release(keep map[uint32]bool) int {
	n := 0
	now := t.now()
	for i, k := range t.byIndex {
		if keep[i] {
			continue
		}
		delete(t.byIndex, i)
		if t.byKey[k] == i {
			delete(t.byKey, k)
			// Another index in use may hold the same table.
			for j, k2 := range t.byIndex {
				if k2 == k {
					t.byKey[k] = j
					break
				}
			}
		}
		t.released[i] = now
		n++
	}
	return n
}

// inUse returns how many indices are in use.
func (t *tables) inUse() int { return len(t.byIndex) }
