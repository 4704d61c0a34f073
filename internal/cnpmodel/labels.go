package cnpmodel

import (
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Label sources, as in Cilium's pkg/labels.
const (
	sourceAny      = "any"
	sourceK8s      = "k8s"
	sourceReserved = "reserved"
	sourceCIDR     = "cidr"
)

// Label keys Cilium derives for a pod (pkg/k8s/apis/cilium.io/const.go).
const (
	ciliumLabelPrefix     = "io.cilium.k8s" // RemoveCiliumLabels drops pod labels with this prefix (no trailing dot)
	podNamespaceLabel     = "io.kubernetes.pod.namespace"
	namespaceLabelsPrefix = "io.cilium.k8s.namespace.labels."
	serviceAccountLabel   = "io.cilium.k8s.policy.serviceaccount"
	clusterLabel          = "io.cilium.k8s.policy.cluster"
)

// label is one label of a security identity.
type label struct {
	source, key, value string
	prefix             netip.Prefix // for source cidr: the prefix the key names
}

func (l label) String() string {
	s := l.source + ":" + l.key
	if l.value != "" {
		s += "=" + l.value
	}
	return s
}

// labelSet is the label set of a security identity, sorted by key as Cilium's LabelArray is.
type labelSet []label

func (ls labelSet) String() string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = l.String()
	}
	return strings.Join(parts, ",")
}

// get returns the value of the first label that has the requirement's key, with the semantics of
// Cilium's LabelArray.Get and Label.HasKey: a requirement of source any accepts a label of any
// source, any other source only its own; two cidr keys match when the requirement's prefix
// contains the label's prefix.
func (ls labelSet) get(r requirement) (string, bool) {
	for _, l := range ls {
		if r.source != sourceAny && l.source != r.source {
			continue
		}
		if r.source == sourceCIDR && l.source == sourceCIDR && r.prefix.IsValid() && l.prefix.IsValid() &&
			r.prefix.Bits() <= l.prefix.Bits() && r.prefix.Contains(l.prefix.Addr()) {
			return l.value, true
		}
		if l.key == r.key {
			return l.value, true
		}
	}
	return "", false
}

func reservedLabels(names ...string) labelSet {
	ls := make(labelSet, len(names))
	for i, n := range names {
		ls[i] = label{source: sourceReserved, key: n}
	}
	return ls
}

func cidrLabel(p netip.Prefix) label {
	return label{source: sourceCIDR, key: cidrKey(p), prefix: p}
}

// cidrKey writes a prefix the way Cilium's maskedIPToLabel does: colons become dashes, with a
// zero added where an IPv6 address starts or ends with one.
func cidrKey(p netip.Prefix) string {
	var b strings.Builder
	a := p.Addr().String()
	for i := 0; i < len(a); i++ {
		switch {
		case a[i] != ':':
			b.WriteByte(a[i])
		case i == 0:
			b.WriteString("0-")
		case i == len(a)-1:
			b.WriteString("-0")
		default:
			b.WriteByte('-')
		}
	}
	return b.String() + "/" + strconv.Itoa(p.Bits())
}

// endpointLabels returns the identity labels of an endpoint: its pod labels without Cilium's own,
// the labels SanitizePodLabels derives (pkg/k8s/utils/utils.go), all of source k8s, then what the
// default label filter keeps (pkg/labelsfilter/filter.go; Cilium filters the derived labels too).
func endpointLabels(e Endpoint, cluster string) labelSet {
	m := make(map[string]string, len(e.Labels)+len(e.NamespaceLabels)+3)
	for k, v := range e.Labels {
		if !strings.HasPrefix(k, ciliumLabelPrefix) {
			m[k] = v
		}
	}
	for k, v := range e.NamespaceLabels {
		m[namespaceLabelsPrefix+k] = v
	}
	m[podNamespaceLabel] = e.Namespace
	if e.ServiceAccount != "" {
		m[serviceAccountLabel] = e.ServiceAccount
	}
	m[clusterLabel] = cluster

	ls := make(labelSet, 0, len(m))
	for k, v := range m {
		if identityRelevant(sourceK8s, k) {
			ls = append(ls, label{source: sourceK8s, key: k, value: v})
		}
	}
	slices.SortFunc(ls, func(a, b label) int { return strings.Compare(a.key, b.key) })
	return ls
}

// labelPrefix is one entry of Cilium's label filter: a regular expression that counts when its
// leftmost match in a label's key starts at the key's first byte.
type labelPrefix struct {
	ignore  bool
	source  string // "" matches every source
	literal string // the expression, when it is a plain string
	re      *regexp.Regexp
}

func newLabelPrefix(expr string) labelPrefix {
	var p labelPrefix
	if i := strings.IndexByte(expr, ':'); i >= 0 {
		p.source, expr = expr[:i], expr[i+1:]
	}
	if strings.HasPrefix(expr, "!") {
		p.ignore, expr = true, expr[1:]
	}
	if lit, complete := regexp.MustCompile(expr).LiteralPrefix(); complete {
		p.literal = lit
	} else {
		// Anchored: the same matches as Cilium's FindStringIndex with start 0, without trying
		// every start.
		p.re = regexp.MustCompile(`^(?:` + expr + `)`)
	}
	return p
}

// match returns the length of the match at the start of key, or -1.
func (p labelPrefix) match(key string) int {
	if p.re == nil {
		if strings.HasPrefix(key, p.literal) {
			return len(p.literal)
		}
		return -1
	}
	if loc := p.re.FindStringIndex(key); loc != nil {
		return loc[1]
	}
	return -1
}

// defaultLabelFilter is Cilium's defaultLabelPrefixCfg (pkg/labelsfilter/filter.go) with no
// user-supplied prefixes, so not a whitelist.
var defaultLabelFilter = func() []labelPrefix {
	exprs := []string{
		"reserved:.*",
		regexp.QuoteMeta(podNamespaceLabel),
		regexp.QuoteMeta("io.cilium.k8s.namespace.labels"),
		regexp.QuoteMeta("app.kubernetes.io"),
		regexp.QuoteMeta(clusterLabel),
		regexp.QuoteMeta(serviceAccountLabel),
		`!io\.kubernetes`,
		`!kubernetes\.io`,
		"!" + regexp.QuoteMeta("statefulset.kubernetes.io/pod-name"),
		"!" + regexp.QuoteMeta("apps.kubernetes.io/pod-index"),
		"!" + regexp.QuoteMeta("batch.kubernetes.io/job-completion-index"),
		"!" + regexp.QuoteMeta("batch.kubernetes.io/controller-uid"),
		`!.*beta\.kubernetes\.io`,
		`!k8s\.io`,
		`!pod-template-generation`,
		`!pod-template-hash`,
		`!controller-revision-hash`,
		`!controller-uid`,
		`!annotation.*`,
		`!etcd_node`,
	}
	f := make([]labelPrefix, len(exprs))
	for i, e := range exprs {
		f[i] = newLabelPrefix(e)
	}
	return f
}()

// relevant memoizes identityRelevant by source and key: the filter's regular expressions would
// otherwise dominate the cost of a verdict.
var relevant sync.Map

// identityRelevant reports whether the default label filter keeps a label for identity: a prefix
// matches when the leftmost match of its expression starts at the key's first byte, and the label
// is kept unless the shortest matching ignore is at least as long as the longest matching include.
func identityRelevant(source, key string) bool {
	k := source + ":" + key
	if v, ok := relevant.Load(k); ok {
		return v.(bool)
	}
	keep := filterLabel(source, key)
	relevant.Store(k, keep)
	return keep
}

func filterLabel(source, key string) bool {
	included, ignored := 0, 0
	for _, p := range defaultLabelFilter {
		if p.source != "" && p.source != source {
			continue
		}
		n := p.match(key)
		if n < 0 {
			continue
		}
		if p.ignore {
			if ignored == 0 || n < ignored {
				ignored = n
			}
		} else if n > included {
			included = n
		}
	}
	return ignored == 0 || included > ignored
}

// Selector operators, as in Kubernetes' LabelSelector.
const (
	opIn           = "In"
	opNotIn        = "NotIn"
	opExists       = "Exists"
	opDoesNotExist = "DoesNotExist"
)

// requirement is one term of a selector.
type requirement struct {
	source, key  string
	prefix       netip.Prefix // for source cidr
	op           string
	values       []string
	localCluster bool // the value is World.Cluster, known only when deciding (entity cluster)
}

func (r requirement) matches(ls labelSet, cluster string) bool {
	v, ok := ls.get(r)
	values := r.values
	if r.localCluster {
		values = []string{cluster}
	}
	switch r.op {
	case opIn:
		return ok && slices.Contains(values, v)
	case opNotIn:
		return !ok || !slices.Contains(values, v)
	case opExists:
		return ok
	case opDoesNotExist:
		return !ok
	}
	return false
}

func (r requirement) String() string {
	k := r.source + ":" + r.key
	switch {
	case r.localCluster:
		return k + "=<cluster>"
	case r.op == opIn && len(r.values) == 1:
		return k + "=" + r.values[0]
	case r.op == opExists || r.op == opDoesNotExist:
		return r.op + " " + k
	}
	return k + " " + r.op + " (" + strings.Join(r.values, ",") + ")"
}

// selector is a compiled EndpointSelector: every requirement must match; none matches everything.
type selector struct {
	reqs []requirement
}

func (s selector) matches(ls labelSet, cluster string) bool {
	for _, r := range s.reqs {
		if !r.matches(ls, cluster) {
			return false
		}
	}
	return true
}

func (s selector) String() string {
	parts := make([]string, len(s.reqs))
	for i, r := range s.reqs {
		parts[i] = r.String()
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// rawSelector is a label selector whose keys have been extended to Cilium's "source.key" form,
// before the namespace rules of ParseToCiliumRule are applied.
type rawSelector struct {
	matchLabels map[string]string
	exprs       []rawExpr
}

type rawExpr struct {
	key    string // extended key
	op     string
	values []string
}

func (s rawSelector) hasKey(key string) bool {
	if _, ok := s.matchLabels[key]; ok {
		return true
	}
	return slices.ContainsFunc(s.exprs, func(e rawExpr) bool { return e.key == key })
}

func (s rawSelector) hasKeyPrefix(prefix string) bool {
	for k := range s.matchLabels {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return slices.ContainsFunc(s.exprs, func(e rawExpr) bool { return strings.HasPrefix(e.key, prefix) })
}

func (s *rawSelector) addMatch(key, value string) {
	if s.matchLabels == nil {
		s.matchLabels = map[string]string{}
	}
	s.matchLabels[key] = value
}

func (s *rawSelector) addExists(key string) {
	s.exprs = append(s.exprs, rawExpr{key: key, op: opExists})
}

func (s rawSelector) compile() selector {
	var sel selector
	for k, v := range s.matchLabels {
		sel.reqs = append(sel.reqs, newRequirement(k, opIn, []string{v}))
	}
	slices.SortFunc(sel.reqs, func(a, b requirement) int { return strings.Compare(a.String(), b.String()) })
	for _, e := range s.exprs {
		sel.reqs = append(sel.reqs, newRequirement(e.key, e.op, e.values))
	}
	return sel
}

// newRequirement splits an extended key as Cilium's parseSelectLabel(key, '.') does.
func newRequirement(extKey, op string, values []string) requirement {
	r := requirement{source: sourceAny, key: extKey, op: op, values: values}
	switch i := strings.IndexByte(extKey, '.'); {
	case strings.HasPrefix(extKey, "$"):
		r.source, r.key = sourceReserved, extKey[1:]
	case i >= 0:
		r.source, r.key = extKey[:i], extKey[i+1:]
	}
	if i := strings.IndexByte(r.key, '='); i >= 0 {
		r.key = r.key[:i]
	}
	if r.source == "" {
		r.source = sourceAny
	}
	if r.source == sourceCIDR {
		if p, err := netip.ParsePrefix(strings.ReplaceAll(r.key, "-", ":")); err == nil {
			r.prefix = p
		}
	}
	return r
}

// extendKey turns a key as a user writes it in a selector ("app", "k8s:app", "reserved:host",
// "$host") into Cilium's extended form "source.key" (GetExtendedKeyFrom in pkg/labels).
func extendKey(key string) string {
	src, next := "", key
	switch i := strings.IndexByte(key, ':'); {
	case key == "":
	case key[0] == '$':
		src, next = sourceReserved, key[1:]
	case i >= 0:
		src, next = key[:i], key[i+1:]
	case strings.HasPrefix(key, sourceReserved+"."):
		src, next = sourceReserved, strings.TrimPrefix(key, sourceReserved+".")
	}
	if src == "" {
		src = sourceAny
	}
	if i := strings.IndexByte(next, '='); i >= 0 {
		next = next[:i]
	}
	return src + "." + next
}

// Selectors of single labels.
func labelSelector(source, key string) selector {
	return selector{reqs: []requirement{{source: source, key: key, op: opIn, values: []string{""}}}}
}

func cidrSelector(p netip.Prefix) selector {
	return selector{reqs: []requirement{{source: sourceCIDR, key: cidrKey(p), prefix: p, op: opIn, values: []string{""}}}}
}

// Reserved identity names (pkg/labels/labels.go).
const (
	reservedHost          = "host"
	reservedRemoteNode    = "remote-node"
	reservedWorld         = "world"
	reservedWorldIPv4     = "world-ipv4"
	reservedWorldIPv6     = "world-ipv6"
	reservedInit          = "init"
	reservedIngress       = "ingress"
	reservedHealth        = "health"
	reservedUnmanaged     = "unmanaged"
	reservedKubeAPIServer = "kube-apiserver"
	reservedNone          = "none"
)

// entitySelectors returns the selectors of an entity (EntitySelectorMapping in
// pkg/policy/api/entity.go, with InitEntities for cluster) and whether the entity is known.
func entitySelectors(entity string) ([]selector, bool) {
	reserved := func(names ...string) []selector {
		s := make([]selector, len(names))
		for i, n := range names {
			s[i] = labelSelector(sourceReserved, n)
		}
		return s
	}
	switch entity {
	case "all":
		return []selector{{}}, true
	case "world":
		return reserved(reservedWorld, reservedWorldIPv4, reservedWorldIPv6), true
	case "world-ipv4", "world-ipv6", "host", "remote-node", "init", "ingress", "health", "unmanaged", "kube-apiserver":
		return reserved(entity), true
	case "none":
		return reserved(reservedNone), true
	case "cluster":
		s := reserved(reservedHost, reservedRemoteNode, reservedInit, reservedIngress, reservedHealth, reservedUnmanaged, reservedKubeAPIServer)
		return append(s, selector{reqs: []requirement{{source: sourceK8s, key: clusterLabel, op: opIn, localCluster: true}}}), true
	}
	return nil, false
}
