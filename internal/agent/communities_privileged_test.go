package agent

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// servicesCommunities is a services file with a VIP whose service asks for
// communities of its own (%s: its bgpCommunities line) and a plain one.
const servicesCommunities = `services:
  - name: web
    externalIPs: [192.0.2.10]
    ports: [{port: 80}]
%s  - name: plain
    externalIPs: [192.0.2.11]
    ports: [{port: 80}]
`

// TestPrivilegedAgentCommunities runs roost-agent against FRR ToRs and
// reads what each ToR received (show bgp ... json): the communities of each
// prefix class (PodCIDR, VIP), a service's own communities on its VIP,
// large communities with 4-byte AS numbers, and one peer's own MED and
// community, which the other peer does not get. Changing a service's
// communities, and the class communities through a reload, changes what
// the ToRs hold without resetting a session.
func TestPrivilegedAgentCommunities(t *testing.T) {
	f := newFabric(t)
	svcFile := filepath.Join(t.TempDir(), "services.yaml")
	write := func(comms string) {
		t.Helper()
		if err := os.WriteFile(svcFile+".tmp", []byte(fmt.Sprintf(servicesCommunities, comms)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(svcFile+".tmp", svcFile); err != nil {
			t.Fatal(err)
		}
	}
	write("    bgpCommunities: [\"65000:300\", \"4200000000:7:1\"]\n")
	yaml := func(podCommunity string) string {
		y := fmt.Sprintf(`node: node1
asn: 65101
routerID: 10.0.1.2
podCIDRs: [10.244.1.0/24]
peers:
  - {name: tor1, address: 10.0.1.1, asn: 65000, med: 50, communities: ["65000:7"]}
  - {name: tor2, address: 10.0.2.1, asn: 65000}
bird: {socket: %s, configDir: %s}
listen: 127.0.0.1:9479
controlSocket: %s
vips: {servicesFile: %s, table: 4243}
communities: {podCIDR: [%q, "4200000101:1:1"], vip: ["65000:200"]}
`, f.bird.Socket, f.bird.Dir, f.controlSocket(), svcFile, podCommunity)
		return y
	}
	p := f.startAgentProc(yaml("65000:100"))
	pod, web, plain := netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("192.0.2.10/32"), netip.MustParsePrefix("192.0.2.11/32")
	f.waitAnnounced(pod.String(), web.String(), plain.String())
	before := f.waitEstablished()

	type attrs struct {
		comms, large string
		med          int64
	}
	want := func(i int, p netip.Prefix, a attrs) {
		t.Helper()
		f.tors[i].WaitFor(t, waitLimit, fmt.Sprintf("tor%d: %s with %+v", i+1, p, a), func() (bool, string) {
			paths, err := f.tors[i].Paths(p)
			if err != nil || len(paths) != 1 {
				return false, fmt.Sprintf("%+v %v", paths, err)
			}
			got := attrs{strings.Join(paths[0].Communities, " "), strings.Join(paths[0].LargeCommunities, " "), paths[0].MED}
			return got == a, fmt.Sprintf("%+v", got)
		})
	}
	// tor1 gets its own MED and community on top of the class's; tor2
	// only the class's.
	want(0, pod, attrs{"65000:7 65000:100", "4200000101:1:1", 50})
	want(1, pod, attrs{"65000:100", "4200000101:1:1", -1})
	want(0, web, attrs{"65000:7 65000:200 65000:300", "4200000000:7:1", 50})
	want(1, web, attrs{"65000:200 65000:300", "4200000000:7:1", -1})
	want(1, plain, attrs{"65000:200", "", -1})

	// The service's communities change: BIRD learns the new tag, then
	// the VIP moves to it.
	write("    bgpCommunities: [\"65000:301\"]\n")
	want(1, web, attrs{"65000:200 65000:301", "", -1})
	want(0, web, attrs{"65000:7 65000:200 65000:301", "", 50})
	// None of its own any more.
	write("")
	want(1, web, attrs{"65000:200", "", -1})
	// The PodCIDRs' community changes through a config reload.
	p.writeConfig(yaml("65000:101"))
	want(1, pod, attrs{"65000:101", "4200000101:1:1", -1})
	want(1, plain, attrs{"65000:200", "", -1})
	f.assertNoReset(before)
	if out, err := p.roostctl("config"); err != nil || !strings.Contains(out, "bgp_community.add((65000, 101));") {
		t.Errorf("roostctl config: %v\n%s", err, out)
	}
	status := p.status()
	if len(status.VIPs) != 2 || !slices.Contains(status.VIPs, web) {
		t.Errorf("status VIPs %v", status.VIPs)
	}
}
