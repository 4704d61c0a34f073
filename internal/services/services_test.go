package services

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
)

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func TestResolve(t *testing.T) {
	b := Backend{IP: netip.MustParseAddr("10.244.1.10"), Ports: map[string]NamedPort{
		"redis": {Port: 6380, Protocol: TCP},
		"dns":   {Port: 5353, Protocol: UDP},
	}}
	tests := []struct {
		name    string
		port    Port
		want    uint16
		wantErr string
	}{
		{name: "number", port: Port{Port: 6379, TargetPort: 6379, Protocol: TCP}, want: 6379},
		{name: "name", port: Port{Port: 6379, TargetPortName: "redis", Protocol: TCP}, want: 6380},
		{name: "name of another protocol", port: Port{Port: 53, TargetPortName: "dns", Protocol: TCP},
			wantErr: `backend 10.244.1.10: no such named port "dns" with protocol TCP (it is UDP)`},
		{name: "unknown name", port: Port{Port: 80, TargetPortName: "http", Protocol: TCP},
			wantErr: `backend 10.244.1.10: no such named port "http"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.port, b)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || !errors.Is(err, ErrNoNamedPort) {
					t.Fatalf("Resolve = %d, %v; want error %q wrapping ErrNoNamedPort", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Resolve = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
	if _, err := Resolve(Port{TargetPortName: "redis", Protocol: TCP}, Backend{IP: b.IP}); !errors.Is(err, ErrNoNamedPort) {
		t.Errorf("Resolve for a backend without ports = %v", err)
	}
}

// TestKey checks that a backend's key is its canonical address, whatever
// the rest of it says.
func TestKey(t *testing.T) {
	for _, tt := range []struct {
		b    Backend
		want string
	}{
		{Backend{IP: netip.MustParseAddr("10.244.1.10")}, "10.244.1.10"},
		{Backend{IP: netip.MustParseAddr("10.244.1.10"), Node: "node2", Terminating: true, Ports: map[string]NamedPort{"a": {Port: 1}}}, "10.244.1.10"},
		{Backend{IP: netip.MustParseAddr("FD00:0244:0001:0000:0000:0000:0000:0010")}, "fd00:244:1::10"},
	} {
		if got := tt.b.Key(); got != tt.want {
			t.Errorf("Key(%v) = %q, want %q", tt.b.IP, got, tt.want)
		}
	}
}

func TestFrontendsAndBackendsFor(t *testing.T) {
	s := Service{
		ClusterIPs:      addrs("10.96.0.1", "fd00:96::1"),
		ExternalIPs:     addrs("192.0.2.1"),
		LoadBalancerIPs: addrs("2001:db8::1"),
		Backends: []Backend{
			{IP: netip.MustParseAddr("10.244.1.1")},
			{IP: netip.MustParseAddr("fd00:244::1")},
			{IP: netip.MustParseAddr("10.244.2.1")},
		},
	}
	var got []string
	for _, fe := range s.Frontends() {
		got = append(got, fe.Kind.String()+" "+fe.Addr.String())
	}
	want := []string{"clusterIP 10.96.0.1", "clusterIP fd00:96::1", "externalIP 192.0.2.1", "loadBalancerIP 2001:db8::1"}
	if !slices.Equal(got, want) {
		t.Errorf("Frontends = %q, want %q", got, want)
	}
	keys := func(bs []Backend) []string {
		var out []string
		for _, b := range bs {
			out = append(out, b.Key())
		}
		return out
	}
	if got := keys(s.BackendsFor(s.ClusterIPs[0])); !slices.Equal(got, []string{"10.244.1.1", "10.244.2.1"}) {
		t.Errorf("BackendsFor IPv4 = %q", got)
	}
	if got := keys(s.BackendsFor(s.LoadBalancerIPs[0])); !slices.Equal(got, []string{"fd00:244::1"}) {
		t.Errorf("BackendsFor IPv6 = %q", got)
	}
	if got := (Service{Backends: s.Backends[:1]}).BackendsFor(s.ClusterIPs[1]); got != nil {
		t.Errorf("BackendsFor a family without backends = %v", got)
	}
}

func TestStrings(t *testing.T) {
	for got, want := range map[string]string{
		TCP.String(): "TCP", UDP.String(): "UDP", SCTP.String(): "SCTP", Protocol(1).String(): "protocol 1",
		ClusterIP.String(): "clusterIP", LoadBalancerIP.String(): "loadBalancerIP", FrontendKind(9).String(): "frontend kind 9",
		Service{Namespace: "default", Name: "db"}.FullName(): "default/db",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}
