package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roost-net/roost/internal/agentapi"
)

// servicesVIPs is a services file with a Cluster VIP, and a Local one whose
// only backend is on node1 (ready) or, in the second form, on node2.
const servicesVIPs = `services:
  - name: web
    externalIPs: [192.0.2.10, 2001:db8::10]
    ports: [{port: 80}]
    backends: [{ip: 10.244.9.10, node: node2}]
  - name: db
    externalIPs: [192.0.2.11]
    externalTrafficPolicy: Local
    ports: [{port: 6379}]
    backends: [{ip: 10.244.1.10, node: %s}]
`

// TestPrivilegedAgentVIPs runs roost-agent with vips.servicesFile against
// real BIRD and FRR ToRs: both ToRs learn the services' VIPs beside the
// PodCIDR (an externalTrafficPolicy: Local one only while this node has a
// backend of it), and a VIP coming or going touches no session and needs no
// BIRD reconfiguration (the config on disk stays the same).
func TestPrivilegedAgentVIPs(t *testing.T) {
	f := newFabric(t)
	svcFile := filepath.Join(t.TempDir(), "services.yaml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(svcFile+".tmp", []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(svcFile+".tmp", svcFile); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf(servicesVIPs, "node1"))
	// The table is the test's own, not the lab's default.
	yaml := f.agentYAML("10.244.1.0/24") + fmt.Sprintf("vips: {servicesFile: %s, table: 4242}\n", svcFile)
	p := f.startAgentProc(yaml)
	f.waitAnnounced("10.244.1.0/24", "192.0.2.10/32", "192.0.2.11/32")
	before := f.waitEstablished()
	conf, err := os.ReadFile(filepath.Join(f.bird.Dir, "bird.conf"))
	if err != nil {
		t.Fatal(err)
	}

	// db's only backend moves to node2: db's Local VIP is withdrawn.
	write(fmt.Sprintf(servicesVIPs, "node2"))
	f.waitAnnounced("10.244.1.0/24", "192.0.2.10/32")
	// And back.
	write(fmt.Sprintf(servicesVIPs, "node1"))
	f.waitAnnounced("10.244.1.0/24", "192.0.2.10/32", "192.0.2.11/32")
	// A file that does not load: the VIPs stay, and the agent says it is
	// not ready, and why.
	p.waitStatus("ready", func(s agentapi.Status) bool { return s.Ready })
	write("services: [{name: web, ports: 80}]\n")
	p.waitStatus("not ready over the VIPs", func(s agentapi.Status) bool {
		return !s.Ready && strings.HasPrefix(s.ReadyMessage, "VIPs: ") && len(s.VIPs) == 3
	})
	f.waitAnnounced("10.244.1.0/24", "192.0.2.10/32", "192.0.2.11/32")
	// No services: only the PodCIDR.
	write("services: []\n")
	p.waitStatus("ready again", func(s agentapi.Status) bool { return s.Ready && s.VIPError == "" })
	f.waitAnnounced("10.244.1.0/24")
	f.assertNoReset(before)
	after, err := os.ReadFile(filepath.Join(f.bird.Dir, "bird.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(conf) {
		t.Error("bird.conf changed with the VIPs: they must come and go through the kernel table alone")
	}
}
