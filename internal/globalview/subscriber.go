package globalview

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// View is the global view at one revision: every valid endpoint of every
// origin, and what was skipped.
type View struct {
	// Revision is etcd's revision the view is current at.
	Revision int64
	// Endpoints are by Endpoint.ID. The map is the receiver's.
	Endpoints map[string]Endpoint
	// Nodes are the clusters' nodes, by Node.ID. The map is the
	// receiver's.
	Nodes map[string]Node
	// Problems are the keys under the endpoints prefix that were skipped,
	// sorted by key.
	Problems []Problem
}

// Problem is a key that was skipped, and why.
type Problem struct {
	Key string `json:"key"`
	Err string `json:"error"`
}

// SubscriberOptions tune a Subscriber; the zero value takes every default.
type SubscriberOptions struct {
	// Debounce is how long the view must be quiet after a change before
	// it is passed on; default 50 ms.
	Debounce time.Duration
	// MaxDelay is the longest a change waits for quiet; default 250 ms.
	MaxDelay time.Duration
	// ProbeInterval is how often a linearizable read counts the keys
	// under the prefix: etcd answers (Status.Connected), and the view
	// has lost no change; default 5 s.
	ProbeInterval time.Duration
	// Retry is the wait after a failed list or a broken watch; default
	// 1 s.
	Retry time.Duration
	// Log receives the subscriber's transitions; default none.
	Log logrus.FieldLogger
}

func (o SubscriberOptions) withDefaults() SubscriberOptions {
	if o.Debounce <= 0 {
		o.Debounce = 50 * time.Millisecond
	}
	if o.MaxDelay < o.Debounce {
		o.MaxDelay = max(250*time.Millisecond, o.Debounce)
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = 5 * time.Second
	}
	if o.Retry <= 0 {
		o.Retry = time.Second
	}
	if o.Log == nil {
		l := logrus.New()
		l.Out = io.Discard
		o.Log = l
	}
	return o
}

// Subscriber follows every origin's endpoints in etcd and passes the whole
// view to a function after the first complete listing and after each
// change. It lists once, then watches from the listing's revision; a
// broken watch resumes from the last revision seen. It lists again when
// the revision it needs was compacted away, when etcd's revision went back
// (a restore), and when its probes find etcd holding another number of
// keys than the view for a while with no change arriving (a lost change).
// A view is passed on only after etcd answered: while etcd is unreachable
// the receiver keeps the last view it had, and no view is ever empty
// because etcd said nothing.
type Subscriber struct {
	c      *Client
	opts   SubscriberOptions
	onView func(View)

	mu     sync.Mutex
	status SubscriberStatus
	synced time.Time // when the view was last known current
}

// SubscriberStatus is what a Subscriber reports about itself.
type SubscriberStatus struct {
	// Connected is whether etcd answered the last request, watch
	// response or probe.
	Connected bool `json:"connected"`
	// Listed is whether a first complete listing succeeded (before it
	// no view has been passed on).
	Listed bool `json:"listed"`
	// Revision is the revision of the view.
	Revision  int64 `json:"revision"`
	Endpoints int   `json:"endpoints"`
	Nodes     int   `json:"nodes"`
	Problems  int   `json:"problems"`
	// Views counts the views passed on; Lists the complete listings
	// (the first, and each resync).
	Views int `json:"views"`
	Lists int `json:"lists"`
	// ViewAge is how long ago the view was last known current: etcd
	// answered a listing, a watch response or a probe with the watch
	// established. Zero before the first listing.
	ViewAge       time.Duration `json:"viewAge"`
	LastError     string        `json:"lastError,omitempty"`
	LastErrorTime time.Time     `json:"lastErrorTime,omitzero"`
}

// NewSubscriber returns a subscriber that passes each view to onView, from
// Run's goroutine; onView must return soon.
func NewSubscriber(c *Client, opts SubscriberOptions, onView func(View)) *Subscriber {
	return &Subscriber{c: c, opts: opts.withDefaults(), onView: onView}
}

// Status returns a snapshot of the subscriber's state.
func (s *Subscriber) Status() SubscriberStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	if !s.synced.IsZero() {
		st.ViewAge = time.Since(s.synced)
	}
	return st
}

// lostChangeAfter is how long the view's key count may differ from etcd's,
// with no change arriving, before the subscriber lists again. A watch that
// resumes after a reconnection delivers what it missed within a second.
const lostChangeAfter = 5 * time.Second

// errRelist asks Run to list again: the watch's revision was compacted, or
// etcd's revision went back.
var errRelist = errors.New("list again")

// Run follows etcd until ctx ends, and returns nil then.
func (s *Subscriber) Run(ctx context.Context) error {
	v := &viewState{layout: s.c.layout, entries: map[string]entry{}}
	listed := false
	for ctx.Err() == nil {
		if !listed {
			if err := s.list(ctx, v); err != nil {
				if ctx.Err() == nil {
					s.fail(err)
					sleep(ctx, s.opts.Retry)
				}
				continue
			}
			listed = true
			s.emit(v)
		}
		err := s.watch(ctx, v)
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, errRelist):
			s.opts.Log.WithError(err).WithField(fieldRevision, v.rev).Info("global view: listing again")
			s.note(err)
			listed = false
		default:
			s.fail(err)
			sleep(ctx, s.opts.Retry)
		}
	}
	return nil
}

// fail records err and that etcd did not answer.
func (s *Subscriber) fail(err error) {
	s.mu.Lock()
	s.status.Connected = false
	s.mu.Unlock()
	s.note(err)
}

// note records err as the last error.
func (s *Subscriber) note(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.LastError, s.status.LastErrorTime = err.Error(), time.Now()
}

// answered records that etcd answered and the view is current.
func (s *Subscriber) answered() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.Connected = true
	if s.status.Listed {
		s.synced = time.Now()
	}
}

// list replaces v with a complete listing.
func (s *Subscriber) list(ctx context.Context, v *viewState) error {
	entries := map[string]entry{}
	rev, err := listPrefix(ctx, s.c, s.c.layout.Endpoints(), func(kv kvPair) {
		entries[kv.key] = v.layout.entry(kv.key, kv.value)
	})
	if err != nil {
		return err
	}
	v.entries, v.rev = entries, rev
	s.mu.Lock()
	s.status.Listed, s.status.Connected = true, true
	s.status.Lists++
	s.synced = time.Now()
	s.mu.Unlock()
	return nil
}

// emit passes v on.
func (s *Subscriber) emit(v *viewState) {
	view := v.view()
	s.mu.Lock()
	s.status.Revision, s.status.Endpoints, s.status.Nodes, s.status.Problems = view.Revision, len(view.Endpoints), len(view.Nodes), len(view.Problems)
	s.status.Views++
	s.mu.Unlock()
	s.onView(view)
}

// watch follows changes from v.rev+1 until the watch breaks, and returns
// why. Changes are passed on after Debounce of quiet (at most MaxDelay
// after the first), and before watch returns.
func (s *Subscriber) watch(ctx context.Context, v *viewState) error {
	// WithRequireLeader: a member cut off from its cluster's leader ends
	// the watch instead of keeping it open and silent.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()

	// Probes, one at a time, count the keys under the prefix. A count
	// that differs from the view's while no change arrives, for
	// lostChangeAfter and at least two probes, means a change was lost:
	// etcd before 3.4.34 and 3.5.15 drops the deletions of the revision a
	// compaction stopped at from a watch resumed at that revision
	// (etcd-io/etcd#18089).
	type probeResult struct {
		n, rev  int64
		baseRev int64
		baseN   int
		err     error
	}
	probes := make(chan probeResult, 1)
	probing := false
	suspect := int64(-1) // v.rev at the first probe whose count differed
	var suspectSince time.Time
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // before Wait
	tick := time.NewTicker(s.opts.ProbeInterval)
	defer tick.Stop()

	// Watch returns only once etcd has registered the watch: with etcd
	// gone it would block, and the probes would not run. Until it
	// returns, wch is nil and never ready.
	var wch clientv3.WatchChan
	watching := make(chan clientv3.WatchChan, 1)
	from := v.rev + 1
	wg.Go(func() {
		watching <- s.c.etcd.Watch(wctx, s.c.layout.Endpoints(), clientv3.WithPrefix(), clientv3.WithRev(from))
	})

	var (
		pending   bool
		first     time.Time
		quiet     = time.NewTimer(time.Hour)
		flushed   = func() { pending = false; quiet.Stop() }
		flushThen = func(err error) error {
			if pending {
				s.emit(v)
				flushed()
			}
			return err
		}
	)
	quiet.Stop()
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case wch = <-watching:
		case resp, ok := <-wch:
			if !ok {
				return flushThen(errors.New("watch closed"))
			}
			if resp.CompactRevision != 0 {
				return flushThen(fmt.Errorf("%w: revision %d was compacted (etcd kept from %d)", errRelist, v.rev+1, resp.CompactRevision))
			}
			if err := resp.Err(); err != nil {
				return flushThen(fmt.Errorf("watch: %w", s.c.explain(err)))
			}
			if resp.Canceled {
				return flushThen(fmt.Errorf("watch canceled: %s", resp.CancelReason))
			}
			s.answered()
			for _, ev := range resp.Events {
				key := string(ev.Kv.Key)
				if ev.Type == clientv3.EventTypeDelete {
					delete(v.entries, key)
				} else {
					v.entries[key] = v.layout.entry(key, ev.Kv.Value)
				}
				v.rev = max(v.rev, ev.Kv.ModRevision)
			}
			if resp.IsProgressNotify() {
				v.rev = max(v.rev, resp.Header.Revision)
			}
			if len(resp.Events) == 0 {
				continue
			}
			now := time.Now()
			if !pending {
				pending, first = true, now
			}
			quiet.Reset(min(s.opts.Debounce, s.opts.MaxDelay-now.Sub(first)))
		case <-quiet.C:
			s.emit(v)
			flushed()
		case <-tick.C:
			if probing {
				continue
			}
			probing = true
			baseRev, baseN := v.rev, len(v.entries)
			wg.Go(func() {
				n, rev, err := s.c.count(wctx, s.c.layout.Endpoints())
				probes <- probeResult{n: n, rev: rev, baseRev: baseRev, baseN: baseN, err: err}
			})
		case r := <-probes:
			probing = false
			if wctx.Err() != nil {
				continue
			}
			if r.err != nil {
				s.fail(r.err)
				continue
			}
			s.answered()
			switch {
			case r.rev < r.baseRev:
				return flushThen(fmt.Errorf("%w: etcd is at revision %d, before this view's %d (restored or replaced?)", errRelist, r.rev, r.baseRev))
			case v.rev != r.baseRev || r.n == int64(r.baseN):
				suspect = -1
			case suspect != v.rev:
				suspect, suspectSince = v.rev, time.Now()
			case time.Since(suspectSince) >= lostChangeAfter:
				return flushThen(fmt.Errorf("%w: the view has %d keys at revision %d, etcd %d at %d: a change was lost", errRelist, r.baseN, r.baseRev, r.n, r.rev))
			}
		}
	}
}

// viewState is a subscriber's copy of etcd's endpoints, by key.
type viewState struct {
	layout  Layout
	rev     int64
	entries map[string]entry
}

// entry is one key: an endpoint or a node, or why it was skipped.
type entry struct {
	ep   Endpoint
	node *Node
	err  error
}

// entry decodes one key.
func (l Layout) entry(key string, value []byte) entry {
	if l.isNodeKey(key) {
		n, err := l.decodeNode(key, value)
		if err != nil {
			return entry{err: err}
		}
		return entry{node: &n}
	}
	ep, err := l.decode(key, value)
	return entry{ep: ep, err: err}
}

// view returns a copy of v for the receiver.
func (v *viewState) view() View {
	out := View{Revision: v.rev, Endpoints: make(map[string]Endpoint, len(v.entries)), Nodes: map[string]Node{}}
	for _, key := range slices.Sorted(maps.Keys(v.entries)) {
		e := v.entries[key]
		switch {
		case e.err != nil:
			out.Problems = append(out.Problems, Problem{Key: key, Err: e.err.Error()})
		case e.node != nil:
			out.Nodes[e.node.ID()] = *e.node
		default:
			out.Endpoints[e.ep.ID()] = e.ep
		}
	}
	slices.SortFunc(out.Problems, func(a, b Problem) int { return cmp.Compare(a.Key, b.Key) })
	return out
}
