package loader

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/roost-net/roost/internal/cnpmodel"
	"github.com/roost-net/roost/internal/datapath"
	"github.com/roost-net/roost/internal/endpoints"
	"github.com/roost-net/roost/internal/policy"
)

// The differential test: for a policy document roost accepts, build a world
// of workloads from what the document names (its selectors' labels and
// namespaces, its ports, CIDRs and ICMP types), and check every flow from
// every source to every destination three ways: roost's reference decision
// (policy.EndpointPolicy.Decide after the ipcache lookup), the datapath's
// verdict tables as the loader builds them (the kernel's lookup is checked
// against these by internal/datapath's BPF_PROG_TEST_RUN tests), and
// cnpmodel, a model of Cilium's semantics written apart from roost's
// compiler. All three must agree on every flow.
//
// The documents: roost's own test policies, those under
// testdata/differential, and, with ROOST_CNP_CORPUS=DIR, every *.yaml of
// DIR (the corpus test also prints the tally of accepted and refused
// documents by reason, and fails if roost refuses a document whose ingress
// side Cilium's model takes and that has no egress or host policy).

// differentialDirs hold the project's own policies for the differential test.
var differentialDirs = []string{
	"testdata/differential",
	"../policy/testdata/policies",
	"../endpoints/testdata/policies",
}

// differentialCluster is the world's cluster name: not the default, so that
// a compiler that ignores it differs from the model.
const differentialCluster = "dc1"

func TestDifferential(t *testing.T) {
	var files []string
	for _, dir := range differentialDirs {
		m, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 10 {
		t.Fatalf("only %d policy files for the differential test", len(files))
	}
	flows := 0
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			n, err := differential(t, data, f)
			if err != nil {
				t.Fatalf("roost refuses the project's own policy: %v", err)
			}
			flows += n
		})
	}
	t.Logf("%d files, %d flows compared", len(files), flows)
}

// TestDifferentialCorpus runs the differential test over a directory of
// public policies (ROOST_CNP_CORPUS) and prints the tally.
func TestDifferentialCorpus(t *testing.T) {
	dir := os.Getenv("ROOST_CNP_CORPUS")
	if dir == "" {
		t.Skip("set ROOST_CNP_CORPUS=DIR to run the differential test over a directory of policies")
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no *.yaml in ROOST_CNP_CORPUS=%s (%v)", dir, err)
	}
	refused := map[string][]string{}
	var accepted []string
	var shouldAccept []string
	flows := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		var roostErr error
		t.Run(name, func(t *testing.T) {
			n, err := differential(t, data, f)
			roostErr = err
			flows += n
		})
		if roostErr == nil {
			accepted = append(accepted, name)
			continue
		}
		reason := refusalReason(roostErr)
		refused[reason] = append(refused[reason], name)
		if why := l3l4Ingress(data); why == "" {
			shouldAccept = append(shouldAccept, fmt.Sprintf("%s: %s", name, firstLine(roostErr)))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "corpus %s: %d documents, %d accepted, %d refused; %d flows compared\n", dir, len(files), len(accepted), len(files)-len(accepted), flows)
	reasons := slices.SortedFunc(maps.Keys(refused), func(a, b string) int {
		return cmp.Or(cmp.Compare(len(refused[b]), len(refused[a])), cmp.Compare(a, b))
	})
	for _, r := range reasons {
		fmt.Fprintf(&b, "  refused %3d  %s\n", len(refused[r]), r)
	}
	t.Log(b.String())
	if out := os.Getenv("ROOST_CNP_TALLY"); out != "" {
		var detail strings.Builder
		detail.WriteString(b.String())
		for _, a := range accepted {
			fmt.Fprintf(&detail, "accepted %s\n", a)
		}
		for _, r := range reasons {
			for _, f := range refused[r] {
				fmt.Fprintf(&detail, "refused %s: %s\n", f, r)
			}
		}
		if err := os.WriteFile(out, []byte(detail.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
	if len(shouldAccept) > 0 {
		t.Errorf("roost refuses %d documents whose ingress side is L3/L4 only (Cilium's model takes them; no egress, no host policy):\n  %s",
			len(shouldAccept), strings.Join(shouldAccept, "\n  "))
	}
}

// FuzzDifferential drives the differential comparison with arbitrary
// documents, seeded with the project's policies.
func FuzzDifferential(f *testing.F) {
	for _, dir := range differentialDirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, file := range files {
			if b, err := os.ReadFile(file); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 8<<10 {
			return
		}
		differentialBudget(t, data, "fuzz.yaml", 4000)
	})
}

// differential compares roost, its datapath tables and the model on the
// document data over a world built from it. It returns the number of
// flows compared, and roost's refusal (Parse or Compile) as an error; a
// difference fails t.
func differential(t *testing.T, data []byte, source string) (int, error) {
	return differentialBudget(t, data, source, 0)
}

// differentialBudget is differential with at most budget flows (0: no
// limit).
func differentialBudget(t *testing.T, data []byte, source string, budget int) (int, error) {
	t.Helper()
	pols, err := policy.Parse(bytes.NewReader(data), source)
	if err != nil {
		return 0, err
	}
	if len(pols) == 0 {
		return 0, nil
	}
	model, err := cnpmodel.Load(bytes.NewReader(data), policy.DefaultNamespace)
	if err != nil {
		t.Fatalf("roost accepts what the model of Cilium cannot judge: %v", err)
	}
	w := buildWorld(data, pols)
	res, err := policy.Compile(pols, w.roost, policy.WithHostIPs(w.model.HostIPs...),
		policy.WithRemoteNodeIPs(nodeAddrs(w.model.Nodes)...), policy.WithCluster(differentialCluster))
	if err != nil {
		return 0, err
	}
	byName := map[string]policy.EndpointPolicy{}
	for _, ep := range res.Endpoints {
		byName[ep.Name] = ep
	}
	n := 0
	var diffs []string
	for _, dst := range w.dsts {
		ep, ok := byName[dst]
		if !ok {
			t.Fatalf("no resolved policy for local endpoint %s", dst)
		}
		enforce, tables, err := policyTables(ep)
		if errors.Is(err, datapath.ErrTableTooLarge) {
			// The loader refuses to apply such a policy (the last good
			// one stays): a refusal like Parse's.
			return n, fmt.Errorf("endpoint %s: %w", dst, err)
		}
		if err != nil {
			t.Fatalf("%s: verdict tables: %v", dst, err)
		}
		for _, src := range w.srcs {
			remote := res.Lookup(src)
			for _, pp := range w.flows {
				if budget > 0 && n >= budget {
					return n, nil
				}
				n++
				f := cnpmodel.Flow{Src: src, Dst: dst, Proto: pp.proto, Port: pp.port}
				want := w.model.Verdict(model, f)
				dec := ep.Decide(remote, policy.Protocol(pp.proto), pp.port)
				dp := datapathVerdict(enforce, tables, remote, policy.Protocol(pp.proto), pp.port)
				if sameVerdict(want, dec) && sameVerdict(want, dp) {
					continue
				}
				if len(diffs) < 10 {
					_, why := w.model.Explain(model, f)
					diffs = append(diffs, fmt.Sprintf("%s -> %s %s: model %s, roost %s, datapath %s\n      model: %s\n      roost: identity %d; entries:\n%s",
						src, dst, protoPortName(pp), want, dec, dp, why, remote, entriesText(ep)))
				}
			}
		}
	}
	if len(diffs) > 0 {
		t.Errorf("%s: roost differs from the model of Cilium on %d or more flows:\n  %s", source, len(diffs), strings.Join(diffs, "\n  "))
	}
	return n, nil
}

func sameVerdict(m cnpmodel.Verdict, v policy.Verdict) bool {
	return m == cnpmodel.Allow && v == policy.Allow || m == cnpmodel.Deny && v == policy.Deny
}

func nodeAddrs(nodes []cnpmodel.Node) []netip.Addr {
	var out []netip.Addr
	for _, n := range nodes {
		out = append(out, n.IPs...)
	}
	return out
}

func entriesText(ep policy.EndpointPolicy) string {
	var b strings.Builder
	fmt.Fprintf(&b, "        enforced %v, selected by %d rules\n", ep.Enforced, len(ep.SelectedBy))
	for i, e := range ep.Entries {
		if i == 12 {
			fmt.Fprintf(&b, "        ... %d more\n", len(ep.Entries)-i)
			break
		}
		from := "any"
		if e.Remote != policy.IdentityAny {
			from = e.Remote.String()
		}
		fmt.Fprintf(&b, "        %s %s from %s\n", e.Verdict, e.Ports(), from)
	}
	return b.String()
}

// protoPort is a protocol and port (ICMP type) of a flow.
type protoPort struct {
	proto uint8
	port  uint16
}

func protoPortName(pp protoPort) string {
	return fmt.Sprintf("%s/%d", policy.Protocol(pp.proto), pp.port)
}

// world is the universe of one document: the same workloads for roost and
// the model, the local destinations and sources to try, and the flows.
type world struct {
	model cnpmodel.World
	roost []policy.Endpoint
	dsts  []string
	srcs  []netip.Addr
	flows []protoPort
}

// hints is what a document names, read from its YAML without either
// roost's parser or the model's.
type hints struct {
	labels     map[string][]string // pod label key → values ("x" for an Exists)
	nsNames    []string
	nsLabels   map[string][]string // namespace label key → values
	sas        []string
	profiles   []map[string]string // labels that satisfy each selector, namespace keys aside
	ports      []uint16
	portNames  []string
	icmp4      []uint16
	icmp6      []uint16
	prefixes   []netip.Prefix
	namespaces []string // metadata.namespace of the documents
}

// icmpNames are the ICMP type names the corpus uses, by family.
var icmpNames = map[string]uint16{
	"4:EchoReply": 0, "4:DestinationUnreachable": 3, "4:Echo": 8, "4:EchoRequest": 8, "4:TimeExceeded": 11,
	"6:DestinationUnreachable": 1, "6:PacketTooBig": 2, "6:EchoRequest": 128, "6:EchoReply": 129,
	"6:NeighborSolicitation": 135, "6:NeighborAdvertisement": 136,
}

func readHints(data []byte) hints {
	h := hints{labels: map[string][]string{}, nsLabels: map[string][]string{}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			break
		}
		h.walk(&n, "")
	}
	return h
}

func (h *hints) addLabel(raw, value string) {
	src, key, ok := strings.Cut(raw, ":")
	if !ok {
		key = raw
	} else if src == "reserved" || src == "cidr" {
		return
	}
	switch {
	case key == policy.NamespaceLabel:
		h.nsNames = appendNew(h.nsNames, value)
	case strings.HasPrefix(key, policy.NamespaceLabelsPrefix):
		k := strings.TrimPrefix(key, policy.NamespaceLabelsPrefix)
		h.nsLabels[k] = appendNew(h.nsLabels[k], value)
	case key == policy.ServiceAccountLabel:
		h.sas = appendNew(h.sas, value)
	case key == policy.ClusterLabel:
	default:
		h.labels[key] = appendNew(h.labels[key], value)
	}
}

func appendNew[T comparable](s []T, v T) []T {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// walk collects hints from a YAML tree; parent is the key the node is the
// value of.
func (h *hints) walk(n *yaml.Node, parent string) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			h.walk(c, parent)
		}
		return
	case yaml.ScalarNode:
		switch parent {
		case "port", "endPort":
			if p, err := strconv.ParseUint(n.Value, 10, 16); err == nil {
				h.ports = appendNew(h.ports, uint16(p))
			} else if n.Value != "" {
				h.portNames = appendNew(h.portNames, strings.ToLower(n.Value))
			}
		case "fromCIDR", "cidr", "except":
			if p, err := netip.ParsePrefix(n.Value); err == nil {
				h.prefixes = appendNew(h.prefixes, p.Masked())
			} else if a, err := netip.ParseAddr(n.Value); err == nil {
				h.prefixes = appendNew(h.prefixes, netip.PrefixFrom(a, a.BitLen()))
			}
		case "namespace":
			h.namespaces = appendNew(h.namespaces, n.Value)
		}
		return
	case yaml.MappingNode:
	default:
		return
	}
	fields := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		fields[n.Content[i].Value] = n.Content[i+1]
	}
	if ml, ok := fields["matchLabels"]; ok || fields["matchExpressions"] != nil {
		profile := map[string]string{}
		if ok && ml.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(ml.Content); i += 2 {
				h.addLabel(ml.Content[i].Value, ml.Content[i+1].Value)
				profile[ml.Content[i].Value] = ml.Content[i+1].Value
			}
		}
		if me := fields["matchExpressions"]; me != nil && me.Kind == yaml.SequenceNode {
			for _, e := range me.Content {
				var x struct {
					Key      string   `yaml:"key"`
					Operator string   `yaml:"operator"`
					Values   []string `yaml:"values"`
				}
				if e.Decode(&x) != nil {
					continue
				}
				for _, v := range x.Values {
					h.addLabel(x.Key, v)
				}
				if len(x.Values) == 0 {
					h.addLabel(x.Key, "x")
				}
				switch x.Operator {
				case "In":
					if len(x.Values) > 0 {
						profile[x.Key] = x.Values[0]
					}
				case "Exists":
					profile[x.Key] = "x"
				}
			}
		}
		h.profiles = append(h.profiles, profile)
	}
	if ic, ok := fields["fields"]; ok && ic.Kind == yaml.SequenceNode {
		for _, f := range ic.Content {
			var x struct {
				Type   string `yaml:"type"`
				Family string `yaml:"family"`
			}
			if f.Decode(&x) != nil {
				continue
			}
			fam := "4"
			if x.Family == "IPv6" {
				fam = "6"
			}
			t, err := strconv.ParseUint(x.Type, 10, 8)
			if err != nil {
				v, ok := icmpNames[fam+":"+x.Type]
				if !ok {
					continue
				}
				t = uint64(v)
			}
			if fam == "4" {
				h.icmp4 = appendNew(h.icmp4, uint16(t))
			} else {
				h.icmp6 = appendNew(h.icmp6, uint16(t))
			}
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		h.walk(n.Content[i+1], n.Content[i].Value)
	}
}

// Caps that keep one document's comparison to about a second.
const (
	maxDestinations = 24
	maxSources      = 72
	maxPortsPerProt = 24
)

// buildWorld makes the world of a document.
func buildWorld(data []byte, pols []policy.Policy) world {
	h := readHints(data)
	var w world
	w.model.Cluster = differentialCluster
	w.model.HostIPs = []netip.Addr{netip.MustParseAddr("10.255.0.1"), netip.MustParseAddr("fd00:255::1")}
	w.model.Nodes = []cnpmodel.Node{
		{Name: "node2", IPs: []netip.Addr{netip.MustParseAddr("10.254.0.2"), netip.MustParseAddr("fd00:254::2")}},
		{Name: "node3", IPs: []netip.Addr{netip.MustParseAddr("10.254.0.3")}},
	}

	// Namespaces: default, another, those the document names, and one
	// per namespace label it names (and one with all of them).
	nsLabels := map[string]map[string]string{}
	namespaces := []string{policy.DefaultNamespace, "other"}
	for _, ns := range slices.Concat(h.namespaces, h.nsNames) {
		if ns != "" && len(ns) <= 63 {
			namespaces = appendNew(namespaces, ns)
		}
	}
	all := map[string]string{}
	for i, k := range slices.Sorted(maps.Keys(h.nsLabels)) {
		for j, v := range h.nsLabels[k] {
			name := fmt.Sprintf("nsl%d-%d", i, j)
			namespaces = append(namespaces, name)
			nsLabels[name] = map[string]string{k: v}
			if j == 0 {
				all[k] = v
			}
		}
	}
	if len(all) > 0 {
		namespaces = append(namespaces, "nsl-all")
		nsLabels["nsl-all"] = all
	}
	for _, ns := range namespaces {
		if nsLabels[ns] == nil {
			nsLabels[ns] = map[string]string{}
		}
	}

	// Label profiles: none, each label alone, each selector satisfied, all
	// labels at once (first values), and one with a label Cilium ignores.
	profiles := []map[string]string{{}}
	for _, k := range slices.Sorted(maps.Keys(h.labels)) {
		for _, v := range h.labels[k] {
			profiles = append(profiles, map[string]string{k: v})
		}
	}
	allLabels := map[string]string{"pod-template-hash": "7f9c"}
	for k, vs := range h.labels {
		allLabels[k] = vs[0]
	}
	profiles = append(profiles, allLabels)
	for _, p := range h.profiles {
		clean := map[string]string{}
		for raw, v := range p {
			_, key, ok := strings.Cut(raw, ":")
			if !ok {
				key = raw
			}
			if strings.HasPrefix(raw, "reserved:") || key == policy.NamespaceLabel || strings.HasPrefix(key, "io.cilium.k8s.") {
				continue
			}
			clean[key] = v
		}
		profiles = append(profiles, clean)
	}
	profiles = slices.CompactFunc(profiles, maps.Equal)

	// Workloads: every profile in every namespace, cycling through the
	// service accounts and named ports the document names.
	var ws []endpoints.Workload
	i := 0
	for _, ns := range namespaces {
		for _, prof := range profiles {
			if len(ws) >= 400 {
				break
			}
			wl := endpoints.Workload{
				Name:      fmt.Sprintf("e%d", i),
				Namespace: ns,
				IPs:       []netip.Addr{netip.AddrFrom4([4]byte{10, 200, byte(i / 250), byte(i%250 + 1)}), netip.MustParseAddr(fmt.Sprintf("fd00:200::%x", i+1))},
				Labels:    maps.Clone(prof),
			}
			if len(h.sas) > 0 && i%2 == 0 {
				wl.ServiceAccount = h.sas[(i/2)%len(h.sas)]
			}
			for j, name := range h.portNames {
				switch (i + j) % 3 {
				case 0:
					wl.NamedPorts = setPort(wl.NamedPorts, name, policy.NamedPort{Port: uint16(8000 + j), Protocol: policy.ProtoTCP})
				case 1:
					wl.NamedPorts = setPort(wl.NamedPorts, name, policy.NamedPort{Port: uint16(9000 + j), Protocol: policy.ProtoUDP})
				}
			}
			ws = append(ws, wl)
			i++
		}
	}
	roostEPs := endpoints.Derive(ws, nsLabels, differentialCluster)
	for j := range roostEPs {
		roostEPs[j].Local = true
	}
	w.roost = roostEPs
	for _, wl := range ws {
		me := cnpmodel.Endpoint{Name: wl.Name, Namespace: wl.Namespace, Labels: wl.Labels, ServiceAccount: wl.ServiceAccount, IPs: wl.IPs,
			NamespaceLabels: maps.Clone(nsLabels[wl.Namespace])}
		me.NamespaceLabels[endpoints.NamespaceNameLabel] = wl.Namespace
		for _, name := range slices.Sorted(maps.Keys(wl.NamedPorts)) {
			np := wl.NamedPorts[name]
			me.NamedPorts = append(me.NamedPorts, cnpmodel.NamedPort{Name: name, Port: np.Port, Protocol: np.Protocol.String()})
		}
		w.model.Endpoints = append(w.model.Endpoints, me)
	}

	// Destinations and sources, spread over the workloads when there are
	// too many.
	for _, j := range spread(len(ws), maxDestinations) {
		w.dsts = append(w.dsts, ws[j].Name)
	}
	for _, j := range spread(len(ws), maxSources) {
		w.srcs = append(w.srcs, ws[j].IPs[0])
		if j%5 == 0 {
			w.srcs = append(w.srcs, ws[j].IPs[1])
		}
	}
	w.srcs = append(w.srcs, w.model.HostIPs...)
	w.srcs = append(w.srcs, nodeAddrs(w.model.Nodes)...)
	w.srcs = append(w.srcs, netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("2001:db8:ffff::7"))
	for _, p := range h.prefixes {
		first, last := p.Addr(), lastAddr(p)
		w.srcs = append(w.srcs, first, last)
		if prev := first.Prev(); prev.IsValid() {
			w.srcs = append(w.srcs, prev)
		}
		if next := last.Next(); next.IsValid() {
			w.srcs = append(w.srcs, next)
		}
	}
	slices.SortFunc(w.srcs, netip.Addr.Compare)
	w.srcs = slices.Compact(w.srcs)

	// Flows: TCP, UDP and SCTP at the ports named and around them, the
	// named ports' numbers, and a few more; ICMP types; GRE and ESP.
	ports := []uint16{1, 80, 443, 65535}
	for _, p := range h.ports {
		ports = append(ports, p, p-1, p+1)
	}
	for j := range h.portNames {
		ports = append(ports, uint16(8000+j), uint16(9000+j))
	}
	slices.Sort(ports)
	ports = slices.Compact(ports)
	for _, j := range spread(len(ports), maxPortsPerProt) {
		for _, proto := range []uint8{6, 17, 132} {
			w.flows = append(w.flows, protoPort{proto, ports[j]})
		}
	}
	for _, t := range slices.Concat([]uint16{0, 3, 8, 11}, h.icmp4) {
		w.flows = append(w.flows, protoPort{1, t}, protoPort{1, t + 1})
	}
	for _, t := range slices.Concat([]uint16{1, 128, 129}, h.icmp6) {
		w.flows = append(w.flows, protoPort{58, t}, protoPort{58, t + 1})
	}
	w.flows = append(w.flows, protoPort{47, 0}, protoPort{50, 0})
	slices.SortFunc(w.flows, func(a, b protoPort) int { return cmp.Or(cmp.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port)) })
	w.flows = slices.Compact(w.flows)
	return w
}

func setPort(m map[string]policy.NamedPort, name string, np policy.NamedPort) map[string]policy.NamedPort {
	if m == nil {
		m = map[string]policy.NamedPort{}
	}
	m[name] = np
	return m
}

// spread returns up to max indices of [0, n), evenly spread, first and last
// included.
func spread(n, max int) []int {
	if n <= max {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	out := make([]int, 0, max)
	for i := range max {
		out = append(out, i*(n-1)/(max-1))
	}
	return slices.Compact(out)
}

// lastAddr returns the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// refusalReason classifies roost's refusal of a document for the tally.
func refusalReason(err error) string {
	msg := err.Error()
	for _, r := range []struct{ substr, reason string }{
		{"egress policy; roost enforces ingress only", "egress rules (roost enforces ingress only)"},
		{"egress default deny", "egress rules (roost enforces ingress only)"},
		{"(L7 rules)", "L7 rules"},
		{"host policies", "host policy (nodeSelector): roost enforces on endpoints, not the node"},
		{"fromRequires", "fromRequires (deprecated in Cilium)"},
		{"node selectors", "fromNodes (needs Cilium's enable-node-selector-labels)"},
		{"kube-apiserver", "kube-apiserver entity (roost does not track the API server)"},
		{"CiliumCIDRGroup", "CIDR groups"},
		{"cloud provider groups", "fromGroups (cloud provider groups)"},
		{"mutual authentication", "authentication"},
		{"TLS", "TLS, server names or listeners"},
		{"table too large", "too many rules for one verdict table"},
		{"Envoy listeners", "TLS, server names or listeners"},
		{"YAML:", "not valid YAML"},
		{"apiVersion", "not a cilium.io/v2 policy"},
		{"kind", "not a cilium.io/v2 policy"},
		{"is not an operator", "selector operator Cilium's CRD refuses"},
		{"is not a CIDR prefix", "not a CIDR (a template placeholder)"},
	} {
		if strings.Contains(msg, r.substr) {
			return r.reason
		}
	}
	return "other: " + firstLine(err)
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// l3l4Ingress returns "" when the document is one roost must accept: every
// document parses as YAML into policies of cilium.io/v2 whose rules have
// no egress, egressDeny or nodeSelector, and Cilium's model takes them
// (it refuses what it does not implement: L7, fromRequires, fromNodes,
// groups, CIDR groups, authentication, and what Cilium itself refuses).
// Otherwise it says why not.
func l3l4Ingress(data []byte) string {
	if _, err := cnpmodel.Load(bytes.NewReader(data), policy.DefaultNamespace); err != nil {
		return "model: " + err.Error()
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			break
		}
		var rules []any
		if s, ok := doc["spec"]; ok {
			rules = append(rules, s)
		}
		if ss, ok := doc["specs"].([]any); ok {
			rules = append(rules, ss...)
		}
		for _, r := range rules {
			m, _ := r.(map[string]any)
			for _, k := range []string{"egress", "egressDeny", "nodeSelector"} {
				if v, ok := m[k]; ok && v != nil {
					return k
				}
			}
			if dd, ok := m["enableDefaultDeny"].(map[string]any); ok && dd["egress"] == true {
				return "enableDefaultDeny.egress"
			}
		}
	}
	return ""
}
