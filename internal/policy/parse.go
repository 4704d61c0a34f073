package policy

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation"
)

// APIVersion is the only accepted apiVersion.
const APIVersion = "cilium.io/v2"

// maxPorts is Cilium's limit of ports per toPorts entry.
const maxPorts = 40

// FieldError is one problem in a policy file: where it is and what is
// wrong. Parse returns every FieldError of a file joined with errors.Join.
type FieldError struct {
	// Source is the file name given to Parse; Line is 1-based, 0 if unknown.
	Source string
	Line   int
	// Path is the field, e.g. "spec.ingress[0].toPorts[0].rules"; empty
	// for a problem with a whole document.
	Path string
	Msg  string
}

// Error returns "source:line: path: message".
func (e *FieldError) Error() string {
	loc := e.Source
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Path == "" {
		return loc + ": " + e.Msg
	}
	path := e.Path
	if strings.ContainsFunc(path, unicode.IsControl) {
		path = strconv.Quote(path)
	}
	return loc + ": " + path + ": " + e.Msg
}

// rejectedWhole ends the message of every field roost refuses.
const rejectedWhole = "; the policy is rejected whole"

// schema lists the keys of one kind of YAML object.
type schema struct {
	// fields are the keys roost supports.
	fields []string
	// unsupported are keys Cilium knows and roost refuses, with the reason.
	unsupported map[string]string
	// ignored are keys roost drops with a warning, with the reason: what
	// the API server would not keep, or sets itself.
	ignored map[string]string
}

// Why roost ignores a field: the API server sets it, or it is not the
// user's, or the API server would drop it.
const (
	serverSet     = "set by the API server; ignored"
	statusIgnored = "written by Cilium, not by users; ignored"
	gcIgnored     = "garbage-collection metadata; ignored"
)

var egressOnly = "an egress field; roost enforces ingress only"

var (
	documentSchema = schema{
		fields: []string{"apiVersion", "kind", "metadata", "spec", "specs"},
		ignored: map[string]string{
			"status":      statusIgnored,
			"description": "not a field of the CRD (the API server drops it); ignored",
		},
	}
	metadataSchema = schema{
		fields: []string{"name", "namespace", "labels", "annotations", "description"},
		ignored: map[string]string{
			"uid":                        serverSet,
			"resourceVersion":            serverSet,
			"generation":                 serverSet,
			"creationTimestamp":          serverSet,
			"managedFields":              serverSet,
			"selfLink":                   serverSet,
			"deletionTimestamp":          serverSet,
			"deletionGracePeriodSeconds": serverSet,
			"ownerReferences":            gcIgnored,
			"finalizers":                 gcIgnored,
		},
	}
	ruleSchema = schema{
		fields: []string{"endpointSelector", "ingress", "ingressDeny", "enableDefaultDeny", "description"},
		unsupported: map[string]string{
			"egress":       "egress policy; roost enforces ingress only",
			"egressDeny":   "egress policy; roost enforces ingress only",
			"nodeSelector": "host policies: roost enforces policy on endpoints (pods, VMs), not on the node itself",
			"labels":       "rule labels",
			"log":          "policy logging",
		},
	}
	defaultDenySchema = schema{fields: []string{"ingress", "egress"}}
	selectorSchema    = schema{fields: []string{"matchLabels", "matchExpressions"}}
	expressionSchema  = schema{fields: []string{"key", "operator", "values"}}
	peerSchema        = schema{
		fields: []string{"fromEndpoints", "fromEntities", "fromCIDR", "fromCIDRSet", "fromRequires", "toPorts", "icmps"},
		unsupported: map[string]string{
			"fromGroups":     "cloud provider groups",
			"fromNodes":      "node selectors, which Cilium only takes with enable-node-selector-labels; use fromEntities: [remote-node]",
			"authentication": "mutual authentication",
			"toEndpoints":    egressOnly,
			"toEntities":     egressOnly,
			"toCIDR":         egressOnly,
			"toCIDRSet":      egressOnly,
			"toFQDNs":        egressOnly,
			"toServices":     egressOnly,
			"toGroups":       egressOnly,
			"toNodes":        egressOnly,
			"toRequires":     egressOnly,
		},
	}
	portRuleSchema = schema{
		fields: []string{"ports"},
		unsupported: map[string]string{
			"rules":          "L7 rules",
			"terminatingTLS": "TLS interception",
			"originatingTLS": "TLS interception",
			"serverNames":    "TLS server names",
			"listener":       "Envoy listeners",
		},
	}
	portSchema      = schema{fields: []string{"port", "endPort", "protocol"}}
	icmpSchema      = schema{fields: []string{"fields"}}
	icmpFieldSchema = schema{fields: []string{"type", "family"}}
	cidrRuleSchema  = schema{
		fields: []string{"cidr", "except"},
		unsupported: map[string]string{
			"cidrGroupRef":      "CiliumCIDRGroup references",
			"cidrGroupSelector": "CiliumCIDRGroup selectors",
		},
	}
)

// entityReasons are the Cilium entities roost refuses.
var entityReasons = map[string]string{
	"kube-apiserver": "roost does not track the API server's addresses",
}

// entities are the entities roost accepts.
var entities = []Entity{
	EntityAll, EntityWorld, EntityWorldIPv4, EntityWorldIPv6, EntityCluster, EntityHost, EntityRemoteNode,
	EntityInit, EntityHealth, EntityUnmanaged, EntityIngress, EntityNone,
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Parse reads every CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy
// document of one file. source names the file in errors. A
// CiliumNetworkPolicy without metadata.namespace lives in
// DefaultNamespace. If anything in the file is wrong, Parse returns no
// policies and an error joining one *FieldError per problem found; a YAML
// syntax error ends the search. Fields roost ignores are in each policy's
// Warnings.
func Parse(r io.Reader, source string) ([]Policy, error) {
	p := &parser{source: source, lines: true}
	dec := yaml.NewDecoder(r)
	var out []Policy
	first := map[string]int{}
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fe := &FieldError{Source: source, Msg: err.Error()}
			if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
				fe.Line, _ = strconv.Atoi(m[1])
				fe.Msg = "YAML: " + m[2]
			}
			p.errs = append(p.errs, fe)
			break
		}
		n := &doc
		if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
			n = n.Content[0]
		}
		if isNull(n) {
			continue // an empty document, e.g. after a trailing ---
		}
		p.warns = nil
		pol, ok := p.document(n)
		if !ok {
			continue
		}
		pol.Warnings = p.warnings()
		if line, dup := first[pol.ID()]; dup {
			p.failf(n, "", "duplicate policy %q (first at line %d)", pol.ID(), line)
			continue
		}
		first[pol.ID()] = n.Line
		out = append(out, pol)
	}
	if len(p.errs) > 0 {
		slices.SortStableFunc(p.errs, func(a, b *FieldError) int { return cmp.Compare(a.Line, b.Line) })
		errs := make([]error, len(p.errs))
		for i, e := range p.errs {
			errs[i] = e
		}
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// ParseObject reads one policy object as the API server serves it (JSON or
// YAML), for source, e.g. "CiliumNetworkPolicy prod/web". Errors and
// warnings name field paths without lines. What the API server sets
// (metadata.uid, resourceVersion, managedFields, ..., status) is dropped
// without a warning: it is expected in an object read from the API.
func ParseObject(data []byte, source string) (Policy, error) {
	p := &parser{source: source}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Policy{}, &FieldError{Source: source, Msg: "YAML: " + err.Error()}
	}
	n := &doc
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if isNull(n) {
		return Policy{}, &FieldError{Source: source, Msg: "empty object"}
	}
	pol, ok := p.document(n)
	if !ok {
		errs := make([]error, len(p.errs))
		for i, e := range p.errs {
			errs[i] = e
		}
		return Policy{}, errors.Join(errs...)
	}
	for _, w := range p.warnings() {
		if !strings.HasSuffix(w, serverSet) && !strings.HasSuffix(w, statusIgnored) && !strings.HasSuffix(w, gcIgnored) {
			pol.Warnings = append(pol.Warnings, w)
		}
	}
	return pol, nil
}

// parser collects the errors of one file, and the warnings of its current
// document.
type parser struct {
	source string
	// lines says whether the source has lines worth naming: false for an
	// object read from the API server.
	lines bool
	errs  []*FieldError
	warns []*FieldError
}

func (p *parser) line(n *yaml.Node) int {
	if n == nil || !p.lines {
		return 0
	}
	return n.Line
}

func (p *parser) failf(n *yaml.Node, path, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{Source: p.source, Line: p.line(n), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) warnf(n *yaml.Node, path, format string, args ...any) {
	p.warns = append(p.warns, &FieldError{Source: p.source, Line: p.line(n), Path: path, Msg: fmt.Sprintf(format, args...)})
}

// warnings returns the warnings of the current document in line order.
func (p *parser) warnings() []string {
	slices.SortStableFunc(p.warns, func(a, b *FieldError) int { return cmp.Compare(a.Line, b.Line) })
	var out []string
	for _, w := range p.warns {
		out = append(out, w.Error())
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// isEmpty reports whether n is absent, null or an empty list.
func isEmpty(n *yaml.Node) bool {
	return isNull(n) || (n.Kind == yaml.SequenceNode && len(n.Content) == 0)
}

// plain reports whether n is a node roost can read, failing on aliases.
func (p *parser) plain(n *yaml.Node, path string) bool {
	if n == nil {
		p.failf(nil, path, "missing")
		return false
	}
	if n.Kind == yaml.AliasNode {
		p.failf(n, path, "YAML aliases are not supported; write the value out")
		return false
	}
	return true
}

// object checks that n is a mapping whose keys s knows, reports every other
// key, and returns the values of the supported keys.
func (p *parser) object(n *yaml.Node, path string, s schema) map[string]*yaml.Node {
	if !p.plain(n, path) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.failf(n, path, "must be a mapping")
		return nil
	}
	out := make(map[string]*yaml.Node)
	seen := make(map[string]bool)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.failf(k, path, "keys must be strings")
			continue
		}
		kp := join(path, k.Value)
		switch {
		case k.Tag == "!!merge":
			p.failf(k, path, "YAML merge keys (<<) are not supported; write the fields out")
		case seen[k.Value]:
			p.failf(k, kp, "duplicate key")
		case s.unsupported[k.Value] != "":
			p.failf(k, kp, "not supported by roost (%s)%s", s.unsupported[k.Value], rejectedWhole)
		case s.ignored[k.Value] != "":
			p.warnf(k, kp, "%s", s.ignored[k.Value])
		case !slices.Contains(s.fields, k.Value):
			hint := ""
			for _, f := range s.fields {
				if strings.EqualFold(f, k.Value) {
					hint = fmt.Sprintf(" (did you mean %s?)", f)
				}
			}
			p.failf(k, kp, "unknown field%s%s", hint, rejectedWhole)
		default:
			out[k.Value] = v
		}
		seen[k.Value] = true
	}
	return out
}

// list returns the items of a sequence; null is an empty list.
func (p *parser) list(n *yaml.Node, path string) []*yaml.Node {
	if isNull(n) || !p.plain(n, path) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.failf(n, path, "must be a list")
		return nil
	}
	return n.Content
}

// str returns a non-null scalar's text.
func (p *parser) str(n *yaml.Node, path string) (string, bool) {
	if !p.plain(n, path) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.failf(n, path, "must be a string")
		return "", false
	}
	return n.Value, true
}

// stringMap checks that n is a mapping of strings to strings.
func (p *parser) stringMap(n *yaml.Node, path string) {
	if isNull(n) || !p.plain(n, path) {
		return
	}
	if n.Kind != yaml.MappingNode {
		p.failf(n, path, "must be a mapping")
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, ok := p.str(n.Content[i], path); ok {
			p.str(n.Content[i+1], join(path, k))
		}
	}
}

func (p *parser) document(n *yaml.Node) (Policy, bool) {
	before := len(p.errs)
	pol := Policy{File: p.source, Line: p.line(n), Kind: KindCNP}
	f := p.object(n, "", documentSchema)
	if f == nil {
		return pol, false
	}
	if v, ok := f["apiVersion"]; !ok {
		p.failf(n, "apiVersion", "required (%s)", APIVersion)
	} else if s, ok := p.str(v, "apiVersion"); ok && s != APIVersion {
		p.failf(v, "apiVersion", "%q is not supported; must be %q", s, APIVersion)
	}
	if v, ok := f["kind"]; !ok {
		p.failf(n, "kind", "required (%s or %s)", KindCNP, KindCCNP)
	} else if s, ok := p.str(v, "kind"); ok {
		switch s {
		case KindCNP, KindCCNP:
			pol.Kind = s
		default:
			p.failf(v, "kind", "%q is not supported; must be %q or %q", s, KindCNP, KindCCNP)
		}
	}
	if v, ok := f["metadata"]; !ok {
		p.failf(n, "metadata", "required (metadata.name at least)")
	} else {
		p.metadata(v, &pol)
	}
	spec, specs := f["spec"], f["specs"]
	if isNull(spec) && isEmpty(specs) {
		p.failf(n, "spec", "a policy needs spec or specs")
	}
	if !isNull(spec) {
		pol.Rules = append(pol.Rules, p.rule(spec, "spec", pol.Namespace))
	}
	for i, item := range p.list(specs, "specs") {
		pol.Rules = append(pol.Rules, p.rule(item, index("specs", i), pol.Namespace))
	}
	return pol, len(p.errs) == before
}

func (p *parser) metadata(n *yaml.Node, pol *Policy) {
	f := p.object(n, "metadata", metadataSchema)
	if f == nil {
		return
	}
	if v, ok := f["name"]; !ok {
		p.failf(n, "metadata.name", "required")
	} else if s, ok := p.str(v, "metadata.name"); ok {
		for _, msg := range validation.IsDNS1123Subdomain(s) {
			p.failf(v, "metadata.name", "%q: %s", s, msg)
		}
		pol.Name = s
	}
	v, ok := f["namespace"]
	switch {
	case pol.Kind == KindCCNP && ok:
		p.warnf(v, "metadata.namespace", "a %s has no namespace (the API server drops it); ignored", KindCCNP)
	case pol.Kind == KindCCNP:
	case !ok:
		pol.Namespace = DefaultNamespace
	default:
		if s, ok := p.str(v, "metadata.namespace"); ok {
			for _, msg := range validation.IsDNS1123Label(s) {
				p.failf(v, "metadata.namespace", "%q: %s", s, msg)
			}
			pol.Namespace = s
		}
	}
	p.stringMap(f["labels"], "metadata.labels")
	p.stringMap(f["annotations"], "metadata.annotations")
	if v, ok := f["description"]; ok {
		p.str(v, "metadata.description")
	}
}

// rule reads one element of spec or specs of a policy in namespace ns
// ("" for a CiliumClusterwideNetworkPolicy).
func (p *parser) rule(n *yaml.Node, path, ns string) Rule {
	r := Rule{Path: path, Line: p.line(n), DefaultDeny: true}
	before := len(p.errs)
	f := p.object(n, path, ruleSchema)
	if f == nil {
		return r
	}
	// A refused or misspelt key explains a missing selector or ingress.
	keyErrs := len(p.errs) > before
	switch v := f["endpointSelector"]; {
	case !isNull(v):
		r.Subject = p.subject(v, join(path, "endpointSelector"), ns)
	case !keyErrs:
		p.failf(n, join(path, "endpointSelector"), "required: the endpoints this rule applies to ({} for all)")
	}
	// Cilium does not give fromEndpoints of a clusterwide rule whose
	// subject is the initialising endpoints its namespace requirement.
	init := r.Subject.hasReserved("init")
	if v, ok := f["description"]; ok {
		p.str(v, join(path, "description"))
	}
	if v, ok := f["enableDefaultDeny"]; ok {
		r.DefaultDeny = p.defaultDeny(v, join(path, "enableDefaultDeny"))
	}
	ing, deny := f["ingress"], f["ingressDeny"]
	for i, item := range p.list(ing, join(path, "ingress")) {
		r.Ingress = append(r.Ingress, p.peerRule(item, index(join(path, "ingress"), i), ns, init))
	}
	for i, item := range p.list(deny, join(path, "ingressDeny")) {
		r.IngressDeny = append(r.IngressDeny, p.peerRule(item, index(join(path, "ingressDeny"), i), ns, init))
	}
	if isEmpty(ing) && isEmpty(deny) && !keyErrs {
		p.failf(n, path, "has no ingress or ingressDeny rules (an empty list counts as none), so it would enforce nothing; to deny all ingress write `ingress: [{}]`")
	}
	return r
}

func (p *parser) defaultDeny(n *yaml.Node, path string) bool {
	f := p.object(n, path, defaultDenySchema)
	ingress := true
	if v, ok := f["ingress"]; ok {
		ingress = p.boolean(v, join(path, "ingress"))
	}
	if v, ok := f["egress"]; ok && p.boolean(v, join(path, "egress")) {
		p.failf(v, join(path, "egress"), "not supported by roost (egress default deny; roost enforces ingress only)%s", rejectedWhole)
	}
	return ingress
}

func (p *parser) boolean(n *yaml.Node, path string) bool {
	if !p.plain(n, path) {
		return false
	}
	var b bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
		p.failf(n, path, "must be true or false")
	}
	return b
}

var operators = map[string]selection.Operator{
	"In":           selection.In,
	"NotIn":        selection.NotIn,
	"Exists":       selection.Exists,
	"DoesNotExist": selection.DoesNotExist,
}

// labelSelector reads a label selector as written: each key with its
// Cilium source. check, if not nil, vets each requirement and reports
// what is wrong with it.
func (p *parser) labelSelector(n *yaml.Node, path string, check func(r requirement) error) Selector {
	f := p.object(n, path, selectorSchema)
	sel := Selector{valid: true}
	add := func(at *yaml.Node, path, raw string, op selection.Operator, values []string) {
		src, key, err := selectorKey(raw)
		if err != nil {
			p.failf(at, path, "%v", err)
			return
		}
		if check != nil {
			if err := check(requirement{source: src, key: key, op: op, values: values}); err != nil {
				p.failf(at, path, "%v", err)
				return
			}
		}
		if src != sourceReserved && !IsSecurityLabel(key) {
			holds := "never holds"
			if op == selection.NotIn || op == selection.DoesNotExist {
				holds = "always holds"
			}
			p.warnf(at, path, "%q is not a security label (Cilium, and roost, leave it out of identities): this requirement %s", key, holds)
		}
		if _, err := labels.NewRequirement(key, op, values); err != nil {
			p.failf(at, path, "%v", err)
			return
		}
		sel.reqs = append(sel.reqs, requirement{source: src, key: key, op: op, values: slices.Clone(values)})
	}
	if v, ok := f["matchLabels"]; ok && !isNull(v) && p.plain(v, join(path, "matchLabels")) {
		if v.Kind != yaml.MappingNode {
			p.failf(v, join(path, "matchLabels"), "must be a mapping")
		}
		for i := 0; v.Kind == yaml.MappingNode && i+1 < len(v.Content); i += 2 {
			kp := join(path, "matchLabels")
			key, ok1 := p.str(v.Content[i], kp)
			kp = join(kp, key)
			val, ok2 := p.str(v.Content[i+1], kp)
			if ok1 && ok2 {
				add(v.Content[i], kp, key, selection.Equals, []string{val})
			}
		}
	}
	for i, e := range p.list(f["matchExpressions"], join(path, "matchExpressions")) {
		ep := index(join(path, "matchExpressions"), i)
		ef := p.object(e, ep, expressionSchema)
		if ef == nil {
			continue
		}
		key, okKey := "", false
		if v, ok := ef["key"]; !ok {
			p.failf(e, join(ep, "key"), "required")
		} else {
			key, okKey = p.str(v, join(ep, "key"))
		}
		var op selection.Operator
		okOp := false
		if v, ok := ef["operator"]; !ok {
			p.failf(e, join(ep, "operator"), "required (In, NotIn, Exists or DoesNotExist)")
		} else if s, ok := p.str(v, join(ep, "operator")); ok {
			if op, okOp = operators[s]; !okOp {
				p.failf(v, join(ep, "operator"), "%q is not an operator (In, NotIn, Exists or DoesNotExist; Cilium's CRD refuses other spellings)", s)
			}
		}
		var values []string
		okValues := true
		for j, v := range p.list(ef["values"], join(ep, "values")) {
			s, ok := p.str(v, index(join(ep, "values"), j))
			okValues = okValues && ok
			values = append(values, s)
		}
		if okKey && okOp && okValues {
			add(e, ep, key, op, values)
		}
	}
	return sel
}

// subject reads the endpointSelector of a rule of a policy in namespace ns
// ("" for a clusterwide policy). In a namespace it only selects endpoints
// of that namespace, as Cilium adds the namespace to it; roost refuses a
// requirement on another namespace, which would select nothing.
func (p *parser) subject(n *yaml.Node, path, ns string) Selector {
	if ns == "" {
		return p.labelSelector(n, path, nil)
	}
	sel := p.labelSelector(n, path, func(r requirement) error {
		if r.key == NamespaceLabel && r.source != sourceReserved && (r.op != selection.Equals || r.values[0] != ns) {
			return fmt.Errorf("the endpointSelector of a policy in namespace %q always selects in that namespace; remove this requirement", ns)
		}
		return nil
	})
	return sel.with(requirement{source: sourceK8s, key: NamespaceLabel, op: selection.Equals, values: []string{ns}})
}

// peer reads a fromEndpoints selector of a rule of a policy in namespace ns
// ("" for a clusterwide policy) and adds what Cilium adds: unless it names
// a reserved label, what requirement adds.
func (p *parser) peer(n *yaml.Node, path, ns string, init bool) Selector {
	sel := p.labelSelector(n, path, nil)
	if sel.hasReserved("") {
		return sel
	}
	return inNamespace(sel, ns, init)
}

// requirement reads a fromRequires selector of a rule of a policy in
// namespace ns ("" for a clusterwide policy) and adds the namespace as
// Cilium does (see inNamespace), which unlike for fromEndpoints (see peer)
// it also does when the selector names a reserved label.
func (p *parser) requirement(n *yaml.Node, path, ns string, init bool) Selector {
	return inNamespace(p.labelSelector(n, path, nil), ns, init)
}

// inNamespace adds to a peer selector of a rule of a policy in namespace ns
// what Cilium's getEndpointSelector adds, unless it names NamespaceLabel:
// the policy's namespace (unless it names a namespace label) or, in a
// clusterwide policy, that the source has a namespace (unless the rule's
// subject is the initialising endpoints, init).
func inNamespace(sel Selector, ns string, init bool) Selector {
	switch {
	case sel.hasKey(NamespaceLabel):
		return sel
	case ns == "" && init:
		return sel
	case ns == "":
		return sel.with(requirement{source: sourceK8s, key: NamespaceLabel, op: selection.Exists})
	case sel.hasKeyPrefix(NamespaceLabelsPrefix):
		return sel
	}
	return sel.with(requirement{source: sourceK8s, key: NamespaceLabel, op: selection.Equals, values: []string{ns}})
}

// peerRule reads one element of ingress or ingressDeny of a rule of a
// policy in namespace ns; init says the rule's subject is the
// initialising endpoints (see peer).
func (p *parser) peerRule(n *yaml.Node, path, ns string, init bool) PeerRule {
	r := PeerRule{Path: path, Line: p.line(n)}
	f := p.object(n, path, peerSchema)
	if f == nil {
		return r
	}
	var kinds []string
	for _, k := range []string{"fromEndpoints", "fromEntities", "fromCIDR", "fromCIDRSet", "toPorts", "icmps"} {
		v := f[k]
		switch {
		case v != nil && v.Kind == yaml.SequenceNode && len(v.Content) == 0 && (k == "toPorts" || k == "icmps"):
			p.failf(v, join(path, k), "an empty list is ambiguous; leave %s out to cover every port", k)
		case v != nil && v.Kind == yaml.SequenceNode && len(v.Content) == 0:
			// Cilium selects nothing for an explicit empty list (but
			// everything when the field is absent); refuse the trap.
			p.failf(v, join(path, k), "an empty list is ambiguous (Cilium selects nothing with it, everything without it); remove it, or write fromEntities: [all]")
		case !isEmpty(v) && k != "toPorts" && k != "icmps":
			kinds = append(kinds, k)
		}
	}
	if len(kinds) > 1 {
		p.failf(n, path, "combining %s in one rule is not supported (Cilium refuses it too); write one rule per kind of peer", strings.Join(kinds, " and "))
	}
	if !isEmpty(f["toPorts"]) && !isEmpty(f["icmps"]) {
		p.failf(n, path, "toPorts and icmps in one rule are not supported (Cilium refuses it too); write one rule for each")
	}
	for i, item := range p.list(f["fromEndpoints"], join(path, "fromEndpoints")) {
		r.Endpoints = append(r.Endpoints, p.peer(item, index(join(path, "fromEndpoints"), i), ns, init))
	}
	for i, item := range p.list(f["fromRequires"], join(path, "fromRequires")) {
		r.Requires = append(r.Requires, p.requirement(item, index(join(path, "fromRequires"), i), ns, init))
	}
	for i, item := range p.list(f["fromEntities"], join(path, "fromEntities")) {
		ip := index(join(path, "fromEntities"), i)
		s, ok := p.str(item, ip)
		switch e := Entity(s); {
		case !ok:
		case slices.Contains(entities, e):
			r.Entities = append(r.Entities, e)
		case entityReasons[s] != "":
			p.failf(item, ip, "entity %q is not supported by roost (%s)%s", s, entityReasons[s], rejectedWhole)
		default:
			names := make([]string, len(entities))
			for i, e := range entities {
				names[i] = string(e)
			}
			p.failf(item, ip, "unknown entity %q (roost supports %s)", s, strings.Join(names, ", "))
		}
	}
	for i, item := range p.list(f["fromCIDR"], join(path, "fromCIDR")) {
		if pfx, ok := p.prefix(item, index(join(path, "fromCIDR"), i), true); ok {
			r.CIDRs = append(r.CIDRs, CIDRSelector{Prefix: pfx})
		}
	}
	for i, item := range p.list(f["fromCIDRSet"], join(path, "fromCIDRSet")) {
		if c, ok := p.cidrRule(item, index(join(path, "fromCIDRSet"), i)); ok {
			r.CIDRs = append(r.CIDRs, c)
		}
	}
	for i, item := range p.list(f["toPorts"], join(path, "toPorts")) {
		r.Ports = append(r.Ports, p.portRule(item, index(join(path, "toPorts"), i))...)
	}
	for i, item := range p.list(f["icmps"], join(path, "icmps")) {
		r.Ports = append(r.Ports, p.icmpRule(item, index(join(path, "icmps"), i))...)
	}
	return r
}

// icmpRule reads one icmps element: its fields, each an ICMP type of a
// family.
func (p *parser) icmpRule(n *yaml.Node, path string) []PortRange {
	f := p.object(n, path, icmpSchema)
	if f == nil {
		return nil
	}
	v := f["fields"]
	items := p.list(v, join(path, "fields"))
	if isEmpty(v) {
		p.failf(n, join(path, "fields"), "must list at least one ICMP type")
	}
	if len(items) > maxICMPFields {
		p.failf(v, join(path, "fields"), "%d fields; Cilium allows at most %d per icmps entry", len(items), maxICMPFields)
	}
	var out []PortRange
	for i, item := range items {
		fp := index(join(path, "fields"), i)
		ff := p.object(item, fp, icmpFieldSchema)
		if ff == nil {
			continue
		}
		family := FamilyIPv4
		if fv, ok := ff["family"]; ok {
			if s, ok := p.str(fv, join(fp, "family")); ok {
				switch s {
				case FamilyIPv4, FamilyIPv6:
					family = s
				default:
					p.failf(fv, join(fp, "family"), "%q is not a family (IPv4 or IPv6)", s)
					continue
				}
			}
		}
		tv, ok := ff["type"]
		if !ok {
			p.failf(item, join(fp, "type"), "required (a number 0-255 or a type name such as EchoRequest)")
			continue
		}
		s, ok := p.str(tv, join(fp, "type"))
		if !ok {
			continue
		}
		t, err := parseICMPType(s, family)
		if err != nil {
			p.failf(tv, join(fp, "type"), "%v", err)
			continue
		}
		proto := ProtoICMP
		if family == FamilyIPv6 {
			proto = ProtoICMPv6
		}
		out = append(out, PortRange{Protocol: proto, Port: uint16(t), EndPort: uint16(t)})
	}
	return out
}

// prefix parses a CIDR; bareIP also accepts an address (fromCIDR does).
func (p *parser) prefix(n *yaml.Node, path string, bareIP bool) (netip.Prefix, bool) {
	s, ok := p.str(n, path)
	if !ok {
		return netip.Prefix{}, false
	}
	pfx, err := netip.ParsePrefix(s)
	if err != nil && bareIP {
		if a, err2 := netip.ParseAddr(s); err2 == nil && a.Zone() == "" {
			pfx, err = netip.PrefixFrom(a, a.BitLen()), nil
		}
	}
	switch {
	case err != nil:
		p.failf(n, path, "%q is not a CIDR prefix like 10.0.0.0/8 or 2001:db8::/32", s)
	case pfx.Addr().Is4In6():
		p.failf(n, path, "%q: IPv4-mapped IPv6 prefixes are not supported; write the IPv4 prefix", s)
	case pfx != pfx.Masked():
		p.failf(n, path, "%q has bits set after the prefix length; did you mean %s?", s, pfx.Masked())
	default:
		return pfx, true
	}
	return netip.Prefix{}, false
}

func (p *parser) cidrRule(n *yaml.Node, path string) (CIDRSelector, bool) {
	f := p.object(n, path, cidrRuleSchema)
	if f == nil {
		return CIDRSelector{}, false
	}
	v, ok := f["cidr"]
	if !ok {
		if len(f) == len(n.Content)/2 { // not explained by a refused key
			p.failf(n, join(path, "cidr"), "required")
		}
		return CIDRSelector{}, false
	}
	pfx, ok := p.prefix(v, join(path, "cidr"), false)
	c := CIDRSelector{Prefix: pfx}
	for i, item := range p.list(f["except"], join(path, "except")) {
		ip := index(join(path, "except"), i)
		ex, okEx := p.prefix(item, ip, false)
		switch {
		case !okEx || !ok:
		case ex.Bits() < pfx.Bits() || !pfx.Contains(ex.Addr()):
			p.failf(item, ip, "%s is not inside cidr %s", ex, pfx)
		default:
			c.Except = append(c.Except, ex)
		}
	}
	return c, ok
}

func (p *parser) portRule(n *yaml.Node, path string) []PortRange {
	f := p.object(n, path, portRuleSchema)
	if f == nil {
		return nil
	}
	v := f["ports"]
	items := p.list(v, join(path, "ports"))
	if isEmpty(v) {
		p.failf(n, join(path, "ports"), "must list at least one port")
	}
	if len(items) > maxPorts {
		p.failf(v, join(path, "ports"), "%d ports; Cilium allows at most %d per toPorts entry", len(items), maxPorts)
	}
	var out []PortRange
	for i, item := range items {
		if pr, ok := p.port(item, index(join(path, "ports"), i)); ok {
			out = append(out, pr)
		}
	}
	return out
}

// portName is an IANA service name, which is what Cilium takes for a named
// port (1-15 characters); names compare case-insensitively.
var portName = regexp.MustCompile(`^([a-zA-Z0-9]-?)*[a-zA-Z](-?[a-zA-Z0-9])*$`)

func (p *parser) port(n *yaml.Node, path string) (PortRange, bool) {
	f := p.object(n, path, portSchema)
	if f == nil {
		return PortRange{}, false
	}
	before := len(p.errs)
	var pr PortRange
	if v, ok := f["port"]; !ok {
		p.failf(n, join(path, "port"), "required (0 for every port)")
	} else if s, ok := p.str(v, join(path, "port")); ok {
		num, err := strconv.ParseUint(s, 10, 16)
		switch {
		case err == nil && len(s) > 1 && s[0] == '0':
			// Cilium reads "010" as octal 8.
			p.failf(v, join(path, "port"), "%q has a leading zero, which Cilium reads as octal; write the port without it", s)
		case err == nil:
			pr.Port = uint16(num)
		case len(s) <= 15 && portName.MatchString(s):
			pr.Name = strings.ToLower(s)
		default:
			p.failf(v, join(path, "port"), "%q is not a port number (1-65535, or 0 for every port) or a port name (up to 15 letters, digits and single '-', with a letter)", s)
		}
	}
	if v, ok := f["endPort"]; ok && p.plain(v, join(path, "endPort")) {
		end, err := strconv.ParseUint(v.Value, 10, 16)
		switch {
		case v.Kind != yaml.ScalarNode || v.Tag != "!!int" || err != nil:
			p.failf(v, join(path, "endPort"), "%q is not a port number (1-65535)", v.Value)
		case end == 0:
			// 0 is Cilium's "no range".
		case pr.Name != "":
			p.failf(v, join(path, "endPort"), "does not go with a named port (%s)", pr.Name)
		case pr.Port == 0:
			p.failf(v, join(path, "endPort"), "needs a port other than 0 (port 0 already means every port)")
		case uint16(end) < pr.Port:
			p.failf(v, join(path, "endPort"), "%d is below port %d", end, pr.Port)
		default:
			pr.EndPort = uint16(end)
		}
	}
	if pr.EndPort == 0 {
		pr.EndPort = pr.Port
	}
	if v, ok := f["protocol"]; ok {
		if s, ok := p.str(v, join(path, "protocol")); ok {
			proto, err := ParseProtocol(s)
			if err != nil {
				p.failf(v, join(path, "protocol"), "%v", err)
			}
			pr.Protocol = proto
		}
	}
	return pr, len(p.errs) == before
}
