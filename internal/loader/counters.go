package loader

import (
	"errors"
	"fmt"
	"time"
)

// ErrNoFreeCounter is returned when every slot of the policy_counters map
// is given to a policy entry, or was released too recently to be reused.
var ErrNoFreeCounter = errors.New("no free policy counter")

// counterGrace is how long a released counter slot stays unused: a program
// that read the policy entry (or its cached decision) just before the entry
// was deleted may still count into the slot, well under a millisecond later.
const counterGrace = time.Second

// counterSlots hands out the slots of the policy_counters map, one per
// policy entry. An entry keeps its slot as long as it exists, whatever
// table it points at, so its counts never move to another entry; a slot is
// reset before it is given out again, to be reused only after counterGrace,
// and slots are handed out cyclically, so a released one is the last to be
// reused. Slot 0 means "not counted" and is never handed out.
//
// On start the slots in use are those the pinned policy entries name.
type counterSlots struct {
	size  uint32
	byKey map[policyKey]uint32
	owner map[uint32]policyKey
	// released maps slots no entry has any more to when.
	released map[uint32]time.Time
	next     uint32
	now      func() time.Time
}

func newCounterSlots(size uint32, now func() time.Time) *counterSlots {
	return &counterSlots{
		size:     size,
		byKey:    make(map[policyKey]uint32),
		owner:    make(map[uint32]policyKey),
		released: make(map[uint32]time.Time),
		next:     1,
		now:      now,
	}
}

// adopt records that the entry k has slot i, as read from the maps. It
// reports false, and records nothing, for slot 0, a slot out of range, a
// slot another entry has, or an entry that has a slot already: such an
// entry gets a slot of its own when it is next written.
func (s *counterSlots) adopt(k policyKey, i uint32) bool {
	if i == 0 || i >= s.size {
		return false
	}
	if _, taken := s.owner[i]; taken {
		return false
	}
	if _, has := s.byKey[k]; has {
		return false
	}
	s.byKey[k], s.owner[i] = i, k
	delete(s.released, i)
	if i >= s.next {
		s.next = i + 1
		if s.next == s.size {
			s.next = 1
		}
	}
	return true
}

// get returns the slot of entry k.
func (s *counterSlots) get(k policyKey) (uint32, bool) {
	i, ok := s.byKey[k]
	return i, ok
}

// alloc gives entry k a free slot, one never used or released at least
// counterGrace ago, and returns it; the caller resets it before the entry
// names it. It returns an error wrapping ErrNoFreeCounter when none is free.
func (s *counterSlots) alloc(k policyKey) (uint32, error) {
	if i, ok := s.byKey[k]; ok {
		return i, nil
	}
	now := s.now()
	for n := uint32(1); n < s.size; n++ {
		i := s.next
		s.next++
		if s.next == s.size {
			s.next = 1
		}
		if _, used := s.owner[i]; used {
			continue
		}
		if at, ok := s.released[i]; ok && now.Sub(at) < counterGrace {
			continue
		}
		delete(s.released, i)
		s.byKey[k], s.owner[i] = i, k
		return i, nil
	}
	return 0, fmt.Errorf("%w: all %d are in use or were released less than %v ago", ErrNoFreeCounter, s.size-1, counterGrace)
}

// retain releases the slot of every entry that keep does not hold, and
// returns how many it released.
func (s *counterSlots) retain(keep func(policyKey) bool) int {
	n := 0
	now := s.now()
	for k, i := range s.byKey {
		if keep(k) {
			continue
		}
		delete(s.byKey, k)
		delete(s.owner, i)
		s.released[i] = now
		n++
	}
	return n
}

// inUse returns how many slots entries have.
func (s *counterSlots) inUse() int { return len(s.byKey) }
