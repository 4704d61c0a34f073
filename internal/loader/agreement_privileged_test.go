package loader

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/roost-net/roost/bpf"
	"github.com/roost-net/roost/internal/datapath"
	"github.com/roost-net/roost/internal/policy"
	"github.com/roost-net/roost/internal/testenv"
)

// agreementFiles are the differential policies the kernel test runs: every
// kind of port rule, ICMP, entities, CIDRs and named ports.
var agreementFiles = []string{"ports.yaml", "icmps.yaml", "entities.yaml", "cidr.yaml", "named-ports.yaml", "defaults.yaml", "clusterwide.yaml"}

// TestPrivilegedDatapathAgreesWithDecide writes the loader's verdict tables
// for real policies into the kernel's maps and runs packets through
// to_endpoint with BPF_PROG_TEST_RUN: TCP, UDP and SCTP at the policies'
// ports, ICMP and ICMPv6 types, GRE and ESP, from every source of the
// differential world. Every packet must pass exactly when the compiler's
// Decide allows it (and Decide agrees with the model of Cilium:
// TestDifferential).
func TestPrivilegedDatapathAgreesWithDecide(t *testing.T) {
	testenv.Privileged(t)
	packets := 0
	for _, name := range agreementFiles {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata/differential", name))
			if err != nil {
				t.Fatal(err)
			}
			pols, err := policy.Parse(strings.NewReader(string(data)), name)
			if err != nil {
				t.Fatal(err)
			}
			w := buildWorld(data, pols)
			res, err := policy.Compile(pols, w.roost, policy.WithHostIPs(w.model.HostIPs...),
				policy.WithRemoteNodeIPs(nodeAddrs(w.model.Nodes)...), policy.WithCluster(differentialCluster))
			if err != nil {
				t.Fatal(err)
			}
			var objs bpf.PolicyObjects
			if err := bpf.LoadPolicyObjects(&objs, nil); err != nil {
				var ve *ebpf.VerifierError
				if errors.As(err, &ve) {
					t.Fatalf("load: %+v", ve)
				}
				t.Fatalf("load: %v", err)
			}
			defer objs.Close()
			maps := datapath.NewMaps(&objs)
			for _, e := range res.IPCache {
				if err := maps.SetIdentity(e.Prefix, datapath.Identity(e.Identity)); err != nil {
					t.Fatal(err)
				}
			}
			byName := map[string]policy.EndpointPolicy{}
			for _, ep := range res.Endpoints {
				byName[ep.Name] = ep
			}
			var written []datapath.Identity
			table := uint32(0)
			mismatches := 0
			for _, dst := range w.dsts[:min(len(w.dsts), 8)] {
				ep := byName[dst]
				enforce, tables, err := policyTables(ep)
				if err != nil {
					t.Fatal(err)
				}
				// BPF_PROG_TEST_RUN gives packets ifindex 1 (lo): the
				// endpoint is that interface's.
				for _, r := range written {
					if err := maps.DeletePolicy(agreementEndpoint, r); err != nil {
						t.Fatal(err)
					}
				}
				written = written[:0]
				for remote, vt := range tables {
					table++
					if err := maps.SetVerdictTable(table, vt); err != nil {
						t.Fatal(err)
					}
					if err := maps.SetPolicy(agreementEndpoint, remote, datapath.PolicyEntry{Table: table}); err != nil {
						t.Fatal(err)
					}
					written = append(written, remote)
				}
				if err := maps.SetEndpoint(agreementEndpoint, datapath.Endpoint{ID: agreementEndpoint, EnforceIngress: enforce}); err != nil {
					t.Fatal(err)
				}
				for _, src := range w.srcs {
					dstIP := ep.IPs[0]
					if src.Is6() {
						dstIP = ep.IPs[len(ep.IPs)-1]
					}
					remote := res.Lookup(src)
					for _, pp := range w.flows {
						if src.Is4() && pp.proto == 58 || src.Is6() && pp.proto == 1 {
							continue
						}
						want := ep.Decide(remote, policy.Protocol(pp.proto), pp.port)
						ret, err := objs.ToEndpoint.Run(&ebpf.RunOptions{Data: agreementFrame(src, dstIP, pp)})
						if err != nil {
							t.Fatal(err)
						}
						packets++
						got := policy.Deny
						if int32(ret) == -1 { // TC_ACT_UNSPEC: passed on
							got = policy.Allow
						}
						if got != want && mismatches < 10 {
							mismatches++
							t.Errorf("%s -> %s %s (identity %d): kernel %s, Decide %s\n%s", src, dst, protoPortName(pp), remote, got, want, entriesText(ep))
						}
					}
				}
			}
		})
	}
	t.Logf("%d packets through to_endpoint", packets)
}

// agreementEndpoint is the endpoint id (and ifindex) of the packets
// BPF_PROG_TEST_RUN runs: lo's.
const agreementEndpoint = 1

// agreementFrame returns an Ethernet frame from src to dst of the flow's
// protocol: TCP SYN, UDP or SCTP to its port, an ICMP message of its type,
// or a bare GRE or ESP header.
func agreementFrame(src, dst netip.Addr, pp protoPort) []byte {
	be := binary.BigEndian
	var l4 []byte
	switch pp.proto {
	case 6:
		l4 = make([]byte, 20)
		be.PutUint16(l4[0:], 40000)
		be.PutUint16(l4[2:], pp.port)
		l4[12], l4[13] = 5<<4, 0x02
		be.PutUint16(l4[14:], 65535)
	case 17:
		l4 = make([]byte, 8)
		be.PutUint16(l4[0:], 40000)
		be.PutUint16(l4[2:], pp.port)
		be.PutUint16(l4[4:], 8)
	case 132:
		l4 = make([]byte, 12)
		be.PutUint16(l4[0:], 40000)
		be.PutUint16(l4[2:], pp.port)
	case 1, 58:
		l4 = make([]byte, 8)
		l4[0] = byte(pp.port)
		be.PutUint16(l4[4:], 7) // echo identifier
	default:
		l4 = make([]byte, 8) // GRE: flags and protocol; ESP: SPI and sequence
	}
	eth := make([]byte, 14)
	copy(eth[0:6], []byte{2, 0, 0, 0, 0, 1})
	copy(eth[6:12], []byte{2, 0, 0, 0, 0, 2})
	if src.Is4() {
		be.PutUint16(eth[12:], 0x0800)
		ip := make([]byte, 20)
		ip[0] = 0x45
		be.PutUint16(ip[2:], uint16(20+len(l4)))
		ip[8], ip[9] = 64, pp.proto
		s, d := src.As4(), dst.As4()
		copy(ip[12:16], s[:])
		copy(ip[16:20], d[:])
		return append(append(eth, ip...), l4...)
	}
	be.PutUint16(eth[12:], 0x86DD)
	ip := make([]byte, 40)
	ip[0] = 0x60
	be.PutUint16(ip[4:], uint16(len(l4)))
	ip[6], ip[7] = pp.proto, 64
	s, d := src.As16(), dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	return append(append(eth, ip...), l4...)
}
