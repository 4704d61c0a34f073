package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const defaultFile = "../lab/lab.yaml"

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func parse(t *testing.T, src string) *Lab {
	t.Helper()
	lab, err := Parse(strings.NewReader(src), "lab.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return lab
}

func TestDefaultFile(t *testing.T) {
	lab := parse(t, readFile(t, defaultFile))
	if len(lab.Tors) != 2 || len(lab.Nodes) != 2 || len(lab.Links) != 4 || len(lab.Pods) != 5 ||
		len(lab.VMs) != 1 || len(lab.Services) != 1 || len(lab.Checks[0]) != 11 || len(lab.Checks[1]) != 7 {
		t.Errorf("default lab: %d tors, %d nodes, %d links, %d pods, %d vms, %d services, %d+%d checks; want 2, 2, 4, 5, 1, 1, 11+7",
			len(lab.Tors), len(lab.Nodes), len(lab.Links), len(lab.Pods), len(lab.VMs), len(lab.Services),
			len(lab.Checks[0]), len(lab.Checks[1]))
	}
}

// TestThreeNodes checks the example of a third node (a change of data
// only) against the default.
func TestThreeNodes(t *testing.T) {
	lab := parse(t, readFile(t, "testdata/three-nodes.yaml"))
	if len(lab.Nodes) != 3 || len(lab.Links) != 6 || len(lab.Pods) != 6 {
		t.Errorf("%d nodes, %d links, %d pods; want 3, 6, 6", len(lab.Nodes), len(lab.Links), len(lab.Pods))
	}
}

// bashOut evaluates script in bash (-u, -e) and returns its output.
func bashOut(t *testing.T, script string) string {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	cmd := exec.Command(bash, "-euc", script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash: %v\n%s\nscript:\n%s", err, stderr.String(), script)
	}
	return string(out)
}

// TestBash evaluates the default file's bash, as lab.sh does, inside a
// function (the arrays must be global), and reads the arrays back.
func TestBash(t *testing.T) {
	var env bytes.Buffer
	if err := parse(t, readFile(t, defaultFile)).WriteBash(&env); err != nil {
		t.Fatal(err)
	}
	script := `load() { eval "$1"; }
load "$ENV"
printf '%s|' "${TORS[@]}"; echo
printf '%s|' "${NODES[@]}"; echo
printf '%s|' "${LINKS[@]}"; echo
printf '%s|' "${PODS[@]}"; echo
printf '%s|' "${VMS[@]}"; echo
printf '%s|' "${SERVERS[@]}"; echo
printf '%s|' "${SERVICES[@]}"; echo
printf '%s|' "${CHECKS[@]}"; echo
printf '%s|' "${CHECKS6[@]}"; echo
echo "$UPLINK_MTU ${TOR_ASN[tor2]} ${TOR_ROUTER_ID[tor2]} ${NODE_ASN[node2]} ${NODE_ROUTER_ID[node2]}"
echo "${NODE_PODCIDR[node1/4]} ${NODE_PODCIDR[node2/6]} ${NODE_LO[node1/4]} ${NODE_LO[node2/6]}"
echo "${LINK_ID[tor1/node2]} ${LINK_ADDR[3/tor/4]} ${LINK_ADDR[3/node/6]} ${LINK_BITS[3/4]} ${LINK_BITS[3/6]}"
echo "${WORKLOAD_IP[db2/4]} ${WORKLOAD_IP[vm1/6]} ${WORKLOAD_APP[db2]} ${WORKLOAD_APP[vm1]} ${POD_NODE[db2]} ${POD_NODE[vm1]-none}"
echo "${VM_TOR[vm1]} ${VM_NET[vm1/4]} ${VM_NET[vm1/6]} ${VM_GATEWAY[vm1/4]} ${VM_GATEWAY[vm1/6]}"
declare -p NODES NODE_ASN | cut -c1-12
(NODES=(x)) 2>/dev/null && echo writable || echo read-only
`
	got := bashOut(t, "ENV="+Quote(env.String())+"\n"+script)
	want := `tor1|tor2|
node1|node2|
tor1 node1 1|tor2 node1 2|tor1 node2 3|tor2 node2 4|
db|employee|guest|employee2|db2|
vm1|
db 6379 22|db2 6379|
db 10.96.0.10 192.0.2.10 6379 db db2|
employee db 6379 allow|employee2 db 6379 allow|vm1 db 6379 allow|guest db 6379 drop|employee db 22 drop|employee db2 6379 allow|guest db2 6379 drop|employee2 svc:db 6379 allow|guest svc:db 6379 drop|vm1 vip:db 6379 allow|guest vip:db 6379 drop|
employee db 6379 allow|employee2 db 6379 allow|vm1 db 6379 allow|guest db 6379 drop|employee db 22 drop|employee db2 6379 allow|guest db2 6379 drop|
1600 65000 10.0.2.1 65102 10.0.3.2
10.244.1.0/24 fd00:244:2::/64 10.244.1.1 fd00:244:2::1
3 10.0.3.1 fd00:0:3::2 30 64
10.244.2.12 fd00:0:9::10 protected-db employee node2 none
tor1 10.0.9.0/24 fd00:0:9::/64 10.0.9.1 fd00:0:9::1
declare -ar 
declare -Ar 
read-only
`
	if got != want {
		t.Errorf("bash read back:\n%s\nwant:\n%s", got, want)
	}
}

// TestQuote checks that bash reads every quoted string back exactly, as a
// value and as an associative array's key.
func TestQuote(t *testing.T) {
	values := []string{"", "plain", "two words", "it's", "'", "''", `a\b`, `"q"`, "$HOME", "$(false)", "`false`",
		"!x", "*", "a\nb", "tab\there", "]=x", "[k]", "x;false", "é ünïcode", "-e", "~root", "#c", "{a,b}"}
	var b bytes.Buffer
	w := &bashWriter{w: &b}
	var a assoc
	for i, v := range values {
		a.set(v+"k", strings.Repeat("x", i))
	}
	w.array("V", values)
	w.assoc("A", a)
	w.scalar("S", values[len(values)-1]+"'$x")
	if w.err != nil {
		t.Fatal(w.err)
	}
	out := bashOut(t, b.String()+`
printf '%s\0' "${V[@]}"
for k in "${V[@]}"; do printf '%s\0' "${A[${k}k]}"; done
printf '%s\0' "$S" "${#A[@]}"
`)
	var want []string
	want = append(want, values...)
	for i := range values {
		want = append(want, strings.Repeat("x", i))
	}
	want = append(want, values[len(values)-1]+"'$x", "23")
	got := strings.Split(strings.TrimSuffix(out, "\x00"), "\x00")
	if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("read back %q\nwant %q", got, want)
	}
}

// TestBad changes the default file in one place each (the first
// occurrence of old) and checks the
// problem reported, with its line and path.
func TestBad(t *testing.T) {
	src := readFile(t, defaultFile)
	for _, tc := range []struct {
		name, old, new string
		want           []string // each a substring of the problems
	}{
		{"unknown top key", "uplinkMTU: 1600", "uplinkMTU: 1600\nclusters: []",
			[]string{`lab.yaml:17: clusters: unknown field`}},
		{"unknown node key", "    asn: 65102\n", "    asn: 65102\n    podCIDR: 10.244.2.0/24\n",
			[]string{`nodes[1].podCIDR: unknown field`}},
		{"unknown link key", "  - tor: tor1\n    node: node2\n", "  - tor: tor1\n    node: node2\n    mtu: 1500\n",
			[]string{`links[2].mtu: unknown field`}},
		{"link to a missing node", "  - tor: tor1\n    node: node2\n", "  - tor: tor1\n    node: node3\n",
			[]string{`links[2].node: "node3" is not a node of the file (it names nothing)`}},
		{"link to a node as tor", "  - tor: tor2\n    node: node2\n", "  - tor: node1\n    node: node2\n",
			[]string{`links[3].tor: "node1" is not a tor of the file (it names a node)`}},
		{"second link", "  - tor: tor2\n    node: node2\n", "  - tor: tor1\n    node: node2\n",
			[]string{`links[3]: a second link between tor1 and node2`}},
		{"pod on a missing node", "{name: guest, node: node2,", "{name: guest, node: node9,",
			[]string{`pods[2].node: "node9" is not a node of the file`}},
		{"pod outside its PodCIDR", "ipv4: 10.244.2.12,", "ipv4: 10.244.1.12,",
			[]string{`pods[4].ipv4: 10.244.1.12 is not in node2's PodCIDR 10.244.2.0/24`}},
		{"IPv6 where IPv4 belongs", "ipv4: 10.244.2.12,", `ipv4: "fd00:244:2::12",`,
			[]string{`pods[4].ipv4: fd00:244:2::12 is not an IPv4 address`}},
		{"not an address", "ipv4: 10.244.2.12,", `ipv4: 10.244.2.300,`,
			[]string{`pods[4].ipv4: "10.244.2.300" is not an IP address`}},
		{"duplicate address", "ipv4: 10.244.2.12,", "ipv4: 10.244.2.11,",
			[]string{`pods[4].ipv4: 10.244.2.11 is already pods[3].ipv4`}},
		{"duplicate name", "{name: db2,", "{name: tor2,",
			[]string{`pods[4].name: "tor2" is already the name of a tor`}},
		{"long name", "{name: db2,", "{name: a-very-long-podname,",
			[]string{`pods[4].name: "a-very-long-podname" is not a name`}},
		{"quoted number", "asn: 65102", `asn: "65102"`,
			[]string{`nodes[1].asn: must be an AS number (1 to 4294967295): unquote it (65102)`}},
		{"host bits in a PodCIDR", "podCIDR: 10.244.2.0/24", "podCIDR: 10.244.2.1/24",
			[]string{`nodes[1].ipv4.podCIDR: 10.244.2.1/24 has host bits set: did you mean 10.244.2.0/24?`}},
		{"overlapping PodCIDRs", "podCIDR: 10.244.2.0/24", "podCIDR: 10.244.0.0/16",
			[]string{`nodes[1].ipv4.podCIDR: 10.244.0.0/16 overlaps 10.244.1.0/24 (nodes[0].ipv4.podCIDR)`}},
		{"link ends on two subnets", "node: 10.0.4.2/30}", "node: 10.0.5.2/30}",
			[]string{`links[3].ipv4.node: 10.0.5.2/30 is not on the subnet of the ToR's end, 10.0.4.0/30`}},
		{"lo outside the PodCIDR", "lo: 10.244.2.1}", "lo: 10.244.9.1}",
			[]string{`nodes[1].ipv4.lo: 10.244.9.1 is not in the node's PodCIDR 10.244.2.0/24`}},
		{"router ID twice", "routerID: 10.0.3.2", "routerID: 10.0.1.2",
			[]string{`nodes[1].routerID: 10.0.1.2 is already the router ID of node1`}},
		{"vm behind a missing tor", "    tor: tor1\n    app: employee\n", "    tor: tor3\n    app: employee\n",
			[]string{`vms[0].tor: "tor3" is not a tor of the file`}},
		{"vm gateway off its subnet", "gateway: 10.0.9.1}", "gateway: 10.0.8.1}",
			[]string{`vms[0].ipv4.gateway: 10.0.8.1 is not on the vm's subnet 10.0.9.0/24`}},
		{"missing backend", "backends: [db, db2]", "backends: [db, db3]",
			[]string{`services[0].backends[1]: "db3" is not a pod of the file`}},
		{"backend not listening", "backends: [db, db2]", "backends: [db, guest]",
			[]string{`services[0].backends[1]: guest does not listen on the service's port 6379`}},
		{"check of a missing client", "{client: employee2, server: db, port: 6379, expect: allow}\n    - {client: vm1",
			"{client: nobody, server: db, port: 6379, expect: allow}\n    - {client: vm1",
			[]string{`checks.ipv4[1].client: "nobody" is not a pod or vm of the file`}},
		{"check of a missing server", "{client: guest, server: db2, port: 6379, expect: drop}\n    - {client: employee2",
			"{client: guest, server: db3, port: 6379, expect: drop}\n    - {client: employee2",
			[]string{`checks.ipv4[6].server: "db3" is not a pod of the file`}},
		{"check of a vm server", "{client: guest, server: db2, port: 6379, expect: drop}\n    - {client: employee2",
			"{client: guest, server: vm1, port: 6379, expect: drop}\n    - {client: employee2",
			[]string{`checks.ipv4[6].server: "vm1" is not a pod of the file`}},
		{"check of a missing service", `server: "svc:db", port: 6379, expect: allow}`, `server: "svc:dc", port: 6379, expect: allow}`,
			[]string{`checks.ipv4[7].server: "dc" is not a service of the file`}},
		{"service over IPv6", "  ipv6:\n    - {client: employee, server: db,", "  ipv6:\n    - {client: employee, server: \"vip:db\",",
			[]string{`checks.ipv6[0].server: vip:db: the lab's services are IPv4 only`}},
		{"port nobody listens on", "{client: employee, server: db, port: 22, expect: drop}\n    - {client: employee, server: db2",
			"{client: employee, server: db, port: 23, expect: drop}\n    - {client: employee, server: db2",
			[]string{`checks.ipv4[4].port: db does not listen on 23`}},
		{"bad expectation", "{client: guest, server: db, port: 6379, expect: drop}\n    - {client: employee, server: db, port: 22",
			"{client: guest, server: db, port: 6379, expect: deny}\n    - {client: employee, server: db, port: 22",
			[]string{`checks.ipv4[3].expect: "deny" must be allow or drop`}},
		{"missing field", "    asn: 65102\n", "",
			[]string{`nodes[1].asn: missing`}},
		{"two problems at once", "{name: guest, node: node2,", "{name: guest, node: node9, colour: red,",
			[]string{`pods[2].node: "node9" is not a node`, `pods[2].colour: unknown field`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The first occurrence (an IPv4 check before its IPv6 twin).
			if !strings.Contains(src, tc.old) {
				t.Fatalf("%q is not in %s", tc.old, defaultFile)
			}
			_, err := Parse(strings.NewReader(strings.Replace(src, tc.old, tc.new, 1)), "lab.yaml")
			if err == nil {
				t.Fatalf("accepted; want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems:\n%v\nwant one with %q", err, w)
				}
			}
		})
	}
	for _, tc := range []struct{ src, want string }{
		{"", "lab.yaml: the file is empty"},
		{"tors: [\n", "lab.yaml:1: YAML: did not find expected node content"},
		{"- a\n", "lab.yaml:1: must be a mapping"},
		{"uplinkMTU: 1600\n", "lab.yaml:1: tors: missing"},
	} {
		_, err := Parse(strings.NewReader(tc.src), "lab.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want %q", tc.src, err, tc.want)
		}
	}
}

func TestRun(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("tors: []\nnodes: []\nlinks: []\nuplinkMTU: 1600\nnode: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args               []string
		code               int
		stdout, stderrPart string
	}{
		{[]string{"check", defaultFile}, 0, "", ""},
		{[]string{"env", defaultFile}, 0, "declare -gra TORS=('tor1' 'tor2')\n", ""},
		{[]string{"check", bad}, 1, "", bad + ":5: node: unknown field: did you mean nodes?"},
		{[]string{"env", bad}, 1, "", "tors: no ToR"},
		{[]string{"check", "/nonexistent.yaml"}, 1, "", "no such file"},
		{[]string{"check"}, 2, "", "usage"},
		{[]string{"print", defaultFile}, 2, "", "usage"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || (tc.stdout == "" && stdout.Len() > 0) ||
			!strings.Contains(stderr.String(), tc.stderrPart) {
			t.Errorf("run(%q) = %d, stdout %q, stderr %q; want %d, %q, %q", tc.args, code, stdout.String(), stderr.String(),
				tc.code, tc.stdout, tc.stderrPart)
		}
	}
}
