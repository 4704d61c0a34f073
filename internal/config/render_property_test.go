package config

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/roost-net/roost/internal/birdconf"
	"github.com/roost-net/roost/internal/testenv"
)

// propertyConfigs is how many configs TestLoadAcceptsOnlyRenderable
// generates; -short generates a tenth.
const propertyConfigs = 10000

// problemLine is one line of a Load error: a field path of agent.yaml, a
// colon and a message.
var problemLine = regexp.MustCompile(`^(node|asn|routerID|podCIDRs(\[\d+\])?|kubernetes\.kubeconfig|` +
	`peers(\[\d+\](\.(name|address|asn|password|passwordFile|holdTime|keepaliveTime|connectRetryTime|multihop|sourceAddress|port|gracefulRestart|extendedNextHop|med|communities(\[\d+\])?))?)?|bird\.(socket|configDir|logFile)|listen|debounce): \S`)

// TestLoadAcceptsOnlyRenderable is the property that validation equals
// renderability: thousands of generated agent.yaml documents, most of them
// holding hostile values, go through Load. Every config Load accepts must
// render (as roost-agent renders it) and the real BIRD must parse the
// result; every config Load refuses must be refused with problems that each
// name their field, and without revealing a password.
func TestLoadAcceptsOnlyRenderable(t *testing.T) {
	bin := testenv.Binary(t, "bird")
	n := propertyConfigs
	if testing.Short() {
		n /= 10
	}
	dir := t.TempDir()
	g := &configGen{rng: rand.New(rand.NewPCG(2026, 9)), dir: filepath.Join(dir, "secrets")}
	if err := os.Mkdir(g.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var (
		f        findings
		rendered []renderedConfig
		refused  int
		logFiles int // accepted configs rendered with a log file
	)
	for i := range n {
		d := g.config()
		c, err := Load(strings.NewReader(d.yaml), defaults())
		if err != nil {
			refused++
			for _, line := range strings.Split(err.Error(), "\n") {
				if !problemLine.MatchString(line) {
					f.add("refused with a problem that names no field", fmt.Sprintf("config %d: problem %q\n%s", i, line, d.yaml))
					break
				}
			}
			for _, s := range d.secrets {
				if strings.Contains(err.Error(), s) {
					f.add("refused with a password in the error", fmt.Sprintf("config %d: error %q shows secret %q", i, err, s))
					break
				}
			}
			continue
		}
		conf, err := birdconf.Render(c.BirdInput(c.PodCIDRs))
		if err != nil {
			f.add("accepted but birdconf.Render refuses", fmt.Sprintf("config %d: %v\n%s", i, err, d.yaml))
			continue
		}
		file := filepath.Join(dir, fmt.Sprintf("%05d.conf", i))
		if err := os.WriteFile(file, conf, 0o600); err != nil {
			t.Fatal(err)
		}
		rendered = append(rendered, renderedConfig{file: file, yaml: d.yaml})
		if c.Bird.LogFile != "" && strings.Contains(string(conf), fmt.Sprintf("\nlog %q ", c.Bird.LogFile)) {
			logFiles++
		}
	}
	for _, r := range birdParseAll(bin, rendered) {
		f.add("accepted and rendered but bird -p refuses", r)
	}
	t.Logf("%d configs: %d refused, %d accepted, rendered and given to bird -p", n, refused, len(rendered))
	if len(rendered) < n/10 || refused < n/10 || logFiles < len(rendered)/2 {
		t.Errorf("the generator is lopsided: %d accepted (%d with a log file), %d refused of %d", len(rendered), logFiles, refused, n)
	}
	f.report(t)
}

// renderedConfig is a rendered bird.conf and the agent.yaml it came from.
type renderedConfig struct{ file, yaml string }

// birdParseAll runs "bird -p -c" on every file, a few at a time, and returns
// a description of each failure.
func birdParseAll(bin string, configs []renderedConfig) []string {
	var (
		mu       sync.Mutex
		failures []string
		wg       sync.WaitGroup
	)
	work := make(chan renderedConfig)
	for range runtime.GOMAXPROCS(0) + 1 {
		wg.Go(func() {
			for r := range work {
				out, err := exec.Command(bin, "-p", "-c", r.file).CombinedOutput()
				if err == nil {
					continue
				}
				conf, _ := os.ReadFile(r.file)
				mu.Lock()
				failures = append(failures, fmt.Sprintf("%s: %v: %s\nagent.yaml:\n%s\nbird.conf:\n%s", r.file, err, out, r.yaml, conf))
				mu.Unlock()
			}
		})
	}
	for _, r := range configs {
		work <- r
	}
	close(work)
	wg.Wait()
	slices.Sort(failures)
	return failures
}

// findings collects property violations by kind, so that one report shows
// each kind with its count and a few examples.
type findings struct {
	kinds  []string
	byKind map[string][]string
}

func (f *findings) add(kind, example string) {
	if f.byKind == nil {
		f.byKind = map[string][]string{}
	}
	if _, ok := f.byKind[kind]; !ok {
		f.kinds = append(f.kinds, kind)
	}
	f.byKind[kind] = append(f.byKind[kind], example)
}

func (f *findings) report(t *testing.T) {
	t.Helper()
	const examples = 5
	for _, kind := range f.kinds {
		ex := f.byKind[kind]
		t.Errorf("%s: %d configs; the first %d:\n\n%s", kind, len(ex), min(examples, len(ex)),
			strings.Join(ex[:min(examples, len(ex))], "\n---\n"))
	}
}

// configGen generates agent.yaml documents from a seeded source, so the
// same configs come every run. About two in five are built from values
// believed valid, including edge cases (4-byte ASNs, link-local neighbors
// with a zone, 80-byte passwords, names next to BIRD keywords); the others
// replace each value with a hostile one now and then.
type configGen struct {
	rng   *rand.Rand
	dir   string // holds the generated password files
	files int

	// Of the config being generated:
	hostile bool
	secrets []string
	names   []string
	addrs   []string
}

// generated is one agent.yaml and the secrets in it, which no error may
// show.
type generated struct {
	yaml    string
	secrets []string
}

// bad reports whether to use a hostile value this time.
func (g *configGen) bad() bool { return g.hostile && g.rng.IntN(100) < 6 }

func (g *configGen) pick(ss []string) string { return ss[g.rng.IntN(len(ss))] }

func (g *configGen) config() generated {
	g.hostile = g.rng.IntN(5) >= 2
	g.secrets, g.names, g.addrs = nil, nil, nil
	m := map[string]any{}
	asn := g.asn()
	if g.bad() {
		m["asn"] = []int64{0, -1, 4294967295, 4294967296}[g.rng.IntN(4)]
	} else if g.rng.IntN(50) > 0 {
		m["asn"] = asn
	}
	switch {
	case g.bad():
		m["routerID"] = g.pick([]string{"0.0.0.0", "::1", "::ffff:10.0.1.2", "10.0.1.2%eth0", "10.0.1", "", "fe80::1%eth0"})
	case g.rng.IntN(50) == 0:
	default:
		m["routerID"] = g.addr4(g.hostile).String()
	}
	if g.bad() {
		m["node"] = ""
	}
	var peers []map[string]any
	n := 1 + g.rng.IntN(5)
	if g.bad() {
		n = 0
	}
	v4, v6 := false, false
	for range n {
		p := g.peer(asn)
		peers = append(peers, p)
		if a, err := netip.ParseAddr(p["address"].(string)); err == nil {
			v4, v6 = v4 || a.Unmap().Is4(), v6 || !a.Unmap().Is4()
		}
	}
	if peers != nil {
		m["peers"] = peers
	}
	var cidrs []string
	for range g.rng.IntN(7) {
		cidrs = append(cidrs, g.prefix(v4, v6))
	}
	if g.bad() && len(cidrs) > 0 {
		cidrs = append(cidrs, cidrs[g.rng.IntN(len(cidrs))])
	}
	if cidrs != nil {
		m["podCIDRs"] = cidrs
	}
	if g.rng.IntN(10) == 0 {
		m["kubernetes"] = map[string]any{"enabled": true}
		if !g.bad() {
			delete(m, "podCIDRs")
		}
	}
	if g.bad() {
		m["kubernetes"] = map[string]any{"enabled": false, "kubeconfig": "/etc/roost/kubeconfig"}
	}
	if g.bad() {
		m["listen"] = g.pick([]string{"localhost:9479", "9479", "127.0.0.1:99999"})
	}
	if g.bad() {
		m["bird"] = map[string]any{"socket": "bird.ctl", "configDir": ""}
	}
	if g.rng.IntN(4) == 0 {
		bird, _ := m["bird"].(map[string]any)
		if bird == nil {
			bird = map[string]any{}
		}
		bird["logFile"] = g.logFile()
		m["bird"] = bird
	}
	if g.bad() {
		m["debounce"] = g.pick([]string{"soon", "2m", "-1s"})
	}
	out, err := yaml.Marshal(m)
	if err != nil {
		panic(err)
	}
	return generated{yaml: string(out), secrets: g.secrets}
}

// peer returns one entry of peers; localASN is the node's.
func (g *configGen) peer(localASN int64) map[string]any {
	p := map[string]any{"name": g.name(), "address": g.neighbor()}
	switch {
	case g.bad():
		p["asn"] = []int64{localASN, 0, -1, 4294967295, 4294967296}[g.rng.IntN(5)]
	default:
		asn := g.asn()
		for asn == localASN {
			asn = g.asn()
		}
		p["asn"] = asn
	}
	switch g.rng.IntN(4) {
	case 0:
		p["password"] = g.password()
	case 1:
		p["passwordFile"] = g.passwordFile()
		if g.bad() {
			p["password"] = g.password()
		}
	}
	switch {
	case g.bad():
		p["holdTime"] = []int{1, 2, -1, 65536, 100000}[g.rng.IntN(5)]
	case g.rng.IntN(2) == 0:
		p["holdTime"] = []int{3, 90, 65535, 3 + g.rng.IntN(65533)}[g.rng.IntN(4)]
	}
	g.peerOptions(p)
	return p
}

// peerOptions sets some of a peer's other options, sometimes to values
// out of range or that clash (keepalive against hold time, a source
// address of the other family, extended next hop on IPv4).
func (g *configGen) peerOptions(p map[string]any) {
	if g.rng.IntN(3) != 0 {
		return
	}
	timer := func() int {
		if g.bad() {
			return []int{-1, 65536, 0}[g.rng.IntN(3)]
		}
		return 1 + g.rng.IntN(300)
	}
	for _, k := range []string{"keepaliveTime", "connectRetryTime"} {
		if g.rng.IntN(2) == 0 {
			p[k] = timer()
		}
	}
	if g.rng.IntN(3) == 0 {
		p["multihop"] = []int{1, 2, 64, 255, -1, 256}[g.rng.IntN(4)+map[bool]int{true: 2}[g.bad()]]
	}
	if g.rng.IntN(3) == 0 {
		p["sourceAddress"] = g.pick([]string{"10.0.1.2", "2001:db8::2", "fe80::2", "::ffff:10.0.0.1", "0.0.0.0", "x"}[:map[bool]int{false: 2, true: 6}[g.bad()]])
	}
	if g.rng.IntN(4) == 0 {
		p["port"] = []int{179, 1179, 65535, -1, 65536}[g.rng.IntN(3)+map[bool]int{true: 2}[g.bad()]]
	}
	if g.rng.IntN(4) == 0 {
		p["passive"] = true
	}
	if g.rng.IntN(3) == 0 {
		gr := map[string]any{}
		if g.rng.IntN(2) == 0 {
			gr["enabled"] = g.rng.IntN(2) == 0
		}
		if g.rng.IntN(2) == 0 {
			gr["restartTime"] = []int{1, 120, 4095, 4096, -1}[g.rng.IntN(3)+map[bool]int{true: 2}[g.bad()]]
		}
		p["gracefulRestart"] = gr
	}
	if g.rng.IntN(4) == 0 {
		p["extendedNextHop"] = true
	}
	if g.rng.IntN(4) == 0 {
		p["med"] = []int64{0, 100, 4294967295, -1, 4294967296}[g.rng.IntN(3)+map[bool]int{true: 2}[g.bad()]]
	}
	if g.rng.IntN(3) == 0 {
		var cs []string
		for range 1 + g.rng.IntN(3) {
			cs = append(cs, g.pick([]string{"65000:1", "0:0", "65535:65535", "4200000000:1:2", "65536:1", "1:2:3:4", "x"}[:map[bool]int{false: 4, true: 7}[g.bad()]]))
		}
		p["communities"] = cs
	}
}

// asn returns a valid AS number, often a 4-byte one or an edge.
func (g *configGen) asn() int64 {
	switch g.rng.IntN(4) {
	case 0:
		return []int64{1, 23456, 64512, 65000, 65535, 65536, 4200000000, 4294967294}[g.rng.IntN(8)]
	case 1:
		return 65536 + g.rng.Int64N(4294967294-65536)
	default:
		return 1 + g.rng.Int64N(65535)
	}
}

// keywordNames are peer names that the "bgp_" prefix turns into BIRD 2
// keywords (bgp_path, ...), with '-' or '_'.
var keywordNames = []string{
	"path", "med", "local_pref", "local-pref", "next_hop", "next-hop", "origin", "community",
	"ext_community", "ext-community", "large_community", "large-community", "aggregator",
	"atomic_aggr", "atomic-aggr", "originator_id", "originator-id", "cluster_list", "cluster-list",
	"aigp", "otc",
}

// nearKeywordNames are peer names next to BIRD keywords, or BIRD keywords
// that stay symbols with the "bgp_" prefix; BIRD must accept them all.
var nearKeywordNames = []string{
	"as4_path", "as4_aggregator", "mp_reach_nlri", "mp_unreach_nlri", "only_to_customer",
	"path2", "med-a", "origin1", "bgp", "as", "ipv4", "ipv6", "protocol", "local", "neighbor",
	"filter", "static", "none", "all", "true", "define", "roost_owned4", "roost_export",
}

// name returns a peer name, unique in the config unless hostile.
func (g *configGen) name() string {
	const edge, mid = "abcdefghijklmnopqrstuvwxyz0123456789", "abcdefghijklmnopqrstuvwxyz0123456789_-"
	var s string
	switch {
	case g.bad():
		s = g.pick([]string{
			"Tor1", "tör1", "tor\t1", "tor 1", `tor"1`, `tor\1`, "tor.1", "-tor", "tor-", "", strings.Repeat("a", 33),
			"tor1\r", "tor%1", "路由器", "bgp_path",
		})
		if g.rng.IntN(3) == 0 {
			s = g.pick(keywordNames)
		}
		if len(g.names) > 0 && g.rng.IntN(3) == 0 {
			prev := g.names[g.rng.IntN(len(g.names))]
			s = g.pick([]string{prev, strings.ReplaceAll(prev, "_", "-"), strings.ReplaceAll(prev, "-", "_")})
		}
	case g.rng.IntN(8) == 0:
		s = g.pick(nearKeywordNames)
	default:
		n := 1 + g.rng.IntN(32)
		b := make([]byte, n)
		for i := range b {
			if i == 0 || i == n-1 {
				b[i] = edge[g.rng.IntN(len(edge))]
			} else {
				b[i] = mid[g.rng.IntN(len(mid))]
			}
		}
		s = string(b)
	}
	if !g.hostile {
		for slices.Contains(g.names, strings.ReplaceAll(s, "-", "_")) {
			s += "x"
		}
	}
	g.names = append(g.names, strings.ReplaceAll(s, "-", "_"))
	return s
}

// zones are interface names for link-local neighbors; the last ones are
// not valid interface names.
var zones = []string{"eth0", "ens3f0.100", "uplink-a", "bond_1", "1", "abcdefghijklmno"}
var badZones = []string{`eth"0`, "eth 0", `eth\0`, "a%b", "abcdefghijklmnop", "ethä", "eth\t0", "eth\n0", "eth0;"}

// neighbor returns a peer address, unique in the config unless hostile.
func (g *configGen) neighbor() string {
	var s string
	switch {
	case g.bad():
		s = g.pick([]string{
			"::", "0.0.0.0", "ff02::1", "224.0.0.5", "::ffff:192.0.2.1", "::ffff:10.0.1.1", "fe80::1",
			"2001:db8::1%eth0", "fe80::1%" + g.pick(badZones), "169.254.1.1", "127.0.0.1", "0.1.2.3",
			"240.0.0.1", "255.255.255.255", "::1", "::1.2.3.4", "fec0::1", "10.0.1", "10.0.1.1/32", "",
			"fe80::1%", "10.0.1.1%eth0",
		})
		if len(g.addrs) > 0 && g.rng.IntN(3) == 0 {
			s = g.addrs[g.rng.IntN(len(g.addrs))]
		}
	default:
		switch g.rng.IntN(4) {
		case 0:
			s = g.addr4(g.hostile).String()
		case 1:
			b := [16]byte{0: 0x20, 1: 0x01, 2: 0x0d, 3: 0xb8}
			if g.hostile {
				b[0], b[1], b[2], b[3] = byte(0x20+g.rng.IntN(0x20)), byte(g.rng.IntN(256)), byte(g.rng.IntN(256)), byte(g.rng.IntN(256))
			}
			for i := 4; i < 16; i++ {
				b[i] = byte(g.rng.IntN(256))
			}
			s = netip.AddrFrom16(b).String()
		case 2:
			b := [16]byte{0: 0xfd}
			for i := 1; i < 16; i++ {
				b[i] = byte(g.rng.IntN(256))
			}
			s = netip.AddrFrom16(b).String()
		default:
			b := [16]byte{0: 0xfe, 1: 0x80}
			for i := 8; i < 16; i++ {
				b[i] = byte(g.rng.IntN(256))
			}
			s = netip.AddrFrom16(b).WithZone(g.pick(zones)).String()
		}
	}
	if !g.hostile {
		for slices.Contains(g.addrs, s) {
			s = g.addr4(false).String()
		}
	}
	g.addrs = append(g.addrs, s)
	return s
}

// addr4 returns an IPv4 address: from anywhere when wild, else one outside
// the special ranges (0/8, 127/8, 169.254/16, 224/3).
func (g *configGen) addr4(wild bool) netip.Addr {
	for {
		var b [4]byte
		for i := range b {
			b[i] = byte(g.rng.IntN(256))
		}
		a := netip.AddrFrom4(b)
		if wild || (b[0] != 0 && b[0] != 127 && b[0] < 224 && !a.IsLinkLocalUnicast()) {
			return a
		}
	}
}

// prefix returns a podCIDRs entry of a family some peer has (any family
// when hostile), sometimes with host bits or worse.
func (g *configGen) prefix(v4, v6 bool) string {
	if g.bad() {
		return g.pick([]string{
			"::ffff:10.244.0.0/112", "::ffff:0.0.0.0/96", "10.244.1.7/24", "2001:db8::1/64", "10.0.0.0/33",
			"10.0.0.1", "fe80::/64%eth0", "x", "", "224.0.0.0/4", "ff00::/8", "0.0.0.0/0", "::/0",
			"fe80::/10", "2001:db8::/129",
		})
	}
	four := v4 && (!v6 || g.rng.IntN(2) == 0)
	if g.bad() {
		four = !four
	}
	var a netip.Addr
	if four {
		a = g.addr4(true)
	} else {
		var b [16]byte
		for i := range b {
			b[i] = byte(g.rng.IntN(256))
		}
		a = netip.AddrFrom16(b)
	}
	p := netip.PrefixFrom(a, g.rng.IntN(a.BitLen()+1))
	if g.bad() {
		return p.String() // host bits, probably
	}
	return p.Masked().String()
}

// logFile returns a bird.logFile: "" (none) or an absolute clean path of
// printable ASCII with characters that mean something to BIRD outside a
// string when valid; else a path BIRD's string syntax cannot carry, or one
// that is relative, not clean or names another of BIRD's files.
func (g *configGen) logFile() string {
	if g.bad() {
		return g.pick([]string{
			"bird.log", "/run/bird/", "/run//bird.log", "/run/bird/../bird.log", "/", `/run/bird/"x.log`,
			`/run/bird/a\b.log`, "/run/bird/a\nb.log", "/run/bird/a\tb", "/run/bird/vögel.log", "/run/bird/bird.ctl",
			"/etc/bird/bird.conf", "/" + strings.Repeat("x", birdconf.MaxLogFileLen),
		})
	}
	if g.rng.IntN(5) == 0 {
		return ""
	}
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789 #;{}'*._-"
	var b strings.Builder
	for range 1 + g.rng.IntN(4) {
		b.WriteByte('/')
		n := 1 + g.rng.IntN(12)
		for i := 0; i < n; i++ {
			c := chars[g.rng.IntN(len(chars))]
			if c == '.' && i == 0 {
				c = 'x' // no "." or ".." parts
			}
			b.WriteByte(c)
		}
	}
	return b.String()
}

// password returns a TCP MD5 password holding a secret token, printable
// ASCII up to 80 bytes when valid.
func (g *configGen) password() string {
	token := g.token()
	const printable = " !#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~"
	b := []byte(token)
	for range g.rng.IntN(birdconf.MaxPasswordLen - len(token) + 1) {
		b = append(b, printable[g.rng.IntN(len(printable))])
	}
	pw := string(b)
	if g.bad() {
		switch g.rng.IntN(3) {
		case 0:
			i := g.rng.IntN(len(pw) + 1)
			pw = pw[:i] + g.pick([]string{`"`, `\`, "\t", "\r", "\n", "ä", "€", "\x00", "\x7f", "\x1b"}) + pw[i:]
		case 1:
			pw += strings.Repeat("x", birdconf.MaxPasswordLen+1-len(pw)+g.rng.IntN(100))
		default:
			pw = token + " /* #" + `'"`
		}
	}
	return pw
}

// token returns a random secret of 10 letters and digits, recorded so that
// the test can look for it in errors.
func (g *configGen) token() string {
	const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 10)
	for i := range b {
		b[i] = alnum[g.rng.IntN(len(alnum))]
	}
	g.secrets = append(g.secrets, string(b))
	return string(b)
}

// passwordFile writes a password file and returns its path: mode 0600 or
// 0400 holding a password and maybe a line end when valid; otherwise a file
// others may read, a relative or missing path, a directory, an empty file
// or a password with two line ends.
func (g *configGen) passwordFile() string {
	g.files++
	path := filepath.Join(g.dir, fmt.Sprintf("pw%d", g.files))
	content := g.password() + g.pick([]string{"", "\n", "\r\n"})
	mode := os.FileMode(0o600)
	if g.rng.IntN(2) == 0 {
		mode = 0o400
	}
	if g.bad() {
		switch g.rng.IntN(7) {
		case 0:
			mode = []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o606}[g.rng.IntN(5)]
		case 1:
			return "pw-relative"
		case 2:
			return path + "-missing"
		case 3:
			return g.dir
		case 4:
			content = ""
		case 5:
			content = g.token() + "\n\n"
		default:
			content = g.token() + "\r"
		}
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		panic(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		panic(err)
	}
	return path
}
