package policyd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/roost-net/roost/internal/datapath"
	"github.com/roost-net/roost/internal/endpoints"
	"github.com/roost-net/roost/internal/loader"
	"github.com/roost-net/roost/internal/loaderapi"
	"github.com/roost-net/roost/internal/loaderconfig"
	"github.com/roost-net/roost/internal/policy"
)

const seed = `apiVersion: "cilium.io/v2"
kind: CiliumNetworkPolicy
metadata:
  name: "clustermesh-ingress-l4-policy"
spec:
  endpointSelector:
    matchLabels:
      app: protected-db
  ingress:
  - toPorts:
    - ports:
      - port: "6379"
        protocol: TCP
    fromEndpoints:
      - matchLabels:
          app: employee
`

// fakeEnforcer marks endpoints whose name starts with "local-" local and
// records what it is asked to apply.
type fakeEnforcer struct {
	mu       sync.Mutex
	applied  []policy.Resolved
	fail     error
	entryErr error // what EntryCounters fails with
}

func (f *fakeEnforcer) Locate(eps []policy.Endpoint) ([]policy.Endpoint, error) {
	out := make([]policy.Endpoint, len(eps))
	for i, ep := range eps {
		ep.Local = strings.HasPrefix(ep.Name, "local-")
		out[i] = ep
	}
	return out, nil
}

func (f *fakeEnforcer) Apply(res policy.Resolved) (loader.Report, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return loader.Report{}, f.fail
	}
	f.applied = append(f.applied, res)
	return loader.Report{}, nil
}

func (f *fakeEnforcer) Counters() (map[datapath.Reason]datapath.Counter, error) {
	return map[datapath.Reason]datapath.Counter{
		datapath.ReasonPassPolicy:        {Packets: 3, Bytes: 300},
		datapath.ReasonDropPolicyDefault: {Packets: 2, Bytes: 120},
		datapath.ReasonPassNotEnforced:   {},
	}, nil
}

// EntryCounters returns two entries of local-db (id 5) and one of an
// endpoint the loader has not named yet, out of order.
func (f *fakeEnforcer) EntryCounters() ([]loader.EntryCounter, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.entryErr != nil {
		return nil, f.entryErr
	}
	return []loader.EntryCounter{
		{Endpoint: "local-db", EndpointID: 5, Remote: 7000, Counted: true, Counts: datapath.EntryCounter{
			Allowed: datapath.Counter{Packets: 3, Bytes: 300}, Denied: datapath.Counter{Packets: 1, Bytes: 60}, DefaultDenied: datapath.Counter{Packets: 2, Bytes: 120}}},
		{Endpoint: "local-db", EndpointID: 5, Remote: datapath.IdentityAny, Counted: true, Counts: datapath.EntryCounter{
			DefaultDenied: datapath.Counter{Packets: 4, Bytes: 240}}},
		{EndpointID: 9, Remote: datapath.IdentityHost},
	}, nil
}

func (f *fakeEnforcer) Attachments() ([]loader.Attachment, error) { return nil, nil }

// HostAddresses returns the node's addresses: one of its own and one that
// an endpoint claims.
func (f *fakeEnforcer) HostAddresses() ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("10.0.1.2"), netip.MustParseAddr("10.244.1.10")}, nil
}

// testInputs returns fixed endpoints and the seed policy, or err.
func testInputs(err *error) Inputs {
	return func(cfg loaderconfig.Config) (Files, error) {
		if *err != nil {
			return Files{}, *err
		}
		pols, perr := policy.Parse(strings.NewReader(seed), "seed.yaml")
		if perr != nil {
			return Files{}, perr
		}
		return Files{
			Endpoints: endpoints.File{
				Endpoints: []endpoints.Workload{
					{Name: "local-db", Namespace: "default", IPs: []netip.Addr{netip.MustParseAddr("10.244.1.10")}, Labels: map[string]string{"app": "protected-db"}},
					{Name: "employee", Namespace: "default", IPs: []netip.Addr{netip.MustParseAddr("10.244.2.11")}, Labels: map[string]string{"app": "employee"}},
				},
				Nodes: []endpoints.Node{
					{Name: "node1", IPs: []netip.Addr{netip.MustParseAddr("10.0.2.2")}},
					{Name: "node2", IPs: []netip.Addr{netip.MustParseAddr("10.0.3.2"), netip.MustParseAddr("10.0.4.2")}},
				},
				Namespaces: map[string]map[string]string{"prod": {"team": "file"}},
			},
			Policies: pols,
		}, nil
	}
}

var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func TestReconcile(t *testing.T) {
	var inErr error
	enf := &fakeEnforcer{}
	cfg := loaderconfig.Config{Node: "node1", Cluster: "dc1", HostIPs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}
	d := New(Options{Config: cfg, Enforcer: enf, Inputs: testInputs(&inErr)})
	if err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	s := d.Status()
	if !s.Ready || s.LastApply.Result != loaderapi.ResultOK || s.Policies != 1 || len(s.Endpoints) != 2 || s.Cluster != "dc1" {
		t.Fatalf("status = %+v", s)
	}
	if db := s.Endpoints[1]; db.Name != "local-db" || !db.Local || !db.Enforced || db.Identity == 0 || db.Labels[policy.ClusterLabel] != "dc1" {
		t.Errorf("db = %+v", db)
	}
	// The host: the interface address not claimed by an endpoint, hostIPs,
	// and the endpoints file's entry for this node; the other nodes.
	wantHost := []netip.Addr{netip.MustParseAddr("10.0.1.2"), netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("192.0.2.1")}
	if diff := cmp.Diff(wantHost, s.HostIPs, cmpAddr); diff != "" {
		t.Errorf("host addresses (-want +got):\n%s", diff)
	}
	wantNodes := []loaderapi.Node{{Name: "node2", IPs: []netip.Addr{netip.MustParseAddr("10.0.3.2"), netip.MustParseAddr("10.0.4.2")}}}
	if diff := cmp.Diff(wantNodes, s.Nodes, cmpAddr); diff != "" {
		t.Errorf("nodes (-want +got):\n%s", diff)
	}
	if len(enf.applied) != 1 || len(enf.applied[0].Endpoints) != 1 {
		t.Fatalf("applied = %+v", enf.applied)
	}
	res := enf.applied[0]
	for ip, want := range map[string]policy.Identity{"10.0.1.2": policy.IdentityHost, "192.0.2.1": policy.IdentityHost, "10.0.2.2": policy.IdentityHost,
		"10.0.3.2": policy.IdentityRemoteNode, "10.0.4.2": policy.IdentityRemoteNode, "10.0.9.9": policy.IdentityWorldIPv4} {
		if got := res.Lookup(netip.MustParseAddr(ip)); got != want {
			t.Errorf("identity of %s = %d, want %d", ip, got, want)
		}
	}

	// A broken input keeps the last policy: nothing new is applied.
	inErr = errors.New("policies/db.yaml:3: spec.egress: not supported")
	if err := d.Reconcile(); err == nil {
		t.Fatal("want error")
	}
	s = d.Status()
	if s.Ready || s.LastApply.Result != loaderapi.ResultFailed || !strings.Contains(s.LastApply.Error, "spec.egress") || s.LastApply.Failures != 1 {
		t.Errorf("status after bad input = %+v", s.LastApply)
	}
	if len(enf.applied) != 1 || len(d.Resolved().Endpoints) != 1 {
		t.Error("a failed reconcile changed what is enforced")
	}
	inErr = nil
	enf.fail = errors.New("map full")
	if err := d.Reconcile(); err == nil || !strings.Contains(err.Error(), "apply policy: map full") {
		t.Errorf("apply failure: %v", err)
	}
}

// TestWaitsForKubernetes checks that nothing is enforced before every
// Kubernetes source has synced (namespace labels or nodes missing could
// open a deny), and what the sources then add.
func TestWaitsForKubernetes(t *testing.T) {
	var inErr error
	enf := &fakeEnforcer{}
	cfg := loaderconfig.Config{Node: "node1", Cluster: "default", Kubernetes: loaderconfig.Kubernetes{Enabled: true}}
	d := New(Options{Config: cfg, Enforcer: enf, Inputs: testInputs(&inErr)})
	if err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if s := d.Status(); s.LastApply.Result != loaderapi.ResultWaiting || s.Ready || len(enf.applied) != 0 ||
		s.LastApply.Error != "waiting for the Kubernetes informers to sync: Pods, Namespaces, Nodes, CiliumNetworkPolicies" {
		t.Fatalf("before sync: %+v, applied %d", s.LastApply, len(enf.applied))
	}
	d.SetPods(endpoints.PodsState{Synced: true, Workloads: []endpoints.Workload{
		{Name: "prod/web", Namespace: "prod", IPs: []netip.Addr{netip.MustParseAddr("10.244.3.5")}, Labels: map[string]string{"app": "employee"}},
	}})
	d.SetNamespaces(endpoints.NamespacesState{Synced: true, Labels: map[string]map[string]string{"prod": {"team": "kube"}, "ops": {"team": "ops"}}})
	d.SetNodes(endpoints.NodesState{Synced: true, Nodes: []endpoints.Node{
		{Name: "node2", IPs: []netip.Addr{netip.MustParseAddr("10.0.3.3")}},
		{Name: "node3", IPs: []netip.Addr{netip.MustParseAddr("10.0.5.2")}},
	}})
	if err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if s := d.Status(); s.LastApply.Error != "waiting for the Kubernetes informers to sync: CiliumNetworkPolicies" {
		t.Fatalf("with three synced: %+v", s.LastApply)
	}
	api, err := policy.ParseObject([]byte(`{"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "clustermesh-ingress-l4-policy"}, "spec": {"endpointSelector": {}, "ingress": [{}]}}`), "CiliumNetworkPolicy default/clustermesh-ingress-l4-policy")
	if err != nil {
		t.Fatal(err)
	}
	api2, err := policy.ParseObject([]byte(`{"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy", "description": "x", "metadata": {"name": "all"}, "spec": {"endpointSelector": {}, "ingressDeny": [{"fromEntities": ["world"]}]}}`), "CiliumClusterwideNetworkPolicy all")
	if err != nil {
		t.Fatal(err)
	}
	d.SetPolicies(endpoints.PoliciesState{Synced: true, Policies: []policy.Policy{api, api2},
		Errors:  []endpoints.ObjectError{{Kind: "CiliumNetworkPolicy", Namespace: "prod", Name: "bad", Error: "spec.egress: not supported"}},
		Missing: []string{"nothing really"}})
	if err := d.Reconcile(); err != nil {
		t.Fatal(err)
	}
	s := d.Status()
	if !s.Ready || len(s.Endpoints) != 3 || s.Policies != 2 {
		t.Fatalf("after sync: %+v", s)
	}
	wantErrs := []loaderapi.PolicyError{
		{Kind: "CiliumNetworkPolicy", Name: "clustermesh-ingress-l4-policy", Namespace: "default",
			Error: "CiliumNetworkPolicy default/clustermesh-ingress-l4-policy is also defined in seed.yaml:1; the file's is enforced"},
		{Kind: "CiliumNetworkPolicy", Namespace: "prod", Name: "bad", Error: "spec.egress: not supported"},
	}
	if diff := cmp.Diff(wantErrs, s.PolicyErrors); diff != "" {
		t.Errorf("policy errors (-want +got):\n%s", diff)
	}
	if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "CiliumClusterwideNetworkPolicy all: description:") || len(s.Notes) != 1 {
		t.Errorf("warnings %q, notes %q", s.Warnings, s.Notes)
	}
	// Namespace labels: Kubernetes', but the file's for a namespace it
	// describes.
	for _, ep := range s.Endpoints {
		if ep.Name == "prod/web" && ep.Labels[policy.NamespaceLabelsPrefix+"team"] != "file" {
			t.Errorf("prod/web labels %v", ep.Labels)
		}
	}
	wantNodes := []loaderapi.Node{
		{Name: "node2", IPs: []netip.Addr{netip.MustParseAddr("10.0.3.2"), netip.MustParseAddr("10.0.3.3"), netip.MustParseAddr("10.0.4.2")}},
		{Name: "node3", IPs: []netip.Addr{netip.MustParseAddr("10.0.5.2")}},
	}
	if diff := cmp.Diff(wantNodes, s.Nodes, cmpAddr); diff != "" {
		t.Errorf("nodes (-want +got):\n%s", diff)
	}
}

func TestRunDebouncesAndRetries(t *testing.T) {
	inErr := errors.New("broken")
	enf := &fakeEnforcer{}
	d := New(Options{Config: loaderconfig.Config{Node: "n"}, Enforcer: enf, Inputs: testInputs(&inErr)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx, time.Millisecond, 20*time.Millisecond) }()
	deadline := time.Now().Add(10 * time.Second)
	for d.Status().LastApply.Failures < 2 {
		if time.Now().After(deadline) {
			t.Fatal("failed reconcile not retried")
		}
		time.Sleep(5 * time.Millisecond)
	}
	inErr = nil
	for !d.Status().Ready {
		if time.Now().After(deadline) {
			t.Fatal("no recovery")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
}

func TestHTTP(t *testing.T) {
	var inErr error
	enf := &fakeEnforcer{}
	var svcErr atomic.Value
	svcErr.Store("")
	d := New(Options{Config: loaderconfig.Config{Node: "node1"}, Enforcer: enf, Inputs: testInputs(&inErr), KeepDrops: 2,
		NotReady: func() string { return svcErr.Load().(string) }})
	srv := httptest.NewServer(d.Handler(enf, "/sys/fs/bpf/roost"))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var sb strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			sb.WriteString(sc.Text() + "\n")
		}
		return resp.StatusCode, sb.String()
	}
	if code, _ := get(loaderapi.PathReadyz); code != 503 {
		t.Errorf("readyz before apply = %d", code)
	}
	d.Reconcile()
	if code, _ := get(loaderapi.PathReadyz); code != 200 {
		t.Errorf("readyz after apply = %d", code)
	}
	// Another part's reason (the load balancers' sync) makes it unready.
	svcErr.Store("services: services.yaml:3: bad")
	if code, body := get(loaderapi.PathReadyz); code != 503 || !strings.Contains(body, "not ready: services: services.yaml:3: bad") {
		t.Errorf("readyz with a services error = %d %q", code, body)
	}
	svcErr.Store("")
	// The loader's other parts register their collectors after Handler.
	if err := d.RegisterMetrics(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roost_other_part", Help: "A part of the loader besides policy."},
		func() float64 { return 4 })); err != nil {
		t.Fatal(err)
	}
	if err := d.RegisterMetrics(prometheus.NewGauge(prometheus.GaugeOpts{Name: "roost_other_part", Help: "Again."})); err == nil {
		t.Error("a metric registered twice")
	}
	_, metrics := get(loaderapi.PathMetrics)
	for _, want := range []string{`roost_policy_packets_total{reason="pass-policy",verdict="pass"} 3`,
		`roost_policy_packets_total{reason="drop-policy-default",verdict="drop"} 2`, "roost_policy_ready 1",
		`roost_policy_endpoints{enforced="true",local="true"} 1`, "roost_other_part 4"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// The resolved policy as before, with the entries' counters beside.
	_, body := get(loaderapi.PathPolicy)
	var res policy.Resolved
	if json.Unmarshal([]byte(body), &res) != nil || len(res.Endpoints) != 1 || !reflect.DeepEqual(res, d.Resolved()) {
		t.Errorf("policy = %s", body)
	}
	var doc loaderapi.Policy
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	wantEntries := []loaderapi.EntryCounter{
		{EndpointID: 9, Remote: 1},
		{Endpoint: "local-db", EndpointID: 5, Remote: 0, Counted: true, DefaultDenied: loaderapi.Count{Packets: 4, Bytes: 240}},
		{Endpoint: "local-db", EndpointID: 5, Remote: 7000, Counted: true, Allowed: loaderapi.Count{Packets: 3, Bytes: 300},
			Denied: loaderapi.Count{Packets: 1, Bytes: 60}, DefaultDenied: loaderapi.Count{Packets: 2, Bytes: 120}},
	}
	if diff := cmp.Diff(wantEntries, doc.EntryCounters); diff != "" {
		t.Errorf("entry counters (-want +got):\n%s", diff)
	}
	c := loaderapi.NewClient(srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if p, err := c.Policy(ctx); err != nil || len(p.Endpoints) != 1 || len(p.EntryCounters) != 3 {
		t.Errorf("client: policy %+v, %v", p, err)
	}
	enf.mu.Lock()
	enf.entryErr = errors.New("policy counters: lookup 3: bad file descriptor")
	enf.mu.Unlock()
	if code, body := get(loaderapi.PathPolicy); code != http.StatusInternalServerError || !strings.Contains(body, "lookup 3") {
		t.Errorf("policy with unreadable counters: %d %s", code, body)
	}
	var cs []loaderapi.Counter
	if _, body := get(loaderapi.PathCounters); json.Unmarshal([]byte(body), &cs) != nil || len(cs) != 2 {
		t.Errorf("counters = %s", body)
	}

	for i := range 3 {
		d.RecordDrop(datapath.DropEvent{Src: netip.MustParseAddr("10.244.2.10"), Dst: netip.MustParseAddr("10.244.1.10"),
			DstPort: uint16(6379 + i), Proto: 6, Reason: datapath.ReasonDropPolicyDefault})
	}
	_, body = get(loaderapi.PathDrops)
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"dstPort":6380`) || !strings.Contains(lines[1], `"endpoint":"local-db"`) {
		t.Errorf("drops kept = %q", lines)
	}

	// Follow: a drop recorded later arrives.
	got := make(chan loaderapi.Drop, 10)
	go c.Drops(ctx, true, func(dr loaderapi.Drop) error { got <- dr; return nil })
	<-got
	<-got // the two kept
	d.RecordDrop(datapath.DropEvent{DstPort: 22, Reason: datapath.ReasonDropPolicyDeny})
	select {
	case dr := <-got:
		if dr.DstPort != 22 || dr.Reason != datapath.ReasonDropPolicyDeny.String() {
			t.Errorf("followed drop = %+v", dr)
		}
	case <-ctx.Done():
		t.Fatal("no followed drop")
	}
}
