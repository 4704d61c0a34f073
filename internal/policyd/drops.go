package policyd

import (
	"sync"

	"github.com/roost-net/roost/internal/datapath"
)

// dropRing keeps the most recent drop events and wakes followers.
type dropRing struct {
	mu     sync.Mutex
	events []datapath.DropEvent // ring of cap max
	next   int                  // total events ever added
	max    int
	wake   chan struct{} // closed and replaced on every add
}

func newDropRing(max int) *dropRing {
	return &dropRing{max: max, wake: make(chan struct{})}
}

func (r *dropRing) add(ev datapath.DropEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) < r.max {
		r.events = append(r.events, ev)
	} else {
		r.events[r.next%r.max] = ev
	}
	r.next++
	close(r.wake)
	r.wake = make(chan struct{})
}

// since returns the events numbered from (or the oldest kept, if from is
// older), the number to ask from next time, and a channel closed on the
// next add.
func (r *dropRing) since(from int) ([]datapath.DropEvent, int, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	oldest := max(0, r.next-len(r.events))
	from = max(from, oldest)
	out := make([]datapath.DropEvent, 0, r.next-from)
	for i := from; i < r.next; i++ {
		out = append(out, r.events[i%r.max])
	}
	return out, r.next, r.wake
}
