package syncd

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"
)

// Errors of the registry, for the API to answer with.
var (
	// ErrNotFound means no workload of that namespace and name is
	// registered (it expired, was deleted, or the syncer restarted).
	ErrNotFound = errors.New("no such workload")
	// ErrFromFile means the workload comes from the workloads file: only
	// an edit of the file changes it.
	ErrFromFile = errors.New("the workload comes from the workloads file")
	// ErrAddressInUse means another workload holds an address.
	ErrAddressInUse = errors.New("address in use")
	// ErrTooMany means the registry holds MaxAPIWorkloads API workloads.
	ErrTooMany = errors.New("too many workloads")
)

// MaxAPIWorkloads bounds the workloads the API may register.
const MaxAPIWorkloads = 10000

// registry holds the workloads of both sources. A name (namespace/name) and
// an address belong to one workload; the file's workloads win over the
// API's. It is not safe for concurrent use; every method that changes it
// takes the time from its caller.
type registry struct {
	// timeout is how long an API workload lives after its last
	// registration or heartbeat.
	timeout time.Duration
	file    map[string]Workload  // by ID
	api     map[string]*apiEntry // by ID
	owners  map[netip.Addr]string
}

// apiEntry is a workload registered through the API.
type apiEntry struct {
	w    Workload
	seen time.Time // the last registration or heartbeat
}

// entry is a workload with its source and, for one of the API, when it was
// last heard from and when it expires.
type entry struct {
	Workload
	Source   string
	LastSeen time.Time // zero for the file's
	Expires  time.Time // zero for the file's
}

func newRegistry(timeout time.Duration) *registry {
	return &registry{timeout: timeout, file: map[string]Workload{}, api: map[string]*apiEntry{}, owners: map[netip.Addr]string{}}
}

// setFile replaces the file's workloads with ws (valid and consistent, as
// ParseFile returns them). It removes and returns the API workloads whose
// name or an address a file workload takes, and reports whether anything
// changed.
func (r *registry) setFile(ws []Workload) (displaced []Workload, changed bool) {
	file := make(map[string]Workload, len(ws))
	taken := map[netip.Addr]bool{}
	for _, w := range ws {
		file[w.ID()] = w
		for _, a := range w.IPs {
			taken[a] = true
		}
	}
	changed = !maps.EqualFunc(r.file, file, Workload.equal)
	for _, id := range slices.Sorted(maps.Keys(r.api)) {
		e := r.api[id]
		_, named := file[id]
		if named || slices.ContainsFunc(e.w.IPs, func(a netip.Addr) bool { return taken[a] }) {
			displaced = append(displaced, e.w)
			delete(r.api, id)
			changed = true
		}
	}
	r.file = file
	r.index()
	return displaced, changed
}

// index rebuilds the owners of addresses.
func (r *registry) index() {
	clear(r.owners)
	for id, w := range r.file {
		for _, a := range w.IPs {
			r.owners[a] = id
		}
	}
	for id, e := range r.api {
		for _, a := range e.w.IPs {
			r.owners[a] = id
		}
	}
}

// put registers w through the API, or updates it, and starts its heartbeat
// clock at now. It reports whether w is new and whether its addresses or
// labels changed (a new workload changes them). Errors: ErrFromFile,
// ErrAddressInUse, ErrTooMany, each wrapped with what is in the way; on an
// error nothing changes.
func (r *registry) put(w Workload, now time.Time) (created, changed bool, err error) {
	id := w.ID()
	if _, ok := r.file[id]; ok {
		return false, false, fmt.Errorf("%s: %w; edit the file to change it", id, ErrFromFile)
	}
	for _, a := range w.IPs {
		if owner, ok := r.owners[a]; ok && owner != id {
			src := SourceAPI
			if _, ok := r.file[owner]; ok {
				src = SourceFile
			}
			return false, false, fmt.Errorf("%w: %s is an address of workload %s (%s)", ErrAddressInUse, a, owner, src)
		}
	}
	old, ok := r.api[id]
	if !ok && len(r.api) >= MaxAPIWorkloads {
		return false, false, fmt.Errorf("%w: %d workloads are registered through the API, the most one syncer holds", ErrTooMany, len(r.api))
	}
	if ok {
		for _, a := range old.w.IPs {
			delete(r.owners, a)
		}
	}
	for _, a := range w.IPs {
		r.owners[a] = id
	}
	r.api[id] = &apiEntry{w: w, seen: now}
	return !ok, !ok || !old.w.equal(w), nil
}

// heartbeat restarts the heartbeat clock of the API workload id at now.
// Errors: ErrNotFound, ErrFromFile.
func (r *registry) heartbeat(id string, now time.Time) (entry, error) {
	e, err := r.apiEntry(id)
	if err != nil {
		return entry{}, err
	}
	e.seen = now
	return r.entryOf(e), nil
}

// remove removes the API workload id. Errors: ErrNotFound, ErrFromFile.
func (r *registry) remove(id string) (Workload, error) {
	e, err := r.apiEntry(id)
	if err != nil {
		return Workload{}, err
	}
	delete(r.api, id)
	for _, a := range e.w.IPs {
		delete(r.owners, a)
	}
	return e.w, nil
}

// apiEntry returns the API workload id. Errors: ErrNotFound, ErrFromFile.
func (r *registry) apiEntry(id string) (*apiEntry, error) {
	if _, ok := r.file[id]; ok {
		return nil, fmt.Errorf("%s: %w; edit the file to remove it", id, ErrFromFile)
	}
	e, ok := r.api[id]
	if !ok {
		return nil, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	return e, nil
}

// expire removes and returns the API workloads last heard from timeout or
// longer before now, sorted by ID.
func (r *registry) expire(now time.Time) []entry {
	var out []entry
	for _, id := range slices.Sorted(maps.Keys(r.api)) {
		e := r.api[id]
		if now.Sub(e.seen) < r.timeout {
			continue
		}
		out = append(out, r.entryOf(e))
		delete(r.api, id)
		for _, a := range e.w.IPs {
			delete(r.owners, a)
		}
	}
	return out
}

// get returns the workload id of either source.
func (r *registry) get(id string) (entry, bool) {
	if w, ok := r.file[id]; ok {
		return entry{Workload: w, Source: SourceFile}, true
	}
	if e, ok := r.api[id]; ok {
		return r.entryOf(e), true
	}
	return entry{}, false
}

func (r *registry) entryOf(e *apiEntry) entry {
	return entry{Workload: e.w, Source: SourceAPI, LastSeen: e.seen, Expires: e.seen.Add(r.timeout)}
}

// list returns every workload, sorted by namespace, then name.
func (r *registry) list() []entry {
	out := make([]entry, 0, len(r.file)+len(r.api))
	for _, w := range r.file {
		out = append(out, entry{Workload: w, Source: SourceFile})
	}
	for _, e := range r.api {
		out = append(out, r.entryOf(e))
	}
	slices.SortFunc(out, func(a, b entry) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// counts returns how many workloads each source has.
func (r *registry) counts() (file, api int) { return len(r.file), len(r.api) }
