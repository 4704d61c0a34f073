package policy

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/selection"
)

// parseFile parses one file under testdata.
func parseFile(tb testing.TB, path string) ([]Policy, error) {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return Parse(bytes.NewReader(b), path)
}

// mustParse parses files and fails the test on any error.
func mustParse(tb testing.TB, paths ...string) []Policy {
	tb.Helper()
	var out []Policy
	for _, p := range paths {
		pols, err := parseFile(tb, p)
		if err != nil {
			tb.Fatalf("Parse(%s): %v", p, err)
		}
		out = append(out, pols...)
	}
	return out
}

// expectedErrors reads the "# error: ..." lines at the top of a rejected
// policy file.
func expectedErrors(tb testing.TB, path string) []string {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var want []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "# error: "); ok {
			want = append(want, s)
		}
	}
	return want
}

var errorLine = regexp.MustCompile(`^testdata/rejected/[a-z0-9-]+\.yaml:[1-9][0-9]*: `)

// TestParseRejected runs the corpus of policies roost must refuse: each
// file names, in "# error:" comments, substrings that must appear in
// Parse's error. Every error line must start with file:line.
func TestParseRejected(t *testing.T) {
	files, err := filepath.Glob("testdata/rejected/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 15 {
		t.Fatalf("only %d rejected policies in testdata/rejected", len(files))
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			want := expectedErrors(t, file)
			if len(want) == 0 {
				t.Fatalf("%s has no '# error:' line", file)
			}
			pols, err := parseFile(t, file)
			if err == nil {
				t.Fatalf("Parse accepted %d policies, want an error", len(pols))
			}
			if pols != nil {
				t.Errorf("Parse returned %d policies along with its error, want none", len(pols))
			}
			msg := err.Error()
			for _, w := range want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not contain %q; got:\n%s", w, msg)
				}
			}
			lines := strings.Split(msg, "\n")
			if len(lines) != len(want) {
				t.Errorf("got %d errors, want %d:\n%s", len(lines), len(want), msg)
			}
			for _, line := range lines {
				if !errorLine.MatchString(line) {
					t.Errorf("error line %q does not start with file:line", line)
				}
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Source != file {
				t.Errorf("errors.As(*FieldError) = %v, Source %q; want Source %q", fe != nil, fe.Source, file)
			}
		})
	}
}

// TestParseSeed checks the structure Parse gives the seed policy, which
// must work exactly as written.
func TestParseSeed(t *testing.T) {
	pols := mustParse(t, "testdata/policies/seed.yaml")
	if len(pols) != 1 {
		t.Fatalf("got %d policies, want 1", len(pols))
	}
	p := pols[0]
	type view struct {
		ID, Subject string
		Line        int
		Peers       []string
		Ports       []PortRange
		DefaultDeny bool
	}
	var got []view
	for _, r := range p.Rules {
		for _, pr := range r.Ingress {
			v := view{ID: p.ID(), Subject: r.Subject.String(), Line: pr.Line, Ports: pr.Ports, DefaultDeny: r.DefaultDeny}
			for _, s := range pr.Endpoints {
				v.Peers = append(v.Peers, s.String())
			}
			got = append(got, v)
		}
	}
	want := []view{{
		ID:          "default/clustermesh-ingress-l4-policy",
		Subject:     "app=protected-db,k8s:io.kubernetes.pod.namespace=default",
		Line:        11,
		Peers:       []string{"app=employee,k8s:io.kubernetes.pod.namespace=default"},
		Ports:       []PortRange{{Protocol: ProtoTCP, Port: 6379, EndPort: 6379}},
		DefaultDeny: true,
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("seed policy (-want +got):\n%s", diff)
	}
}

// TestParseSelectors checks namespace handling, source prefixes and
// matchExpressions.
func TestParseSelectors(t *testing.T) {
	doc := func(meta, spec string) string {
		return "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: " + meta + "\nspec:\n" + spec
	}
	ccnp := func(spec string) string {
		return "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: c}\nspec:\n" + spec
	}
	tests := []struct {
		name        string
		yaml        string
		wantSubject string
		wantPeers   []string
	}{
		{
			name:        "no namespace is the default namespace",
			yaml:        doc("{name: p}", "  endpointSelector: {matchLabels: {app: db}}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: web}}, {}]\n"),
			wantSubject: "app=db,k8s:io.kubernetes.pod.namespace=default",
			wantPeers:   []string{"app=web,k8s:io.kubernetes.pod.namespace=default", "k8s:io.kubernetes.pod.namespace=default"},
		},
		{
			name:        "namespace confines subject and peers",
			yaml:        doc("{name: p, namespace: prod}", "  endpointSelector: {}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: web}}, {}]\n"),
			wantSubject: "k8s:io.kubernetes.pod.namespace=prod",
			wantPeers:   []string{"app=web,k8s:io.kubernetes.pod.namespace=prod", "k8s:io.kubernetes.pod.namespace=prod"},
		},
		{
			name: "a peer naming the namespace label keeps its own",
			yaml: doc("{name: p, namespace: prod}", "  endpointSelector: {matchLabels: {k8s:io.kubernetes.pod.namespace: prod}}\n  ingress:\n"+
				"  - fromEndpoints:\n    - {matchLabels: {k8s:io.kubernetes.pod.namespace: ops}}\n    - {matchLabels: {any:io.kubernetes.pod.namespace: dev}}\n"+
				"    - {matchExpressions: [{key: io.kubernetes.pod.namespace, operator: Exists}]}\n"),
			wantSubject: "k8s:io.kubernetes.pod.namespace=prod",
			wantPeers:   []string{"k8s:io.kubernetes.pod.namespace=ops", "io.kubernetes.pod.namespace=dev", "io.kubernetes.pod.namespace"},
		},
		{
			name:        "namespace labels reach other namespaces",
			yaml:        doc("{name: p, namespace: prod}", "  endpointSelector: {}\n  ingress:\n  - fromEndpoints: [{matchLabels: {k8s:io.cilium.k8s.namespace.labels.team: ops}}]\n"),
			wantSubject: "k8s:io.kubernetes.pod.namespace=prod",
			wantPeers:   []string{"k8s:io.cilium.k8s.namespace.labels.team=ops"},
		},
		{
			name:        "reserved labels are taken as written",
			yaml:        doc("{name: p, namespace: prod}", "  endpointSelector: {}\n  ingress:\n  - fromEndpoints: [{matchLabels: {reserved:host: ''}}]\n"),
			wantSubject: "k8s:io.kubernetes.pod.namespace=prod",
			wantPeers:   []string{"reserved:host="},
		},
		{
			name: "expressions",
			yaml: doc("{name: p}", "  endpointSelector:\n    matchExpressions:\n    - {key: app, operator: In, values: [a, b]}\n    - {key: tier, operator: DoesNotExist}\n"+
				"  ingress:\n  - fromEndpoints:\n    - matchLabels: {k8s:app: x}\n      matchExpressions: [{key: env, operator: NotIn, values: [dev]}]\n"),
			wantSubject: "!tier,app in (a,b),k8s:io.kubernetes.pod.namespace=default",
			wantPeers:   []string{"env notin (dev),k8s:app=x,k8s:io.kubernetes.pod.namespace=default"},
		},
		{
			name:        "clusterwide: every namespace, peers need one",
			yaml:        ccnp("  endpointSelector: {matchLabels: {app: db}}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: web}}, {}, {matchLabels: {io.kubernetes.pod.namespace: ops}}]\n"),
			wantSubject: "app=db",
			wantPeers:   []string{"app=web,k8s:io.kubernetes.pod.namespace", "k8s:io.kubernetes.pod.namespace", "io.kubernetes.pod.namespace=ops"},
		},
		{
			name:        "clusterwide: namespace labels still need a namespace",
			yaml:        ccnp("  endpointSelector: {}\n  ingress:\n  - fromEndpoints: [{matchLabels: {io.cilium.k8s.namespace.labels.team: ops}}]\n"),
			wantSubject: "{}",
			wantPeers:   []string{"io.cilium.k8s.namespace.labels.team=ops,k8s:io.kubernetes.pod.namespace"},
		},
		{
			name:        "clusterwide: rules for initialising endpoints add nothing",
			yaml:        ccnp("  endpointSelector: {matchLabels: {reserved:init: ''}}\n  ingress:\n  - fromEndpoints: [{}]\n"),
			wantSubject: "reserved:init=",
			wantPeers:   []string{"{}"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pols, err := Parse(strings.NewReader(tt.yaml), "test.yaml")
			if err != nil {
				t.Fatal(err)
			}
			r := pols[0].Rules[0]
			if got := r.Subject.String(); got != tt.wantSubject {
				t.Errorf("subject = %q, want %q", got, tt.wantSubject)
			}
			var peers []string
			for _, s := range r.Ingress[0].Endpoints {
				peers = append(peers, s.String())
			}
			if diff := cmp.Diff(tt.wantPeers, peers); diff != "" {
				t.Errorf("peers (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseDocuments checks multi-document handling: empty documents are
// skipped, spec and specs combine, and every valid policy under testdata
// parses.
func TestParseDocuments(t *testing.T) {
	const two = `---
# nothing here
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: a}
spec:
  endpointSelector: {}
  ingress: [{}]
specs:
- endpointSelector: {matchLabels: {app: x}}
  ingressDeny: [{fromEntities: [world]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: a, namespace: other}
spec:
  endpointSelector: {}
  ingress: [{}]
---
`
	pols, err := Parse(strings.NewReader(two), "two.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pols {
		for _, r := range p.Rules {
			got = append(got, p.ID()+" "+r.Path)
		}
	}
	want := []string{"default/a spec", "default/a specs[0]", "other/a spec"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if pols[0].Line != 4 || pols[1].Line != 14 {
		t.Errorf("document lines = %d, %d; want 4, 14", pols[0].Line, pols[1].Line)
	}

	files, err := filepath.Glob("testdata/policies/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, err := parseFile(t, f); err != nil {
			t.Errorf("Parse(%s): %v", f, err)
		}
	}
}

// TestParsePorts checks port, endPort and protocol decoding.
func TestParsePorts(t *testing.T) {
	pols := mustParse(t, "testdata/policies/ports.yaml")
	got := pols[0].Rules[0].Ingress[0].Ports
	want := []PortRange{
		{Protocol: ProtoTCP, Port: 8000, EndPort: 8100},
		{Protocol: ProtoUDP, Port: 9000, EndPort: 9000},
		{Protocol: ProtoSCTP, Port: 2905, EndPort: 2905},
		{Protocol: ProtoUDP},
		{Protocol: ProtoAny, Port: 7946, EndPort: 7946},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
}

// TestIsSecurityLabel pins roost's copy of Cilium's label filter.
func TestIsSecurityLabel(t *testing.T) {
	tests := []struct {
		key  string
		want bool
	}{
		{"app", true},
		{"tier", true},
		{NamespaceLabel, true},
		{"io.cilium.k8s.namespace.labels.team", true},
		{"io.cilium.k8s.policy.serviceaccount", true},
		{"io.cilium.k8s.policy.cluster", true},
		{"app.kubernetes.io/name", true},
		{"topology.kubernetes.io/zone", true},
		{"pod-template-hash", false},
		{"controller-revision-hash", false},
		{"pod-template-generation", false},
		{"io.kubernetes.pod.name", false},
		{"io.kubernetes.pod.uid", false},
		{"kubernetes.io/hostname", false},
		{"statefulset.kubernetes.io/pod-name", false},
		{"apps.kubernetes.io/pod-index", false},
		{"batch.kubernetes.io/job-completion-index", false},
		{"beta.kubernetes.io/arch", false},
		{"failure-domain.beta.kubernetes.io/zone", false},
		{"k8s.io/foo", false},
		{"annotation.foo", false},
		{"etcd_node", false},
		{"controller-uid", false},
		{"batch.kubernetes.io/controller-uid", false},
		{"batch.kubernetes.io/job-name", true}, // !kubernetes\.io must match at the start
		{"job-name", true},
		{"my-annotation", true},
		{"io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name", true},
		{"io.cilium.k8s.namespace.labels.beta.kubernetes.io/x", false},
	}
	for _, tt := range tests {
		if got := IsSecurityLabel(tt.key); got != tt.want {
			t.Errorf("IsSecurityLabel(%q) = %v, want %v", tt.key, got, tt.want)
		}
	}
	got := SecurityLabels(map[string]string{"app": "a", "pod-template-hash": "x", NamespaceLabel: "ns"})
	if want := map[string]string{"app": "a", NamespaceLabel: "ns"}; !cmp.Equal(want, got) {
		t.Errorf("SecurityLabels = %v, want %v", got, want)
	}
}

// TestParseKeepsGoingAfterErrors checks that a file's errors come in file
// order and that none is lost when a document also has good parts.
func TestParseKeepsGoingAfterErrors(t *testing.T) {
	_, err := parseFile(t, "testdata/rejected/many-errors.yaml")
	var lines []int
	for _, l := range strings.Split(err.Error(), "\n") {
		m := regexp.MustCompile(`:(\d+): `).FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("no line in %q", l)
		}
		n, _ := strconv.Atoi(m[1])
		lines = append(lines, n)
	}
	if len(lines) != 4 {
		t.Errorf("got %d errors, want 4:\n%v", len(lines), err)
	}
	if !slices.IsSorted(lines) {
		t.Errorf("errors not in file order:\n%v", err)
	}
}

// TestParseIgnoredFields checks that what the API server would drop is
// ignored with a warning naming it, in files, and without one in objects
// read from the API.
func TestParseIgnoredFields(t *testing.T) {
	const doc = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
description: a note the CRD has no field for
metadata:
  name: p
  uid: 0b3c5e2a-0000-0000-0000-000000000000
  resourceVersion: "42"
  generation: 3
  creationTimestamp: "2026-01-01T00:00:00Z"
  managedFields: [{manager: kubectl}]
spec:
  endpointSelector: {}
  ingress: [{}]
status:
  conditions: []
`
	pols, err := Parse(strings.NewReader(doc), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"p.yaml:3: description: not a field of the CRD (the API server drops it); ignored",
		"p.yaml:6: metadata.uid: set by the API server; ignored",
		"p.yaml:7: metadata.resourceVersion: set by the API server; ignored",
		"p.yaml:8: metadata.generation: set by the API server; ignored",
		"p.yaml:9: metadata.creationTimestamp: set by the API server; ignored",
		"p.yaml:10: metadata.managedFields: set by the API server; ignored",
		"p.yaml:14: status: written by Cilium, not by users; ignored",
	}
	if diff := cmp.Diff(want, pols[0].Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	obj, err := ParseObject([]byte(doc), "CiliumNetworkPolicy default/p")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"CiliumNetworkPolicy default/p: description: not a field of the CRD (the API server drops it); ignored"}, obj.Warnings); diff != "" {
		t.Errorf("object warnings (-want +got):\n%s", diff)
	}
	if obj.ID() != "default/p" || obj.Line != 0 || obj.Rules[0].Line != 0 {
		t.Errorf("object %s at line %d, rule line %d; want default/p, no lines", obj.ID(), obj.Line, obj.Rules[0].Line)
	}
	const ccnp = "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: c, namespace: prod}\nspec: {endpointSelector: {}, ingress: [{}]}\n"
	pols, err = Parse(strings.NewReader(ccnp), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if pols[0].ID() != "c" || !pols[0].Clusterwide() || len(pols[0].Warnings) != 1 || !strings.Contains(pols[0].Warnings[0], "metadata.namespace: a CiliumClusterwideNetworkPolicy has no namespace") {
		t.Errorf("clusterwide policy %q (clusterwide %v) warnings %q", pols[0].ID(), pols[0].Clusterwide(), pols[0].Warnings)
	}
	_, err = ParseObject([]byte(`{"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "p", "namespace": "x"}, "spec": {"endpointSelector": {}, "ingress": [{"fromEntities": ["kube-apiserver"]}]}}`), "CiliumNetworkPolicy x/p")
	if err == nil || err.Error() != `CiliumNetworkPolicy x/p: spec.ingress[0].fromEntities[0]: entity "kube-apiserver" is not supported by roost (roost does not track the API server's addresses); the policy is rejected whole` {
		t.Errorf("ParseObject of a bad object: %v", err)
	}
}

// TestEndpointLabels checks the labels Cilium derives for a pod.
func TestEndpointLabels(t *testing.T) {
	got := EndpointLabels(
		map[string]string{"app": "db", "io.cilium.k8s.policy.cluster": "forged", "io.cilium.k8s.namespace.labels.team": "forged"},
		"prod", map[string]string{"team": "data", "kubernetes.io/metadata.name": "prod"}, "db-sa", "dc1")
	want := map[string]string{
		"app":                          "db",
		NamespaceLabel:                 "prod",
		NamespaceLabelsPrefix + "team": "data",
		NamespaceLabelsPrefix + "kubernetes.io/metadata.name": "prod",
		ServiceAccountLabel: "db-sa",
		ClusterLabel:        "dc1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("EndpointLabels (-want +got):\n%s", diff)
	}
	if _, ok := EndpointLabels(nil, "x", nil, "", "c")[ServiceAccountLabel]; ok {
		t.Error("a pod without a service account has the label")
	}
}

// TestSelectorSources checks that selector keys match labels of their
// source only, and any: (or no source) every source.
func TestSelectorSources(t *testing.T) {
	host := map[string]string{reservedKey("host"): ""}
	pod := map[string]string{"app": "x", "host": "yes"}
	tests := []struct {
		req       requirement
		host, pod bool
	}{
		{requirement{source: sourceReserved, key: "host", op: selection.Equals, values: []string{""}}, true, false},
		{requirement{source: sourceK8s, key: "host", op: selection.Exists}, false, true},
		{requirement{source: sourceAny, key: "host", op: selection.Exists}, true, true},
		{requirement{source: sourceAny, key: "app", op: selection.NotIn, values: []string{"x"}}, true, false},
		{requirement{source: sourceAny, key: "app", op: selection.DoesNotExist}, true, false},
	}
	for _, tt := range tests {
		s := Selector{valid: true, reqs: []requirement{tt.req}}
		if got := s.Matches(host); got != tt.host {
			t.Errorf("%s on the host = %v, want %v", s, got, tt.host)
		}
		if got := s.Matches(pod); got != tt.pod {
			t.Errorf("%s on a pod = %v, want %v", s, got, tt.pod)
		}
	}
	if (Selector{}).Matches(pod) {
		t.Error("the zero Selector selects something")
	}
}

// TestParseLabelsCiliumIgnores checks that a selector on a label Cilium
// leaves out of identities is taken, with a warning saying what that
// means, and that Cilium's other spellings of reserved labels are read as
// Cilium reads them.
func TestParseLabelsCiliumIgnores(t *testing.T) {
	const doc = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p}
spec:
  endpointSelector: {}
  ingress:
  - fromEndpoints:
    - matchLabels: {io.kubernetes.pod.name: runtime}
    - matchExpressions: [{key: pod-template-hash, operator: DoesNotExist}]
    - matchLabels: {reserved.world: ""}
    - matchLabels: {$host: ""}
`
	pols, err := Parse(strings.NewReader(doc), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`p.yaml:8: spec.ingress[0].fromEndpoints[0].matchLabels.io.kubernetes.pod.name: "io.kubernetes.pod.name" is not a security label (Cilium, and roost, leave it out of identities): this requirement never holds`,
		`p.yaml:9: spec.ingress[0].fromEndpoints[1].matchExpressions[0]: "pod-template-hash" is not a security label (Cilium, and roost, leave it out of identities): this requirement always holds`,
	}
	if diff := cmp.Diff(want, pols[0].Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	var got []string
	for _, s := range pols[0].Rules[0].Ingress[0].Endpoints {
		got = append(got, s.String())
	}
	wantSel := []string{
		"io.kubernetes.pod.name=runtime,k8s:io.kubernetes.pod.namespace=default",
		"!pod-template-hash,k8s:io.kubernetes.pod.namespace=default",
		"reserved:world=",
		"reserved:host=",
	}
	if diff := cmp.Diff(wantSel, got); diff != "" {
		t.Errorf("selectors (-want +got):\n%s", diff)
	}
	res, err := Compile(pols, []Endpoint{{Name: "a", IPs: addrs("10.0.0.1"), Labels: pod("io.kubernetes.pod.name", "runtime"), Local: true}})
	if err != nil {
		t.Fatal(err)
	}
	// The pod-name label does not count: only the DoesNotExist selector
	// (every endpoint of the namespace), world and host are selected.
	var remotes []string
	for _, e := range res.Endpoints[0].Entries {
		remotes = append(remotes, e.Remote.String())
	}
	slices.Sort(remotes)
	wantRemotes := []string{"1", "2", res.Endpoints[0].Identity.String()}
	slices.Sort(wantRemotes)
	if diff := cmp.Diff(wantRemotes, remotes); diff != "" {
		t.Errorf("remotes (-want +got):\n%s", diff)
	}
}
