package services

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/roost-net/roost/internal/community"
	"github.com/roost-net/roost/internal/policy"
)

var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// backend is a ready, serving backend.
func backend(addr, node string) Backend {
	return Backend{IP: ip(addr), Node: node, Ready: true, Serving: true}
}

// service is a service with the defaults Load fills in.
func service(name string, change func(*Service)) Service {
	s := Service{
		Namespace:             DefaultNamespace,
		Name:                  name,
		ExternalTrafficPolicy: TrafficPolicyCluster,
		InternalTrafficPolicy: TrafficPolicyCluster,
		SessionAffinity:       SessionAffinityNone,
	}
	change(&s)
	return s
}

// example is what testdata/services.yaml, the README's example, holds.
func example() []Service {
	return []Service{service("db", func(s *Service) {
		s.ClusterIPs = addrs("10.96.0.10")
		s.ExternalIPs = addrs("192.0.2.10")
		s.Ports = []Port{{Name: "redis", Protocol: TCP, Port: 6379, TargetPort: 6379}}
		s.Backends = []Backend{
			backend("10.244.1.10", "node1"),
			{IP: ip("10.244.2.12"), Node: "node2", Serving: true, Terminating: true},
		}
	})}
}

// full is what testdata/full.yaml holds: every field.
func full() []Service {
	return []Service{
		{
			Namespace:       "shop",
			Name:            "web",
			ClusterIPs:      addrs("10.96.0.20", "fd00:96::20"),
			ExternalIPs:     addrs("192.0.2.20"),
			LoadBalancerIPs: addrs("198.51.100.20", "2001:db8::20"),
			Ports: []Port{
				{Name: "http", Protocol: TCP, Port: 80, TargetPortName: "http", NodePort: 30080},
				{Name: "https", Protocol: TCP, Port: 443, TargetPort: 8443},
				{Name: "quic", Protocol: UDP, Port: 443, TargetPort: 8443},
			},
			ExternalTrafficPolicy:  TrafficPolicyLocal,
			InternalTrafficPolicy:  TrafficPolicyLocal,
			SessionAffinity:        SessionAffinityClientIP,
			SessionAffinityTimeout: 600 * time.Second,
			BGPCommunities:         []community.Community{{A: 65000, B: 300}, {Large: true, A: 4200000000, B: 7, C: 1}},
			Backends: []Backend{
				{IP: ip("10.244.1.20"), Node: "node1", Ready: true, Serving: true, Ports: map[string]NamedPort{"http": {Port: 8080, Protocol: TCP}}},
				{IP: ip("fd00:244:1::20"), Node: "node1", Ready: true, Serving: true, Ports: map[string]NamedPort{"http": {Port: 8080, Protocol: TCP}}},
				{IP: ip("10.244.2.20"), Node: "node2", Ports: map[string]NamedPort{"http": {Port: 8081, Protocol: TCP}}},
				{IP: ip("10.244.2.21"), Node: "node2", Terminating: true},
				{IP: ip("10.0.9.20"), Ready: true, Serving: true},
			},
		},
		service("dns", func(s *Service) {
			s.Namespace = "kube-system"
			s.ClusterIPs = addrs("10.96.0.53")
			s.Ports = []Port{
				{Name: "dns", Protocol: UDP, Port: 53, TargetPortName: "dns"},
				{Name: "dns-tcp", Protocol: TCP, Port: 53, TargetPortName: "dns-tcp"},
				{Name: "sig", Protocol: SCTP, Port: 2905, TargetPort: 2905},
			}
			s.Backends = []Backend{{IP: ip("10.244.1.53"), Node: "node1", Ready: true, Serving: true,
				Ports: map[string]NamedPort{"dns": {Port: 53, Protocol: UDP}, "dns-tcp": {Port: 53, Protocol: TCP}}}}
		}),
	}
}

func TestLoadFile(t *testing.T) {
	for _, tt := range []struct {
		path string
		want []Service
	}{
		{"testdata/services.yaml", example()},
		{"testdata/full.yaml", full()},
		{"testdata/missing.yaml", nil},
	} {
		t.Run(tt.path, func(t *testing.T) {
			got, err := LoadFile(tt.path)
			if err != nil {
				t.Fatalf("LoadFile: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpAddr); diff != "" {
				t.Errorf("LoadFile mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	if _, err := LoadFile(t.TempDir()); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("LoadFile of a directory = %v", err)
	}
	bad := filepath.Join(t.TempDir(), "services.yaml")
	if err := os.WriteFile(bad, []byte("services: [{name: db}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(bad); err == nil || !strings.HasPrefix(err.Error(), bad+":1: services[0]") {
		t.Errorf("LoadFile = %v, want errors naming %s", err, bad)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestLoadReadError(t *testing.T) {
	_, err := Load(failingReader{}, "services.yaml")
	if err == nil || !strings.Contains(err.Error(), "services.yaml") || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("Load = %v, want an error naming the file and the cause", err)
	}
}

func TestLoad(t *testing.T) {
	const db = "services:\n- name: db\n  clusterIPs: [10.96.0.10]\n  ports: [{port: 80}]\n"
	minimal := func(change func(*Service)) []Service {
		return []Service{service("db", func(s *Service) {
			s.ClusterIPs = addrs("10.96.0.10")
			s.Ports = []Port{{Protocol: TCP, Port: 80, TargetPort: 80}}
			change(s)
		})}
	}
	conditions := func(ready, serving, terminating bool) []Service {
		return minimal(func(s *Service) {
			s.Backends = []Backend{{IP: ip("10.244.1.10"), Ready: ready, Serving: serving, Terminating: terminating}}
		})
	}
	tests := []struct {
		name string
		yaml string
		want []Service
	}{
		{name: "empty file", yaml: ""},
		{name: "only comments", yaml: "# no services yet\n"},
		{name: "empty mapping", yaml: "{}\n"},
		{name: "null services", yaml: "services:\n"},
		{name: "empty services", yaml: "services: []\n"},
		{name: "defaults", yaml: db, want: minimal(func(*Service) {})},
		{name: "trailing document separator", yaml: db + "---\n", want: minimal(func(*Service) {})},
		{
			name: "client IP affinity has the default timeout",
			yaml: db + "  sessionAffinity: ClientIP\n",
			want: minimal(func(s *Service) { s.SessionAffinity, s.SessionAffinityTimeout = SessionAffinityClientIP, 3*time.Hour }),
		},
		{
			name: "timeout bounds",
			yaml: db + "  sessionAffinity: ClientIP\n  sessionAffinityTimeout: 86400\n",
			want: minimal(func(s *Service) { s.SessionAffinity, s.SessionAffinityTimeout = SessionAffinityClientIP, 24*time.Hour }),
		},
		{
			name: "Local with a node port",
			yaml: "services:\n- name: db\n  clusterIPs: [10.96.0.10]\n  ports: [{port: 80, nodePort: 30080}]\n  externalTrafficPolicy: Local\n",
			want: minimal(func(s *Service) {
				s.Ports[0].NodePort = 30080
				s.ExternalTrafficPolicy = TrafficPolicyLocal
			}),
		},
		{
			name: "Local with a load-balancer IP only",
			yaml: "services:\n- name: db\n  loadBalancerIPs: ['2001:db8::1']\n  ports: [{port: 80}]\n  externalTrafficPolicy: Local\n",
			want: []Service{service("db", func(s *Service) {
				s.LoadBalancerIPs = addrs("2001:db8::1")
				s.Ports = []Port{{Protocol: TCP, Port: 80, TargetPort: 80}}
				s.ExternalTrafficPolicy = TrafficPolicyLocal
			})},
		},
		{
			name: "one port needs no name, a targetPort name no backend resolves",
			yaml: "services:\n- name: db\n  clusterIPs: [10.96.0.10]\n  ports: [{port: 80, targetPort: http}]\n  backends: [{ip: 10.244.1.10}]\n",
			want: minimal(func(s *Service) {
				s.Ports[0].TargetPort, s.Ports[0].TargetPortName = 0, "http"
				s.Backends = []Backend{backend("10.244.1.10", "")}
			}),
		},
		{
			name: "a backend family without frontends, a frontend family without backends",
			yaml: "services:\n- name: db\n  clusterIPs: [10.96.0.10]\n  ports: [{port: 80}]\n  backends: [{ip: 'fd00:244::10'}]\n",
			want: minimal(func(s *Service) { s.Backends = []Backend{backend("fd00:244::10", "")} }),
		},
		{name: "conditions: none given", yaml: db + "  backends: [{ip: 10.244.1.10}]\n", want: conditions(true, true, false)},
		{name: "conditions: terminating", yaml: db + "  backends: [{ip: 10.244.1.10, terminating: true}]\n", want: conditions(false, true, true)},
		{name: "conditions: not ready", yaml: db + "  backends: [{ip: 10.244.1.10, ready: false}]\n", want: conditions(false, false, false)},
		{name: "conditions: not ready, terminating", yaml: db + "  backends: [{ip: 10.244.1.10, ready: false, terminating: true}]\n", want: conditions(false, true, true)},
		{name: "conditions: not serving", yaml: db + "  backends: [{ip: 10.244.1.10, serving: false}]\n", want: conditions(false, false, false)},
		{name: "conditions: terminating, not serving", yaml: db + "  backends: [{ip: 10.244.1.10, terminating: true, serving: false}]\n", want: conditions(false, false, true)},
		{name: "conditions: ready while terminating", yaml: db + "  backends: [{ip: 10.244.1.10, ready: true, terminating: true}]\n", want: conditions(true, true, true)},
		{name: "conditions: all given", yaml: db + "  backends: [{ip: 10.244.1.10, ready: true, serving: false, terminating: false}]\n", want: conditions(true, false, false)},
		{
			name: "services share an address on other ports or protocols, and a name in other namespaces",
			yaml: `services:
- {name: db, clusterIPs: [10.96.0.10], ports: [{port: 80, nodePort: 30080}]}
- {name: db, namespace: prod, clusterIPs: [10.96.0.10], ports: [{port: 80, protocol: UDP, nodePort: 30080, targetPort: 8080}]}
- {name: web, externalIPs: [10.96.0.10], ports: [{port: 443}]}
`,
			want: []Service{
				service("db", func(s *Service) {
					s.ClusterIPs = addrs("10.96.0.10")
					s.Ports = []Port{{Protocol: TCP, Port: 80, TargetPort: 80, NodePort: 30080}}
				}),
				service("db", func(s *Service) {
					s.Namespace = "prod"
					s.ClusterIPs = addrs("10.96.0.10")
					s.Ports = []Port{{Protocol: UDP, Port: 80, TargetPort: 8080, NodePort: 30080}}
				}),
				service("web", func(s *Service) {
					s.ExternalIPs = addrs("10.96.0.10")
					s.Ports = []Port{{Protocol: TCP, Port: 443, TargetPort: 443}}
				}),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(strings.NewReader(tt.yaml), "services.yaml")
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpAddr); diff != "" {
				t.Errorf("Load mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLoadErrors checks every rule's message, exactly: each case's error
// lines, in order.
func TestLoadErrors(t *testing.T) {
	const svcFields = "known: name, namespace, clusterIPs, externalIPs, loadBalancerIPs, ports, externalTrafficPolicy, internalTrafficPolicy, sessionAffinity, sessionAffinityTimeout, backends, bgpCommunities"
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "syntax",
			yaml: "services:\n  - name: db\n    clusterIPs: [10.96.0.10]\n\tports: []\n",
			want: []string{"services.yaml:4: YAML: found character that cannot start any token"},
		},
		{
			name: "a list",
			yaml: "- name: db\n",
			want: []string{"services.yaml:1: the file must be a mapping, `services: [...]`, not a list"},
		},
		{
			name: "two documents",
			yaml: "services: []\n---\nservices: []\n",
			want: []string{"services.yaml:3: a second YAML document; the services file holds one"},
		},
		{
			name: "unknown top-level field",
			yaml: "service: []\n",
			want: []string{"services.yaml:1: service: unknown field: did you mean services? (known: services)"},
		},
		{
			name: "bad communities",
			yaml: "services:\n  - name: db\n    externalIPs: [192.0.2.10]\n    ports: [{port: 80}]\n    bgpCommunities: [\"65000:1\", \"65536:1\", 7]\n",
			want: []string{
				`services.yaml:5: services[0].bgpCommunities[1]: "65536:1": part "65536" is larger than 16 bits: not a community (A:B with parts 0-65535, or A:B:C with parts 0-4294967295)`,
				`services.yaml:5: services[0].bgpCommunities[2]: must be a string: quote it ("7")`,
			},
		},
		{
			name: "services not a list",
			yaml: "services: {name: db}\n",
			want: []string{"services.yaml:1: services: must be a list"},
		},
		{
			name: "unknown fields",
			yaml: "services:\n- name: db\n  clusterIPs: [10.96.0.10]\n  clusterIP: 10.96.0.10\n  ports: [{port: 80, targetport: 8080}]\n  backends: [{ip: 10.244.1.10, nodeName: node1}]\n",
			want: []string{
				"services.yaml:4: services[0].clusterIP: unknown field: did you mean clusterIPs? (" + svcFields + ")",
				"services.yaml:5: services[0].ports[0].targetport: unknown field: did you mean targetPort? (known: name, port, targetPort, nodePort, protocol)",
				"services.yaml:6: services[0].backends[0].nodeName: unknown field (known: ip, node, ready, serving, terminating, ports)",
			},
		},
		{
			name: "aliases, merge keys and duplicate keys",
			yaml: "services:\n- name: db\n  clusterIPs: &ips [10.96.0.10]\n  externalIPs: *ips\n  ports: [{port: 80}]\n  <<: {namespace: x}\n  name: db2\n",
			want: []string{
				"services.yaml:4: services[0].externalIPs: YAML aliases are not supported; write the value out",
				"services.yaml:6: services[0]: YAML merge keys (<<) are not supported; write the fields out",
				"services.yaml:7: services[0].name: duplicate key",
			},
		},
		{
			name: "names",
			yaml: `services:
- {clusterIPs: [10.96.0.1], ports: [{port: 80}]}
- {name: 1db, clusterIPs: [10.96.0.2], ports: [{port: 80}]}
- {name: Db, clusterIPs: [10.96.0.3], ports: [{port: 80}]}
- {name: db.x, namespace: Prod, clusterIPs: [10.96.0.4], ports: [{port: 80}]}
- {name: 42, namespace: "", clusterIPs: [10.96.0.5], ports: [{port: 80}]}
`,
			want: []string{
				"services.yaml:2: services[0].name: required",
				`services.yaml:3: services[1].name: "1db" is not a service name: ` + dns1035Label,
				`services.yaml:4: services[2].name: "Db" is not a service name: ` + dns1035Label,
				`services.yaml:5: services[3].name: "db.x" is not a service name: ` + dns1035Label,
				`services.yaml:5: services[3].namespace: "Prod" is not a namespace name: ` + dns1123Label,
				`services.yaml:6: services[4].name: must be a string: quote it ("42")`,
				`services.yaml:6: services[4].namespace: "" is not a namespace name: ` + dns1123Label,
			},
		},
		{
			name: "namespace and name repeated",
			yaml: `services:
- {name: db, clusterIPs: [10.96.0.1], ports: [{port: 80}]}
- {name: db, namespace: default, clusterIPs: [10.96.0.2], ports: [{port: 80}]}
`,
			want: []string{"services.yaml:3: services[1].name: default/db is already services[0] (line 2)"},
		},
		{
			name: "no frontend",
			yaml: "services:\n- name: db\n  clusterIPs: []\n  ports: [{port: 80}]\n",
			want: []string{"services.yaml:2: services[0]: no frontend: give clusterIPs, externalIPs or loadBalancerIPs"},
		},
		{
			name: "bad frontend addresses",
			yaml: `services:
- name: db
  clusterIPs: [None]
  externalIPs: [10.96.0, 10.96.0.0/12, 0.0.0.0, 127.0.0.1, 224.0.0.1, 169.254.1.1, "fe80::1", 255.255.255.255]
  loadBalancerIPs: ["::ffff:10.0.0.1", "fd00::1%eth0", 42, [10.0.0.1]]
  ports: [{port: 80}]
`,
			want: []string{
				`services.yaml:3: services[0].clusterIPs[0]: "None" (a headless service) has nothing to load-balance: leave the service out`,
				`services.yaml:4: services[0].externalIPs[0]: "10.96.0" is not an IP address`,
				`services.yaml:4: services[0].externalIPs[1]: "10.96.0.0/12" is a prefix; write an address without a length`,
				"services.yaml:4: services[0].externalIPs[2]: 0.0.0.0 is unspecified, not a frontend address",
				"services.yaml:4: services[0].externalIPs[3]: 127.0.0.1 is loopback, not a frontend address",
				"services.yaml:4: services[0].externalIPs[4]: 224.0.0.1 is multicast, not a frontend address",
				"services.yaml:4: services[0].externalIPs[5]: 169.254.1.1 is link-local, not a frontend address",
				"services.yaml:4: services[0].externalIPs[6]: fe80::1 is link-local, not a frontend address",
				"services.yaml:4: services[0].externalIPs[7]: 255.255.255.255 is broadcast, not a frontend address",
				"services.yaml:5: services[0].loadBalancerIPs[0]: ::ffff:10.0.0.1 is IPv4-mapped; write 10.0.0.1",
				"services.yaml:5: services[0].loadBalancerIPs[1]: fd00::1%eth0 must not have a zone",
				`services.yaml:5: services[0].loadBalancerIPs[2]: must be a string: quote it ("42")`,
				"services.yaml:5: services[0].loadBalancerIPs[3]: must be a string",
			},
		},
		{
			name: "addresses repeated in a service, two cluster IPs of a family",
			yaml: `services:
- name: db
  clusterIPs: [10.96.0.10, "fd00::10", 10.96.0.11, "fd00::11"]
  externalIPs: [192.0.2.10, 10.96.0.10]
  loadBalancerIPs: [192.0.2.10]
  ports: [{port: 80}]
`,
			want: []string{
				"services.yaml:3: services[0].clusterIPs[2]: 10.96.0.11 is a second cluster IP of its family (the first is 10.96.0.10); a service has one per family",
				"services.yaml:3: services[0].clusterIPs[3]: fd00::11 is a second cluster IP of its family (the first is fd00::10); a service has one per family",
				"services.yaml:4: services[0].externalIPs[1]: 10.96.0.10 repeats clusterIPs[0]",
				"services.yaml:5: services[0].loadBalancerIPs[0]: 192.0.2.10 repeats externalIPs[0]",
			},
		},
		{
			name: "a frontend address serves a port for two services",
			yaml: `services:
- name: db
  clusterIPs: [10.96.0.10]
  ports: [{name: a, port: 80}, {name: b, port: 443}, {name: c, port: 53, protocol: UDP}]
- name: web
  externalIPs: [10.96.0.10]
  ports: [{name: a, port: 80}, {name: b, port: 443}, {name: c, port: 53}]
- name: dns
  loadBalancerIPs: [192.0.2.1, 10.96.0.10]
  ports: [{port: 53, protocol: UDP}]
`,
			want: []string{
				"services.yaml:6: services[1].externalIPs[0]: 10.96.0.10 TCP/80, TCP/443 is already a frontend of default/db (services[0].clusterIPs[0], line 3)",
				"services.yaml:9: services[2].loadBalancerIPs[1]: 10.96.0.10 UDP/53 is already a frontend of default/db (services[0].clusterIPs[0], line 3)",
			},
		},
		{
			name: "ports missing",
			yaml: "services:\n- {name: a, clusterIPs: [10.96.0.1]}\n- {name: b, clusterIPs: [10.96.0.2], ports: []}\n- {name: c, clusterIPs: [10.96.0.3], ports: {port: 80}}\n",
			want: []string{
				"services.yaml:2: services[0].ports: required: at least one port",
				"services.yaml:3: services[1].ports: at least one port is required",
				"services.yaml:4: services[2].ports: must be a list",
			},
		},
		{
			name: "port numbers",
			yaml: `services:
- name: db
  clusterIPs: [10.96.0.10]
  ports:
  - {name: a, port: 80}
  - {name: b, port: 70000}
  - {name: c, port: 0, targetPort: 0, nodePort: 70000}
  - {name: d, port: "443", targetPort: "8443"}
  - {name: e, port: 80.5, targetPort: true}
  - {name: f, targetPort: Redis}
  - {name: g, port: 81, targetPort: redis-server-long}
  - {name: h, port: 82, protocol: tcp}
  - {name: i, port: -1}
`,
			want: []string{
				"services.yaml:6: services[0].ports[1].port: 70000 is not a port (1..65535)",
				"services.yaml:7: services[0].ports[2].port: 0 is not a port (1..65535)",
				"services.yaml:7: services[0].ports[2].targetPort: 0 is not a port (1..65535)",
				"services.yaml:7: services[0].ports[2].nodePort: 70000 is not a port (1..65535)",
				"services.yaml:8: services[0].ports[3].port: must be a port number (1..65535): unquote it (443)",
				"services.yaml:8: services[0].ports[3].targetPort: must be a port number (1..65535) or a port name: unquote it (8443)",
				"services.yaml:9: services[0].ports[4].port: must be a port number (1..65535)",
				"services.yaml:9: services[0].ports[4].targetPort: must be a port number (1..65535) or a port name",
				"services.yaml:10: services[0].ports[5].port: required",
				`services.yaml:10: services[0].ports[5].targetPort: "Redis" is not a port name: ` + ianaSvcName,
				`services.yaml:11: services[0].ports[6].targetPort: "redis-server-long" is not a port name: ` + ianaSvcName,
				`services.yaml:12: services[0].ports[7].protocol: "tcp" must be TCP, UDP or SCTP`,
				"services.yaml:13: services[0].ports[8].port: -1 is not a port (1..65535)",
			},
		},
		{
			name: "port names and repeats",
			yaml: `services:
- name: db
  clusterIPs: [10.96.0.10]
  ports:
  - {name: redis, port: 6379}
  - {name: redis, port: 6380}
  - {port: 6381}
  - {name: Redis, port: 6382}
  - {name: other, port: 6379}
  - {name: udp, port: 6379, protocol: UDP}
`,
			want: []string{
				`services.yaml:6: services[0].ports[1].name: "redis" repeats ports[0].name`,
				"services.yaml:7: services[0].ports[2].name: required when a service has more than one port",
				`services.yaml:8: services[0].ports[3].name: "Redis" is not a port name: ` + dns1123Label,
				"services.yaml:9: services[0].ports[4]: TCP/6379 repeats ports[0]",
			},
		},
		{
			name: "node ports repeated",
			yaml: `services:
- name: db
  clusterIPs: [10.96.0.10]
  ports:
  - {name: a, port: 80, nodePort: 30080}
  - {name: b, port: 81, nodePort: 30080}
  - {name: c, port: 82, nodePort: 30080, protocol: UDP}
- name: web
  clusterIPs: [10.96.0.11]
  ports:
  - {name: a, port: 80, nodePort: 30080, protocol: UDP}
`,
			want: []string{
				"services.yaml:6: services[0].ports[1].nodePort: TCP/30080 repeats ports[0].nodePort",
				"services.yaml:11: services[1].ports[0].nodePort: UDP/30080 is already the node port of default/db (services[0].ports[2], line 7)",
			},
		},
		{
			name: "traffic policies and session affinity",
			yaml: `services:
- name: a
  clusterIPs: [10.96.0.1]
  ports: [{port: 80}]
  externalTrafficPolicy: Local
  sessionAffinityTimeout: 600
- name: b
  clusterIPs: [10.96.0.2]
  ports: [{port: 80}]
  externalTrafficPolicy: local
  internalTrafficPolicy: Node
  sessionAffinity: clientIP
  sessionAffinityTimeout: 600
- name: c
  clusterIPs: [10.96.0.3]
  ports: [{port: 80}]
  sessionAffinity: ClientIP
  sessionAffinityTimeout: 86401
- name: d
  clusterIPs: [10.96.0.4]
  ports: [{port: 80}]
  sessionAffinity: ClientIP
  sessionAffinityTimeout: "600"
- name: e
  clusterIPs: [10.96.0.5]
  ports: [{port: 80}]
  sessionAffinity: ClientIP
  sessionAffinityTimeout: 0
`,
			want: []string{
				"services.yaml:5: services[0].externalTrafficPolicy: Local needs externalIPs, loadBalancerIPs or a nodePort: it applies to traffic from outside the cluster",
				"services.yaml:6: services[0].sessionAffinityTimeout: only with sessionAffinity: ClientIP",
				`services.yaml:10: services[1].externalTrafficPolicy: "local" must be Cluster or Local`,
				`services.yaml:11: services[1].internalTrafficPolicy: "Node" must be Cluster or Local`,
				`services.yaml:12: services[1].sessionAffinity: "clientIP" must be None or ClientIP`,
				"services.yaml:18: services[2].sessionAffinityTimeout: 86401 is not 1..86400 seconds",
				"services.yaml:23: services[3].sessionAffinityTimeout: must be a number of seconds (1..86400): unquote it (600)",
				"services.yaml:28: services[4].sessionAffinityTimeout: 0 is not 1..86400 seconds",
			},
		},
		{
			name: "backends",
			yaml: `services:
- name: db
  clusterIPs: [10.96.0.10]
  ports: [{port: 80}]
  backends:
  - {ip: 10.244.1.10, node: node1}
  - {ip: 10.244.1.10, node: Node_2}
  - {node: node3}
  - {ip: 127.0.0.1}
  - {ip: "fe80::10"}
  - {ip: 10.244.1.11, ready: yes, serving: 1, terminating: null}
  - {ip: 10.244.1.12, ports: {Redis: 6379, dns: 53/udp, zero: 0, big: 70000, list: [1]}}
  - {ip: 10.244.1.13, ports: [redis]}
  - 10.244.1.14
`,
			want: []string{
				"services.yaml:7: services[0].backends[1].ip: 10.244.1.10 repeats backends[0]",
				`services.yaml:7: services[0].backends[1].node: "Node_2" is not a node name: ` + dns1123Subdomain,
				"services.yaml:8: services[0].backends[2].ip: required",
				"services.yaml:9: services[0].backends[3].ip: 127.0.0.1 is loopback, not a backend address",
				"services.yaml:10: services[0].backends[4].ip: fe80::10 is link-local, not a backend address",
				"services.yaml:11: services[0].backends[5].ready: must be true or false",
				"services.yaml:11: services[0].backends[5].serving: must be true or false",
				"services.yaml:11: services[0].backends[5].terminating: must be true or false",
				`services.yaml:12: services[0].backends[6].ports.Redis: "Redis" is not a port name: ` + ianaSvcName,
				"services.yaml:12: services[0].backends[6].ports.dns: must be a port number (1..65535), optionally with /TCP, /UDP or /SCTP",
				"services.yaml:12: services[0].backends[6].ports.zero: 0 is not a port (1..65535)",
				"services.yaml:12: services[0].backends[6].ports.big: 70000 is not a port (1..65535)",
				"services.yaml:12: services[0].backends[6].ports.list: must be a port number (1..65535), optionally with /TCP, /UDP or /SCTP",
				"services.yaml:13: services[0].backends[7].ports: must be a mapping of port names to numbers (redis: 6379, dns: 53/UDP)",
				"services.yaml:14: services[0].backends[8]: must be a mapping",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svcs, err := Load(strings.NewReader(tt.yaml), "services.yaml")
			if err == nil {
				t.Fatalf("Load accepted it: %+v", svcs)
			}
			if svcs != nil {
				t.Errorf("Load returned services with an error: %+v", svcs)
			}
			if diff := cmp.Diff(tt.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("errors mismatch (-want +got):\n%s", diff)
			}
			var fe *policy.FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error is not a *policy.FieldError: %T", err)
			}
		})
	}
}

// encode writes svcs as a services file with every field spelled out: the
// inverse of Load.
func encode(tb testing.TB, svcs []Service) []byte {
	tb.Helper()
	strs := func(as []netip.Addr) []string {
		out := []string{}
		for _, a := range as {
			out = append(out, a.String())
		}
		return out
	}
	var list []map[string]any
	for _, s := range svcs {
		m := map[string]any{
			"name": s.Name, "namespace": s.Namespace,
			"clusterIPs": strs(s.ClusterIPs), "externalIPs": strs(s.ExternalIPs), "loadBalancerIPs": strs(s.LoadBalancerIPs),
			"externalTrafficPolicy": string(s.ExternalTrafficPolicy),
			"internalTrafficPolicy": string(s.InternalTrafficPolicy),
			"sessionAffinity":       string(s.SessionAffinity),
		}
		if s.SessionAffinity == SessionAffinityClientIP {
			m["sessionAffinityTimeout"] = int(s.SessionAffinityTimeout / time.Second)
		}
		if len(s.BGPCommunities) > 0 {
			var cs []string
			for _, c := range s.BGPCommunities {
				cs = append(cs, c.String())
			}
			m["bgpCommunities"] = cs
		}
		var ports []map[string]any
		for _, p := range s.Ports {
			pm := map[string]any{"name": p.Name, "port": p.Port, "protocol": p.Protocol.String(), "targetPort": p.TargetPort}
			if p.TargetPortName != "" {
				pm["targetPort"] = p.TargetPortName
			}
			if p.Name == "" {
				delete(pm, "name")
			}
			if p.NodePort != 0 {
				pm["nodePort"] = p.NodePort
			}
			ports = append(ports, pm)
		}
		m["ports"] = ports
		backends := []map[string]any{}
		for _, b := range s.Backends {
			bm := map[string]any{"ip": b.IP.String(), "ready": b.Ready, "serving": b.Serving, "terminating": b.Terminating}
			if b.Node != "" {
				bm["node"] = b.Node
			}
			if b.Ports != nil {
				named := map[string]string{}
				for name, np := range b.Ports {
					named[name] = strconv.Itoa(int(np.Port)) + "/" + np.Protocol.String()
				}
				bm["ports"] = named
			}
			backends = append(backends, bm)
		}
		m["backends"] = backends
		list = append(list, m)
	}
	out, err := yaml.Marshal(map[string]any{"services": list})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// TestRoundTrip checks that what Load returns, written out in full, loads
// to the same services: the file can say everything the model holds, and
// the defaults are what an explicit file says.
func TestRoundTrip(t *testing.T) {
	for _, path := range []string{"testdata/services.yaml", "testdata/full.yaml"} {
		t.Run(path, func(t *testing.T) {
			svcs, err := LoadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			text := encode(t, svcs)
			again, err := Load(bytes.NewReader(text), "encoded.yaml")
			if err != nil {
				t.Fatalf("Load of\n%s: %v", text, err)
			}
			if diff := cmp.Diff(svcs, again, cmpAddr); diff != "" {
				t.Errorf("round trip mismatch (-loaded +reloaded):\n%s\nencoded:\n%s", diff, text)
			}
		})
	}
}
