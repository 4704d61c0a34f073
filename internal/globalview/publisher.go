package globalview

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Log field names.
const (
	fieldOrigin   = "origin"
	fieldLease    = "lease"
	fieldRevision = "revision"
	fieldID       = "id"
)

// ErrNotLeader means a publisher's write was refused because another
// publisher of the same origin has become the leader.
var ErrNotLeader = errors.New("no longer the leader of this origin")

// errLeaseLost means a lease of the publisher's term expired.
var errLeaseLost = errors.New("lease lost")

// PublisherOptions tune a Publisher; the zero value takes every default.
type PublisherOptions struct {
	// ID names this publisher in its candidacy (a host or pod name);
	// default "publisher".
	ID string
	// TTL is the lease of the endpoints: how long they outlive a
	// publisher that dies with no successor. Whole seconds, at least 2;
	// default 30 s.
	TTL time.Duration
	// ElectionTTL is the lease of the candidacy: how long a standby waits
	// for a dead leader. Whole seconds, at least 2 and less than TTL, so
	// that a successor rewrites the endpoints before they expire; default
	// TTL/3 (at least 2 s).
	ElectionTTL time.Duration
	// MaxTxnOps bounds the operations in one transaction; default 128,
	// etcd's default --max-txn-ops.
	MaxTxnOps int
	// Retry is the wait after a failed attempt; default 1 s.
	Retry time.Duration
	// Log receives the publisher's transitions; default none.
	Log logrus.FieldLogger
}

// maxTxnBytes bounds the bytes of keys and values in one transaction,
// below etcd's default --max-request-bytes (1.5 MiB).
const maxTxnBytes = 1 << 20

func (o PublisherOptions) withDefaults() (PublisherOptions, error) {
	if o.ID == "" {
		o.ID = "publisher"
	}
	if o.TTL == 0 {
		o.TTL = 30 * time.Second
	}
	if o.ElectionTTL == 0 {
		o.ElectionTTL = max(o.TTL/3, 2*time.Second).Truncate(time.Second)
	}
	if o.MaxTxnOps == 0 {
		o.MaxTxnOps = 128
	}
	if o.Retry == 0 {
		o.Retry = time.Second
	}
	if o.Log == nil {
		l := logrus.New()
		l.Out = io.Discard
		o.Log = l
	}
	var errs []error
	if o.TTL < 2*time.Second || o.TTL%time.Second != 0 {
		errs = append(errs, fmt.Errorf("TTL %v: want whole seconds, at least 2s", o.TTL))
	}
	if o.ElectionTTL < 2*time.Second || o.ElectionTTL%time.Second != 0 || o.ElectionTTL >= o.TTL {
		errs = append(errs, fmt.Errorf("ElectionTTL %v: want whole seconds, at least 2s and less than TTL %v", o.ElectionTTL, o.TTL))
	}
	if o.MaxTxnOps < 1 {
		errs = append(errs, fmt.Errorf("MaxTxnOps %d: want at least 1", o.MaxTxnOps))
	}
	return o, errors.Join(errs...)
}

// Publisher keeps one origin's endpoints in etcd equal to the set it is
// given (Set). Publishers of the same origin elect one leader, and only the
// leader writes: each write is a transaction that holds only while its
// candidacy is the leader's (a deposed leader's writes fail). The leader
// writes every endpoint under one lease of its own and keeps it alive; when
// it dies, a standby wins within ElectionTTL and rewrites every endpoint
// under its own lease, before the dead leader's lease (TTL) deletes them.
// With no standby they expire TTL after the last keepalive.
//
// A term starts with a campaign and ends when a lease is lost, a write is
// refused, or Run's context ends; the next term starts afresh (a new
// candidacy, a new lease, a full rewrite).
type Publisher struct {
	c      *Client
	origin Origin
	opts   PublisherOptions

	kick chan struct{}

	mu      sync.Mutex
	desired map[string][]byte // key → value
	gen     uint64
	status  PublisherStatus
}

// PublisherStatus is what a Publisher reports about itself.
type PublisherStatus struct {
	Origin string `json:"origin"`
	ID     string `json:"id"`
	// Leader is whether this publisher is its origin's writer.
	Leader bool `json:"leader"`
	// Lease is the lease the endpoints are written under, in hex; empty
	// unless Leader.
	Lease string `json:"lease,omitempty"`
	// Generation counts Set calls; Published is the generation etcd
	// holds, once this publisher has written it as the leader.
	Generation uint64 `json:"generation"`
	Published  uint64 `json:"published"`
	// Endpoints and Nodes are how many of each the desired set has.
	Endpoints int `json:"endpoints"`
	Nodes     int `json:"nodes"`
	// Terms counts the terms begun (campaigns).
	Terms int `json:"terms"`
	// Last is the last successful publication.
	Last          PublishStats `json:"last"`
	LastError     string       `json:"lastError,omitempty"`
	LastErrorTime time.Time    `json:"lastErrorTime,omitzero"`
}

// PublishStats describes one reconciliation of etcd to the desired set.
type PublishStats struct {
	// Full is whether it began by listing the origin's keys (at the start
	// of a term or after a failed write) rather than from memory.
	Full     bool          `json:"full"`
	Puts     int           `json:"puts"`
	Deletes  int           `json:"deletes"`
	Txns     int           `json:"txns"`
	Bytes    int           `json:"bytes"`
	Duration time.Duration `json:"duration"`
	Revision int64         `json:"revision"`
}

// NewPublisher returns a publisher of origin's endpoints through c. It
// writes nothing before Run.
func NewPublisher(c *Client, origin Origin, opts PublisherOptions) (*Publisher, error) {
	if err := origin.Validate(); err != nil {
		return nil, err
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("publisher options: %w", err)
	}
	p := &Publisher{c: c, origin: origin, opts: opts, kick: make(chan struct{}, 1), desired: map[string][]byte{}}
	p.status.Origin, p.status.ID = origin.String(), opts.ID
	return p, nil
}

// Set replaces the desired set with eps and nodes (a cluster's; a
// syncer's origin has none) and returns its generation. An endpoint or
// node that is invalid (Validate), of another origin, or whose ID repeats
// an earlier one is left out, and the returned error names each; the
// others are published all the same.
func (p *Publisher) Set(eps []Endpoint, nodes []Node) (uint64, error) {
	desired := make(map[string][]byte, len(eps)+len(nodes))
	var errs []error
	add := func(id, key string, origin Origin, valid error, encode func() ([]byte, error)) {
		if origin != p.origin {
			errs = append(errs, fmt.Errorf("%s: origin is not this publisher's %s", id, p.origin))
			return
		}
		if valid != nil {
			errs = append(errs, valid)
			return
		}
		if _, dup := desired[key]; dup {
			errs = append(errs, fmt.Errorf("%s: given twice; the first is kept", id))
			return
		}
		v, err := encode()
		if err != nil {
			errs = append(errs, err)
			return
		}
		desired[key] = v
	}
	for _, e := range eps {
		add("endpoint "+e.ID(), p.c.layout.Key(e), e.Origin, e.Validate(), func() ([]byte, error) { return encode(e) })
	}
	endpoints := len(desired)
	for _, n := range nodes {
		add("node "+n.ID(), p.c.layout.NodeKey(n), n.Origin, n.Validate(), func() ([]byte, error) { return encodeNode(n) })
	}
	p.mu.Lock()
	p.desired = desired
	p.gen++
	gen := p.gen
	p.status.Generation, p.status.Endpoints, p.status.Nodes = gen, endpoints, len(desired)-endpoints
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return gen, errors.Join(errs...)
}

// Status returns a snapshot of the publisher's state.
func (p *Publisher) Status() PublisherStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// Run campaigns and, while leader, publishes, until ctx ends. Then it
// withdraws its candidacy (a standby takes over at once) and stops keeping
// its lease alive without revoking it: the endpoints stay until a
// successor rewrites them or TTL passes. It returns nil when ctx ends.
func (p *Publisher) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		err := p.term(ctx)
		if ctx.Err() != nil {
			break
		}
		p.fail(err)
		p.opts.Log.WithError(err).WithField(fieldOrigin, p.origin.String()).Warn("publisher term ended")
		sleep(ctx, p.opts.Retry)
	}
	return nil
}

// fail records err as the last error.
func (p *Publisher) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status.LastError, p.status.LastErrorTime = err.Error(), time.Now()
}

// grant grants a lease of ttl within the request timeout and returns a
// session keeping it alive until ctx ends.
func (p *Publisher) grant(ctx context.Context, ttl time.Duration) (*concurrency.Session, error) {
	rctx, cancel := context.WithTimeout(ctx, p.c.timeout)
	resp, err := p.c.etcd.Grant(rctx, int64(ttl/time.Second))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("grant lease: %w", p.c.explain(err))
	}
	s, err := concurrency.NewSession(p.c.etcd, concurrency.WithLease(resp.ID),
		concurrency.WithTTL(int(ttl/time.Second)), concurrency.WithContext(ctx))
	if err != nil {
		p.revoke(resp.ID)
		return nil, fmt.Errorf("keep lease %x alive: %w", resp.ID, err)
	}
	return s, nil
}

// revoke revokes a lease within the request timeout, best effort: if it
// fails the lease expires by itself.
func (p *Publisher) revoke(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), p.c.timeout)
	defer cancel()
	_, _ = p.c.etcd.Revoke(ctx, id)
}

// term is one candidacy: campaign, then publish until something is lost.
func (p *Publisher) term(ctx context.Context) error {
	log := p.opts.Log.WithField(fieldOrigin, p.origin.String())
	p.mu.Lock()
	p.status.Terms++
	p.mu.Unlock()

	esess, err := p.grant(ctx, p.opts.ElectionTTL)
	if err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	// Withdrawing the candidacy lets a standby win at once.
	defer func() {
		esess.Orphan()
		p.revoke(esess.Lease())
	}()
	// NewElection adds the '/' after the prefix.
	election := concurrency.NewElection(esess, strings.TrimSuffix(p.c.layout.Leaders(p.origin), "/"))
	// A campaign that ends without winning resigns with no deadline of
	// its own (the client's context): with etcd gone it would block Run.
	// Leave it behind then; it ends when etcd answers or the client
	// closes, and the deferred revoke removes the candidacy anyway.
	campaigned := make(chan error, 1)
	go func() { campaigned <- election.Campaign(esess.Ctx(), p.opts.ID) }()
	select {
	case err := <-campaigned:
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("campaign: %w", p.c.explain(err))
		}
	case <-ctx.Done():
		return ctx.Err()
	case <-esess.Done():
		return fmt.Errorf("campaign: %w: candidacy %x", errLeaseLost, esess.Lease())
	}
	dsess, err := p.grant(ctx, p.opts.TTL)
	if err != nil {
		return err
	}
	// The endpoints outlive the term: a successor rewrites them under
	// its own lease, or they expire.
	defer dsess.Orphan()
	lease := fmt.Sprintf("%x", dsess.Lease())
	log.WithField(fieldLease, lease).WithField(fieldID, p.opts.ID).Info("publisher is the leader")
	p.mu.Lock()
	p.status.Leader, p.status.Lease = true, lease
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.status.Leader, p.status.Lease = false, ""
		p.mu.Unlock()
	}()

	w := &writer{
		c: p.c, prefix: p.c.layout.OriginPrefix(p.origin), lease: dsess.Lease(), maxOps: p.opts.MaxTxnOps,
		fence: clientv3.Compare(clientv3.CreateRevision(election.Key()), "=", election.Rev()),
	}
	for {
		// A lost lease ends the term before anything else is tried.
		select {
		case <-esess.Done():
			return fmt.Errorf("%w: candidacy %x", errLeaseLost, esess.Lease())
		case <-dsess.Done():
			return fmt.Errorf("%w: endpoints' lease %s", errLeaseLost, lease)
		default:
		}
		// This pass takes in every Set so far.
		select {
		case <-p.kick:
		default:
		}
		p.mu.Lock()
		desired, gen := p.desired, p.gen
		p.mu.Unlock()
		stats, err := w.reconcile(ctx, desired)
		switch {
		case errors.Is(err, ErrNotLeader):
			return err
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p.fail(err)
			log.WithError(err).Warn("publish failed")
			select {
			case <-time.After(p.opts.Retry):
				continue
			case <-ctx.Done():
				return ctx.Err()
			case <-esess.Done():
				continue
			case <-dsess.Done():
				continue
			}
		}
		if stats.Txns > 0 {
			log.WithField(fieldRevision, stats.Revision).Debugf("published %d puts, %d deletes in %d txns", stats.Puts, stats.Deletes, stats.Txns)
		}
		p.mu.Lock()
		p.status.Published, p.status.Last = gen, stats
		p.mu.Unlock()
		select {
		case <-p.kick:
		case <-ctx.Done():
			return ctx.Err()
		case <-esess.Done():
		case <-dsess.Done():
		}
	}
}

// writer writes one origin's keys for one term.
type writer struct {
	c      *Client
	prefix string
	lease  clientv3.LeaseID
	fence  clientv3.Cmp
	maxOps int
	// known is what etcd holds under prefix, by key: the value, and
	// whether it is under this term's lease. Nil: unknown, list first.
	known map[string]knownKey
}

type knownKey struct {
	value string
	mine  bool
}

// reconcile makes etcd hold exactly desired under w.prefix, all under
// w.lease: it deletes the keys that are not desired, then puts those that
// differ, in transactions of at most maxOps operations, each guarded by the
// fence. On an error the writer forgets what it knew and lists again next
// time.
func (w *writer) reconcile(ctx context.Context, desired map[string][]byte) (PublishStats, error) {
	began := time.Now()
	var st PublishStats
	if w.known == nil {
		known, err := w.list(ctx)
		if err != nil {
			return st, err
		}
		w.known, st.Full = known, true
	}
	var ops []clientv3.Op
	var sizes []int
	for _, key := range slices.Sorted(maps.Keys(w.known)) {
		if _, ok := desired[key]; !ok {
			ops, sizes = append(ops, clientv3.OpDelete(key)), append(sizes, len(key))
			st.Deletes++
		}
	}
	for _, key := range slices.Sorted(maps.Keys(desired)) {
		v := desired[key]
		if k, ok := w.known[key]; ok && k.mine && k.value == string(v) {
			continue
		}
		ops, sizes = append(ops, clientv3.OpPut(key, string(v), clientv3.WithLease(w.lease))), append(sizes, len(key)+len(v))
		st.Puts++
	}
	for len(ops) > 0 {
		n, bytes := 0, 0
		for n < len(ops) && n < w.maxOps && (n == 0 || bytes+sizes[n] <= maxTxnBytes) {
			bytes += sizes[n]
			n++
		}
		rev, err := w.txn(ctx, ops[:n])
		if err != nil {
			w.known = nil
			return st, err
		}
		for _, op := range ops[:n] {
			key := string(op.KeyBytes())
			if op.IsDelete() {
				delete(w.known, key)
			} else {
				w.known[key] = knownKey{value: string(op.ValueBytes()), mine: true}
			}
		}
		st.Txns++
		st.Bytes += bytes
		st.Revision = rev
		ops, sizes = ops[n:], sizes[n:]
	}
	st.Duration = time.Since(began)
	return st, nil
}

// txn commits ops if the fence holds, within the request timeout.
func (w *writer) txn(ctx context.Context, ops []clientv3.Op) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, w.c.timeout)
	defer cancel()
	resp, err := w.c.etcd.Txn(ctx).If(w.fence).Then(ops...).Commit()
	if err != nil {
		return 0, fmt.Errorf("write %d keys: %w", len(ops), w.c.explain(err))
	}
	if !resp.Succeeded {
		return 0, ErrNotLeader
	}
	return resp.Header.Revision, nil
}

// listPage is how many keys one request of a listing returns.
const listPage = 1000

// list returns what etcd holds under w.prefix.
func (w *writer) list(ctx context.Context) (map[string]knownKey, error) {
	known := map[string]knownKey{}
	_, err := listPrefix(ctx, w.c, w.prefix, func(kv kvPair) {
		known[kv.key] = knownKey{value: string(kv.value), mine: clientv3.LeaseID(kv.lease) == w.lease}
	})
	if err != nil {
		return nil, err
	}
	return known, nil
}

// kvPair is one key of a listing.
type kvPair struct {
	key   string
	value []byte
	lease int64
}

// listPrefix calls fn for every key under prefix, in pages of listPage
// keys, each request within the request timeout, all at the revision of the
// first page (a consistent snapshot), and returns that revision.
func listPrefix(ctx context.Context, c *Client, prefix string, fn func(kvPair)) (int64, error) {
	key, end := prefix, clientv3.GetPrefixRangeEnd(prefix)
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(listPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		rctx, cancel := context.WithTimeout(ctx, c.timeout)
		resp, err := c.etcd.Get(rctx, key, opts...)
		cancel()
		if err != nil {
			return 0, fmt.Errorf("list %s: %w", prefix, c.explain(err))
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			fn(kvPair{key: string(kv.Key), value: kv.Value, lease: kv.Lease})
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
