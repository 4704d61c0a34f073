package endpoints

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/roost-net/roost/internal/policy"
)

// testRecheck is how often the unit tests' watches look again for a
// missing CRD.
const testRecheck = 10 * time.Millisecond

// Specs of policy objects, as JSON.
const (
	// dbSpec lets app=web reach app=db; dbSpec2 lets app=api reach it.
	dbSpec  = `{"endpointSelector": {"matchLabels": {"app": "db"}}, "ingress": [{"fromEndpoints": [{"matchLabels": {"app": "web"}}]}]}`
	dbSpec2 = `{"endpointSelector": {"matchLabels": {"app": "db"}}, "ingress": [{"fromEndpoints": [{"matchLabels": {"app": "api"}}]}]}`
	// l7Spec has L7 rules, which roost refuses.
	l7Spec = `{"endpointSelector": {}, "ingress": [{"toPorts": [{"ports": [{"port": "80"}], "rules": {"http": [{}]}}]}]}`
	// hostSpec lets the host reach every endpoint.
	hostSpec = `{"endpointSelector": {}, "ingress": [{"fromEntities": ["host"]}]}`
)

// objectText renders what the watch must make of an object, as
// policiesText does: the policy it parses to, or "ERR " and the error. The
// expectations of the tests are built with it, so that they do not depend
// on how package policy formats selectors and errors.
func objectText(u *unstructured.Unstructured) string {
	key := u.GetName()
	if ns := u.GetNamespace(); ns != "" {
		key = ns + "/" + key
	}
	data, err := u.MarshalJSON()
	if err != nil {
		panic(err)
	}
	p, err := policy.ParseObject(data, u.GetKind()+" "+key)
	if err != nil {
		return "ERR " + strings.ReplaceAll(err.Error(), "\n", "; ")
	}
	return apiPolicyText(p)
}

// texts joins the texts of a report.
func texts(parts ...string) string { return strings.Join(parts, " | ") }

// policyObject returns a policy object as the API server serves it: kind
// policy.KindCNP (in namespace ns) or policy.KindCCNP (ns empty), with
// spec, in JSON.
func policyObject(kind, ns, name, spec string) *unstructured.Unstructured {
	var s map[string]any
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		panic(err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": s}}
	u.SetAPIVersion(policy.APIVersion)
	u.SetKind(kind)
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

func cnpObject(ns, name, spec string) *unstructured.Unstructured {
	return policyObject(policy.KindCNP, ns, name, spec)
}

func ccnpObject(name, spec string) *unstructured.Unstructured {
	return policyObject(policy.KindCCNP, "", name, spec)
}

// policiesText renders a state: one apiPolicyText per policy, "ERR error"
// per bad object, "MISSING note" per missing CRD, joined by " | ", or
// "none".
func policiesText(s PoliciesState) string {
	if !s.Synced {
		return "unsynced"
	}
	var parts []string
	for _, p := range s.Policies {
		parts = append(parts, apiPolicyText(p))
	}
	for _, e := range s.Errors {
		parts = append(parts, "ERR "+strings.ReplaceAll(e.Error, "\n", "; "))
	}
	for _, m := range s.Missing {
		parts = append(parts, "MISSING "+m)
	}
	if len(parts) == 0 {
		return "none"
	}
	return texts(parts...)
}

// apiPolicyText renders a policy: "KIND id subject <- peers" of its first
// rule and that rule's first ingress rule.
func apiPolicyText(p policy.Policy) string {
	short := map[string]string{policy.KindCNP: "CNP", policy.KindCCNP: "CCNP"}[p.Kind]
	text := short + " " + p.ID()
	if len(p.Rules) > 0 {
		r := p.Rules[0]
		text += " " + r.Subject.String()
		if len(r.Ingress) > 0 {
			var from []string
			for _, sel := range r.Ingress[0].Endpoints {
				from = append(from, sel.String())
			}
			for _, e := range r.Ingress[0].Entities {
				from = append(from, string(e))
			}
			text += " <- " + strings.Join(from, ",")
		}
	}
	return text
}

// newFakeDynamic returns a fake dynamic client that knows both policy
// resources.
func newFakeDynamic(objects ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		cnpResource:  policy.KindCNP + "List",
		ccnpResource: policy.KindCCNP + "List",
	}, objects...)
}

func watchPoliciesText(dyn dynamic.Interface) func(context.Context, func(string)) error {
	return func(ctx context.Context, emit func(string)) error {
		return watchPolicies(ctx, dyn, 0, testRecheck, func(s PoliciesState) { emit(policiesText(s)) })
	}
}

func createPolicy(u *unstructured.Unstructured) func(context.Context, dynamic.Interface) error {
	return func(ctx context.Context, dyn dynamic.Interface) error {
		if _, err := policyClient(dyn, u.GetKind(), u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
		return nil
	}
}

// replacePolicy replaces the spec of a policy object: a get, then an
// update.
func replacePolicy(u *unstructured.Unstructured) func(context.Context, dynamic.Interface) error {
	return func(ctx context.Context, dyn dynamic.Interface) error {
		c := policyClient(dyn, u.GetKind(), u.GetNamespace())
		cur, err := c.Get(ctx, u.GetName(), metav1.GetOptions{})
		if err == nil {
			cur.Object["spec"] = u.Object["spec"]
			cur.SetLabels(u.GetLabels())
			_, err = c.Update(ctx, cur, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("update %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
		return nil
	}
}

func deletePolicy(kind, ns, name string) func(context.Context, dynamic.Interface) error {
	return func(ctx context.Context, dyn dynamic.Interface) error {
		if err := policyClient(dyn, kind, ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			return fmt.Errorf("delete %s %s/%s: %w", kind, ns, name, err)
		}
		return nil
	}
}

// policyClient returns the client of the resource of kind, in namespace ns
// for a CiliumNetworkPolicy.
func policyClient(dyn dynamic.Interface, kind, ns string) dynamic.ResourceInterface {
	if kind == policy.KindCCNP {
		return dyn.Resource(ccnpResource)
	}
	return dyn.Resource(cnpResource).Namespace(ns)
}

// missingCRD makes the fake's lists and watches of resource answer
// NotFound, as the API server does when the resource's CRD is not
// installed, until install is called.
func missingCRD(f *k8stesting.Fake, resource string) (install func()) {
	var installed atomic.Bool
	notFound := apierrors.NewNotFound(schema.GroupResource{Group: "cilium.io", Resource: resource}, "")
	f.PrependReactor("list", resource, func(k8stesting.Action) (bool, runtime.Object, error) {
		if installed.Load() {
			return false, nil, nil
		}
		return true, nil, notFound
	})
	f.PrependWatchReactor(resource, func(k8stesting.Action) (bool, apiwatch.Interface, error) {
		if installed.Load() {
			return false, nil, nil
		}
		return true, nil, notFound
	})
	return func() { installed.Store(true) }
}

const (
	missingCNP  = "MISSING ciliumnetworkpolicies.cilium.io: CRD not installed (roostctl crds | kubectl apply -f -)"
	missingCCNP = "MISSING ciliumclusterwidenetworkpolicies.cilium.io: CRD not installed (roostctl crds | kubectl apply -f -)"
)

func TestWatchPolicies(t *testing.T) {
	var (
		db     = objectText(cnpObject("prod", "db", dbSpec))
		db2    = objectText(cnpObject("prod", "db", dbSpec2))
		dbBad  = objectText(cnpObject("prod", "db", l7Spec))
		devDB  = objectText(cnpObject("dev", "db", dbSpec))
		web    = objectText(cnpObject("prod", "web", hostSpec))
		webBad = objectText(cnpObject("prod", "web", l7Spec))
		host   = objectText(ccnpObject("host", hostSpec))
		l7     = objectText(ccnpObject("l7", l7Spec))
	)
	tests := []struct {
		name    string
		objects []runtime.Object
		first   string
		steps   []kubeStep[dynamic.Interface]
	}{
		{
			name:  "nothing at start",
			first: "none",
			steps: []kubeStep[dynamic.Interface]{
				{name: "create cnp", do: createPolicy(cnpObject("prod", "db", dbSpec)), want: db},
				{name: "create ccnp", do: createPolicy(ccnpObject("host", hostSpec)), want: texts(host, db)},
			},
		},
		{
			name: "policies at start, sorted by kind then id",
			objects: []runtime.Object{
				cnpObject("prod", "db", dbSpec),
				cnpObject("dev", "db", dbSpec),
				ccnpObject("host", hostSpec),
			},
			first: texts(host, devDB, db),
		},
		{
			name:    "a bad object is reported, the good ones kept",
			objects: []runtime.Object{cnpObject("prod", "db", dbSpec), cnpObject("prod", "web", l7Spec), ccnpObject("l7", l7Spec)},
			first:   texts(db, l7, webBad),
			steps: []kubeStep[dynamic.Interface]{
				{name: "fixed", do: replacePolicy(cnpObject("prod", "web", hostSpec)), want: texts(db, web, l7)},
				{name: "bad one deleted", do: deletePolicy(policy.KindCCNP, "", "l7"), want: texts(db, web)},
			},
		},
		{
			name:    "an edit to a bad version keeps the last good one",
			objects: []runtime.Object{cnpObject("prod", "db", dbSpec)},
			first:   db,
			steps: []kubeStep[dynamic.Interface]{
				{name: "edited badly", do: replacePolicy(cnpObject("prod", "db", l7Spec)), want: texts(db, dbBad)},
				{name: "edited well", do: replacePolicy(cnpObject("prod", "db", dbSpec2)), want: db2},
				{name: "edited badly again", do: replacePolicy(cnpObject("prod", "db", l7Spec)), want: texts(db2, dbBad)},
				{name: "deleted", do: deletePolicy(policy.KindCNP, "prod", "db"), want: "none"},
			},
		},
		{
			name:    "a bad new object has no last good version",
			objects: []runtime.Object{cnpObject("prod", "db", dbSpec)},
			first:   db,
			steps: []kubeStep[dynamic.Interface]{
				{name: "created badly", do: createPolicy(ccnpObject("l7", l7Spec)), want: texts(db, l7)},
				{name: "deleted", do: deletePolicy(policy.KindCCNP, "", "l7"), want: db},
			},
		},
		{
			name:    "changes that do not change a policy are not reported",
			objects: []runtime.Object{cnpObject("prod", "db", dbSpec), cnpObject("prod", "web", l7Spec)},
			first:   texts(db, webBad),
			steps: []kubeStep[dynamic.Interface]{{
				name: "labels and same specs, then a new spec",
				do: steps(
					replacePolicy(func() *unstructured.Unstructured {
						u := cnpObject("prod", "db", dbSpec)
						u.SetLabels(map[string]string{"touched": "1"})
						return u
					}()),
					replacePolicy(cnpObject("prod", "web", l7Spec)),
					replacePolicy(cnpObject("prod", "db", dbSpec2)),
				),
				// Had anything before the last update been
				// reported, it would come first.
				want: texts(db2, webBad),
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dyn := newFakeDynamic(tt.objects...)
			w := startTextWatch(t, "WatchPolicies", watchPoliciesText(dyn))
			if got := w.next(t); got != tt.first {
				t.Fatalf("first report = %q\nwant %q", got, tt.first)
			}
			runSteps(t, dynamic.Interface(dyn), w, tt.steps)
		})
	}
}

// TestWatchPoliciesObjectError checks what an ObjectError says: the object,
// and the field at fault.
func TestWatchPoliciesObjectError(t *testing.T) {
	dyn := newFakeDynamic(cnpObject("prod", "web", l7Spec))
	ctx, cancel := context.WithTimeout(t.Context(), reportWait)
	defer cancel()
	var got PoliciesState
	err := watchPolicies(ctx, dyn, 0, testRecheck, func(s PoliciesState) {
		got = s
		cancel()
	})
	if err != nil {
		t.Fatalf("WatchPolicies = %v", err)
	}
	if len(got.Errors) != 1 || len(got.Policies) != 0 {
		t.Fatalf("state %+v, want one error and no policy", got)
	}
	e := got.Errors[0]
	const where = "CiliumNetworkPolicy prod/web: spec.ingress[0].toPorts[0].rules: "
	if e.Kind != policy.KindCNP || e.Namespace != "prod" || e.Name != "web" || !strings.HasPrefix(e.Error, where) {
		t.Errorf("error %+v, want CiliumNetworkPolicy prod/web with an error starting %q", e, where)
	}
	js, _ := json.Marshal(e)
	if want := `{"kind":"CiliumNetworkPolicy","namespace":"prod","name":"web","error":`; !strings.HasPrefix(string(js), want) {
		t.Errorf("JSON %s, want it to start %s", js, want)
	}
}

func TestWatchPoliciesMissingCRDs(t *testing.T) {
	host := objectText(ccnpObject("host", hostSpec))
	dyn := newFakeDynamic()
	installCNP := missingCRD(&dyn.Fake, cnpResource.Resource)
	installCCNP := missingCRD(&dyn.Fake, ccnpResource.Resource)
	w := startTextWatch(t, "WatchPolicies", watchPoliciesText(dyn))
	if got, want := w.next(t), texts(missingCCNP, missingCNP); got != want {
		t.Fatalf("first report = %q\nwant %q", got, want)
	}
	// Created before the CRD is "installed", so that the informer's first
	// list, and so its first report, has it.
	if err := createPolicy(ccnpObject("host", hostSpec))(t.Context(), dyn); err != nil {
		t.Fatal(err)
	}
	installCCNP()
	if got, want := w.next(t), texts(host, missingCNP); got != want {
		t.Fatalf("after the CCNP CRD: report = %q\nwant %q", got, want)
	}
	installCNP()
	if got, want := w.next(t), host; got != want {
		t.Fatalf("after the CNP CRD: report = %q\nwant %q", got, want)
	}
	if err := createPolicy(cnpObject("prod", "web", l7Spec))(t.Context(), dyn); err != nil {
		t.Fatal(err)
	}
	if got, want := w.next(t), texts(host, objectText(cnpObject("prod", "web", l7Spec))); got != want {
		t.Fatalf("after a CNP: report = %q\nwant %q", got, want)
	}
	if err := w.stop(t); err != nil {
		t.Errorf("WatchPolicies returned %v after cancel, want nil", err)
	}
}

// TestWatchPoliciesCRDGoneAndBack checks that when a relist says the CRD is
// gone, the policies seen stay (a NotFound can be transient: an API server
// that starts serves custom resources a little after the rest), and that
// the informer that follows the CRD when it is back keeps the last good
// version of a policy edited badly meanwhile.
func TestWatchPoliciesCRDGoneAndBack(t *testing.T) {
	var (
		db    = objectText(cnpObject("prod", "db", dbSpec))
		dbBad = objectText(cnpObject("prod", "db", l7Spec))
		gone  = objectText(cnpObject("prod", "gone", dbSpec))
	)
	dyn := newFakeDynamic(cnpObject("prod", "db", dbSpec), cnpObject("prod", "gone", dbSpec))
	// The first watch of the CNPs is this one, which the test ends.
	first := apiwatch.NewRaceFreeFake()
	var once sync.Once
	dyn.PrependWatchReactor(cnpResource.Resource, func(k8stesting.Action) (handled bool, w apiwatch.Interface, err error) {
		once.Do(func() { handled, w = true, first })
		return handled, w, nil
	})
	w := startTextWatch(t, "WatchPolicies", watchPoliciesText(dyn))
	if got, want := w.next(t), texts(db, gone); got != want {
		t.Fatalf("first report = %q\nwant %q", got, want)
	}

	// While the CRD is "gone", one policy is edited badly, one deleted.
	install := missingCRD(&dyn.Fake, cnpResource.Resource)
	if err := replacePolicy(cnpObject("prod", "db", l7Spec))(t.Context(), dyn); err != nil {
		t.Fatal(err)
	}
	if err := deletePolicy(policy.KindCNP, "prod", "gone")(t.Context(), dyn); err != nil {
		t.Fatal(err)
	}
	first.Stop()
	if got, want := w.next(t), texts(db, gone, missingCNP); got != want {
		t.Fatalf("CRD gone: report = %q\nwant %q", got, want)
	}
	install()
	if got, want := w.next(t), texts(db, dbBad); got != want {
		t.Fatalf("CRD back: report = %q\nwant %q", got, want)
	}
	if err := w.stop(t); err != nil {
		t.Errorf("WatchPolicies returned %v after cancel, want nil", err)
	}
}

func TestWatchPoliciesBeforeSync(t *testing.T) {
	for _, resource := range []string{cnpResource.Resource, ccnpResource.Resource} {
		t.Run(resource, func(t *testing.T) {
			testBeforeSync(t, func() fakeRig {
				dyn := newFakeDynamic(cnpObject("prod", "db", hostSpec))
				return fakeRig{
					fake: &dyn.Fake, resource: resource,
					what: "watch policies", rbac: "list and watch on ciliumnetworkpolicies and ciliumclusterwidenetworkpolicies (group cilium.io)",
					first: objectText(cnpObject("prod", "db", hostSpec)),
					watch: watchPoliciesText(dyn),
				}
			})
		})
	}
}

// TestWatchPoliciesForbiddenWithMissingCRD checks that a resource that is
// missing does not hide that the other is forbidden.
func TestWatchPoliciesForbiddenWithMissingCRD(t *testing.T) {
	dyn := newFakeDynamic()
	missingCRD(&dyn.Fake, ccnpResource.Resource)
	dyn.PrependReactor("list", cnpResource.Resource, func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(cnpResource.GroupResource(), "", errors.New("RBAC says no"))
	})
	w := startTextWatch(t, "WatchPolicies", watchPoliciesText(dyn))
	if err := w.failure(t); !apierrors.IsForbidden(err) {
		t.Errorf("WatchPolicies = %v, want Forbidden", err)
	}
}

func TestPoliciesStateEqual(t *testing.T) {
	parse := func(spec string) policy.Policy {
		data, _ := cnpObject("prod", "db", spec).MarshalJSON()
		p, err := policy.ParseObject(data, "test")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	state := func(pols ...policy.Policy) PoliciesState { return PoliciesState{Synced: true, Policies: pols} }
	withErr := func(s PoliciesState, msg string) PoliciesState {
		s.Errors = []ObjectError{{Kind: policy.KindCNP, Namespace: "prod", Name: "x", Error: msg}}
		return s
	}
	withMissing := func(s PoliciesState) PoliciesState { s.Missing = []string{"x"}; return s }
	tests := []struct {
		name string
		a, b PoliciesState
		want bool
	}{
		{name: "zero", want: true},
		{name: "synced differs", a: state(), want: false},
		{name: "nil and empty", a: state(), b: PoliciesState{Synced: true, Policies: []policy.Policy{}, Errors: []ObjectError{}}, want: true},
		{name: "same policies parsed twice", a: state(parse(dbSpec)), b: state(parse(dbSpec)), want: true},
		{name: "policies differ", a: state(parse(dbSpec)), b: state(parse(dbSpec2)), want: false},
		{name: "error differs", a: withErr(state(), "a"), b: withErr(state(), "b"), want: false},
		{name: "same error", a: withErr(state(), "a"), b: withErr(state(), "a"), want: true},
		{name: "missing differs", a: withMissing(state()), b: state(), want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Equal(tt.b); got != tt.want {
				t.Errorf("Equal = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStripPolicyKeepsThePolicy(t *testing.T) {
	full := cnpObject("prod", "db", dbSpec)
	full.SetAnnotations(map[string]string{"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 1000)})
	full.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: "kubectl"}})
	full.SetUID("1234")
	full.SetResourceVersion("42")
	full.Object["status"] = map[string]any{"nodes": map[string]any{"n1": map[string]any{"ok": true}}}
	w := newPolicyWatch(policy.KindCNP, cnpResource, nil, 0, nil, newWakeup())
	obj, err := w.strip(full)
	if err != nil {
		t.Fatal(err)
	}
	stripped := obj.(*unstructured.Unstructured)
	got, gerr := w.parse(stripped, "prod/db")
	want, werr := w.parse(full, "prod/db")
	if gerr != nil || werr != nil || policiesText(state1(got)) != policiesText(state1(want)) {
		t.Errorf("stripped object parses to %v, %v; the full one to %v, %v", got, gerr, want, werr)
	}
	if stripped.GetAnnotations() != nil || stripped.GetManagedFields() != nil || stripped.Object["status"] != nil {
		t.Errorf("strip kept fields it does not need: %v", stripped.Object)
	}
	if stripped.GetUID() != "1234" || stripped.GetResourceVersion() != "42" {
		t.Errorf("strip dropped the uid or resourceVersion the informer needs: %v", stripped.Object)
	}
	if full.GetAnnotations() == nil || full.Object["status"] == nil {
		t.Error("strip changed its input")
	}

	// An object without apiVersion and kind gets those of the resource.
	bare := cnpObject("prod", "db", dbSpec)
	delete(bare.Object, "apiVersion")
	delete(bare.Object, "kind")
	obj, _ = w.strip(bare)
	if p, err := w.parse(obj.(*unstructured.Unstructured), "prod/db"); err != nil || p.Kind != policy.KindCNP {
		t.Errorf("object without apiVersion and kind: %+v, %v", p, err)
	}
}

func state1(p policy.Policy) PoliciesState {
	return PoliciesState{Synced: true, Policies: []policy.Policy{p}}
}
