package endpoints

import (
	"cmp"
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/roost-net/roost/internal/k8swatch"
	"github.com/roost-net/roost/internal/policy"
)

// The resources WatchPolicies follows.
var (
	cnpResource  = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumnetworkpolicies"}
	ccnpResource = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumclusterwidenetworkpolicies"}
)

// crdRecheck is how often WatchPolicies looks again for a CRD that is not
// installed.
const crdRecheck = 30 * time.Second

// policiesRBAC says what access WatchPolicies needs.
const policiesRBAC = "the loader needs list and watch on ciliumnetworkpolicies and ciliumclusterwidenetworkpolicies (group cilium.io) in all namespaces"

// PoliciesState is what the API server says about the CiliumNetworkPolicy
// and CiliumClusterwideNetworkPolicy objects of the cluster.
type PoliciesState struct {
	// Synced is true in every state WatchPolicies reports; the zero
	// PoliciesState stands for "not known yet".
	Synced bool
	// Policies are the policies in force, sorted by Kind, then ID: of each
	// object, its current version when it parses, or else the last version
	// of it that did (since WatchPolicies started), if any. A policy is
	// never dropped because it was edited badly: dropping it could open
	// the endpoints it protects.
	Policies []policy.Policy
	// Errors are the objects whose current version does not parse, sorted
	// by Kind, Namespace and Name.
	Errors []ObjectError
	// Missing notes, sorted, the resources whose CRD is not installed, e.g.
	// "ciliumnetworkpolicies.cilium.io: CRD not installed (roostctl crds |
	// kubectl apply -f -)". Such a resource has no policies, unless its CRD
	// disappeared while watched: then the policies last seen stay until it
	// is back.
	Missing []string
}

// ObjectError is a policy object that does not parse.
type ObjectError struct {
	// Kind is policy.KindCNP or policy.KindCCNP; Namespace is empty for
	// the latter.
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Error is policy.ParseObject's error: one line per problem, each
	// "<Kind> <namespace/name>: <field path>: <message>".
	Error string `json:"error"`
}

// Equal reports whether s and o report the same thing. Nil and empty
// slices are equal.
func (s PoliciesState) Equal(o PoliciesState) bool {
	return s.Synced == o.Synced && slices.Equal(s.Missing, o.Missing) && slices.Equal(s.Errors, o.Errors) &&
		slices.EqualFunc(s.Policies, o.Policies, func(a, b policy.Policy) bool { return reflect.DeepEqual(a, b) })
}

// WatchPolicies follows the CiliumNetworkPolicy (ciliumnetworkpolicies.cilium.io/v2,
// in every namespace) and CiliumClusterwideNetworkPolicy
// (ciliumclusterwidenetworkpolicies.cilium.io/v2) objects of the cluster
// through dyn, parses each with policy.ParseObject, and calls fn with the
// state they stand for: first once both resources have synced, then after
// every add, update or delete that changes the state. fn runs on the
// goroutine that called WatchPolicies, one call at a time; while fn runs,
// further changes are coalesced into one report. resync is the informers'
// resync period (0 for none).
//
// A resource whose CRD is not installed (its list answers NotFound) counts
// as synced, with a note in Missing; WatchPolicies looks for it again every
// 30 seconds and follows it once it exists.
//
// WatchPolicies blocks until ctx is done and then returns nil, provided both
// resources had synced. If ctx ends first, it returns an error saying so,
// with the last list or watch error. A list or watch that the API server
// refuses as Forbidden or Unauthorized before the first sync ends
// WatchPolicies at once with that error (wrapped, so apierrors.IsForbidden
// works). Other errors are retried by client-go, which logs them through
// klog.
func WatchPolicies(ctx context.Context, dyn dynamic.Interface, resync time.Duration, fn func(PoliciesState)) error {
	return watchPolicies(ctx, dyn, resync, crdRecheck, fn)
}

// watchPolicies is WatchPolicies, looking for a missing CRD every recheck.
func watchPolicies(ctx context.Context, dyn dynamic.Interface, resync, recheck time.Duration, fn func(PoliciesState)) error {
	const what = "watch policies"
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	guard := k8swatch.NewSyncGuard(cancel)
	dirty := newWakeup()
	var (
		failOnce sync.Once
		failed   error
	)
	fail := func(err error) {
		failOnce.Do(func() {
			failed = fmt.Errorf("%s: %w", what, err)
			cancel()
		})
	}
	ws := []*policyWatch{
		newPolicyWatch(policy.KindCNP, cnpResource, dyn, resync, guard, dirty),
		newPolicyWatch(policy.KindCCNP, ccnpResource, dyn, resync, guard, dirty),
	}
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() {
			if err := w.run(ctx, recheck); err != nil {
				fail(err)
			}
		})
	}
	defer func() {
		cancel()
		wg.Wait()
	}()

	for !allReady(ws) {
		select {
		case <-ctx.Done():
			cancel()
			wg.Wait()
			if failed != nil {
				return failed
			}
			return guard.Err(ctx, what, policiesRBAC)
		case <-dirty:
		}
	}
	guard.Synced()

	var last PoliciesState
	for first := true; ; first = false {
		s := policiesStateOf(ws)
		if first || !s.Equal(last) {
			last = s
			fn(s)
		}
		select {
		case <-ctx.Done():
			cancel()
			wg.Wait()
			return failed
		case <-dirty:
		}
	}
}

// allReady reports whether every resource has synced or is known to be
// missing.
func allReady(ws []*policyWatch) bool {
	for _, w := range ws {
		w.mu.Lock()
		ready := w.ready
		w.mu.Unlock()
		if !ready {
			return false
		}
	}
	return true
}

// policiesStateOf returns the state of the resources.
func policiesStateOf(ws []*policyWatch) PoliciesState {
	s := PoliciesState{Synced: true}
	for _, w := range ws {
		w.mu.Lock()
		for _, p := range w.objs.good {
			s.Policies = append(s.Policies, p)
		}
		for _, e := range w.objs.bad {
			s.Errors = append(s.Errors, e)
		}
		if w.missing {
			s.Missing = append(s.Missing, w.gvr.GroupResource().String()+": CRD not installed (roostctl crds | kubectl apply -f -)")
		}
		w.mu.Unlock()
	}
	slices.SortFunc(s.Policies, func(a, b policy.Policy) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.ID(), b.ID()))
	})
	slices.SortFunc(s.Errors, func(a, b ObjectError) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	slices.Sort(s.Missing)
	return s
}

// policyWatch follows one of the two policy resources for WatchPolicies,
// through one informer after another: a resource whose list answers
// NotFound is watched again by a new informer.
type policyWatch struct {
	kind   string
	gvr    schema.GroupVersionResource
	dyn    dynamic.Interface
	resync time.Duration
	guard  *k8swatch.SyncGuard
	dirty  wakeup

	mu sync.Mutex
	// ready is set once an informer has synced, or a list has said the
	// resource does not exist.
	ready bool
	// missing is set when the last list said the resource does not exist.
	missing bool
	// objs are the objects of the last informer that synced.
	objs *policyObjects
}

func newPolicyWatch(kind string, gvr schema.GroupVersionResource, dyn dynamic.Interface, resync time.Duration,
	guard *k8swatch.SyncGuard, dirty wakeup) *policyWatch {
	return &policyWatch{kind: kind, gvr: gvr, dyn: dyn, resync: resync, guard: guard, dirty: dirty, objs: newPolicyObjects()}
}

// policyObjects are what one informer has seen of the objects of a
// resource, by key ("namespace/name", or "name" for a cluster-scoped
// object).
type policyObjects struct {
	// good holds the last version of each object that parsed.
	good map[string]policy.Policy
	// bad holds the objects whose current version does not parse.
	bad map[string]ObjectError
	// version holds the resourceVersion of each object last parsed.
	version map[string]string
}

func newPolicyObjects() *policyObjects {
	return &policyObjects{good: map[string]policy.Policy{}, bad: map[string]ObjectError{}, version: map[string]string{}}
}

// run follows the resource until ctx is done. It returns an error only when
// an informer cannot be set up.
func (w *policyWatch) run(ctx context.Context, recheck time.Duration) error {
	for {
		missing, err := w.follow(ctx)
		if err != nil || !missing {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(recheck):
		}
	}
}

// follow runs one informer over the resource until ctx is done or a list
// says the resource does not exist; then it returns missing true. Once the
// informer has synced, its objects replace the previous informer's.
func (w *policyWatch) follow(ctx context.Context) (missing bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var notFound atomic.Bool
	inf := dynamicinformer.NewFilteredDynamicInformer(w.dyn, w.gvr, metav1.NamespaceAll, w.resync, cache.Indexers{}, nil).Informer()
	err = inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		if apierrors.IsNotFound(err) {
			notFound.Store(true)
			cancel()
			return
		}
		w.guard.WatchError(ctx, r, err)
	})
	if err != nil {
		return false, err
	}
	if err := inf.SetTransform(w.strip); err != nil {
		return false, err
	}
	objs := newPolicyObjects()
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.update(objs, obj) },
		UpdateFunc: func(_, obj any) { w.update(objs, obj) },
		DeleteFunc: func(obj any) { w.remove(objs, obj) },
	})
	if err != nil {
		return false, err
	}

	var wg sync.WaitGroup
	wg.Go(func() { inf.RunWithContext(ctx) })
	if cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		w.mu.Lock()
		objs.keepGood(w.objs)
		w.objs, w.ready, w.missing = objs, true, false
		w.mu.Unlock()
		w.dirty.poke()
	}
	<-ctx.Done()
	wg.Wait()
	if !notFound.Load() {
		return false, nil
	}
	w.mu.Lock()
	w.ready, w.missing = true, true
	w.mu.Unlock()
	w.dirty.poke()
	return true, nil
}

// keepGood copies from prev, the objects of an earlier informer, the last
// good version of each object whose current version is bad and that has no
// good version in o.
func (o *policyObjects) keepGood(prev *policyObjects) {
	for key := range o.bad {
		if _, ok := o.good[key]; ok {
			continue
		}
		if p, ok := prev.good[key]; ok {
			o.good[key] = p
		}
	}
}

// update parses an added or updated object into o.
func (w *policyWatch) update(o *policyObjects, obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	key, err := cache.MetaNamespaceKeyFunc(u)
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	rv := u.GetResourceVersion()
	if v, seen := o.version[key]; seen && rv != "" && v == rv {
		return // a resync
	}
	o.version[key] = rv
	pol, err := w.parse(u, key)
	if err != nil {
		o.bad[key] = ObjectError{Kind: w.kind, Namespace: u.GetNamespace(), Name: u.GetName(), Error: err.Error()}
	} else {
		o.good[key] = pol
		delete(o.bad, key)
	}
	w.dirty.poke()
}

// remove forgets a deleted object.
func (w *policyWatch) remove(o *policyObjects, obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(o.good, key)
	delete(o.bad, key)
	delete(o.version, key)
	w.dirty.poke()
}

// parse parses one object, its key naming it in errors.
func (w *policyWatch) parse(u *unstructured.Unstructured, key string) (policy.Policy, error) {
	source := w.kind + " " + key
	data, err := u.MarshalJSON()
	if err != nil {
		return policy.Policy{}, fmt.Errorf("%s: %w", source, err)
	}
	return policy.ParseObject(data, source)
}

// strip keeps what parse reads of an object: apiVersion and kind (set when
// the server left them out), metadata.name, namespace and labels, spec and
// specs; the informer needs uid and resourceVersion too. Annotations (with
// kubectl's copy of the last applied object), managedFields and status are
// dropped, to keep the informer's cache small. It returns a new object
// sharing spec and specs with obj.
func (w *policyWatch) strip(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	out := &unstructured.Unstructured{Object: map[string]any{}}
	out.SetAPIVersion(cmp.Or(u.GetAPIVersion(), w.gvr.GroupVersion().String()))
	out.SetKind(cmp.Or(u.GetKind(), w.kind))
	out.SetName(u.GetName())
	if ns := u.GetNamespace(); ns != "" {
		out.SetNamespace(ns)
	}
	out.SetUID(u.GetUID())
	if rv := u.GetResourceVersion(); rv != "" {
		out.SetResourceVersion(rv)
	}
	if l := u.GetLabels(); l != nil {
		out.SetLabels(l)
	}
	for _, f := range []string{"spec", "specs"} {
		if v, ok := u.Object[f]; ok {
			out.Object[f] = v
		}
	}
	return out, nil
}
