// Package loaderapi is the HTTP API of roost-loader as both ends see it: the
// JSON documents it serves, its paths, and a small client for roostctl.
package loaderapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/roost-net/roost/internal/policy"
)

// Paths served by roost-loader on its listen address.
const (
	PathHealthz  = "/healthz"
	PathReadyz   = "/readyz"
	PathMetrics  = "/metrics"
	PathStatus   = "/v1/status"
	PathPolicy   = "/v1/policy"   // the resolved policy and its entries' counters
	PathDrops    = "/v1/drops"    // ?follow=1 streams JSON lines
	PathBPF      = "/v1/bpf"      // attachments and pins
	PathCounters = "/v1/counters" // per-reason packet counts
	// PathGlobalView is the global view's state (GlobalView). With
	// ?appliedAtLeast=REV&wait=DURATION it answers once the policy
	// applied is built on the view of etcd revision REV or later, or
	// when the wait (at most a minute) is over, whichever comes first.
	PathGlobalView = "/v1/globalview"
)

// Results of the last reconcile.
const (
	ResultOK      = "ok"
	ResultFailed  = "failed"  // the last good policy stays enforced
	ResultWaiting = "waiting" // e.g. the Pod informer has not synced
	ResultPending = "pending"
)

// Status is the document at PathStatus.
type Status struct {
	Node      string            `json:"node"`
	Cluster   string            `json:"cluster"`
	Ready     bool              `json:"ready"`
	Policies  int               `json:"policies"`
	LastApply Apply             `json:"lastApply"`
	Endpoints []Endpoint        `json:"endpoints"`
	Skipped   []SkippedEndpoint `json:"skipped,omitempty"`
	// HostIPs are the addresses policy sees as this node (identity host);
	// Nodes the other nodes and their addresses (identity remote-node).
	HostIPs []netip.Addr `json:"hostIPs"`
	Nodes   []Node       `json:"nodes,omitempty"`
	// Warnings are the policy fields roost ignored ("file:line: path:
	// why").
	Warnings []string `json:"warnings,omitempty"`
	// PolicyErrors are the policy objects of the Kubernetes API roost could
	// not take; an earlier version of the same object, if one was good,
	// stays enforced.
	PolicyErrors []PolicyError `json:"policyErrors,omitempty"`
	// Notes say what the Kubernetes sources lack, such as a CRD that is not
	// installed.
	Notes []string `json:"notes,omitempty"`
	// GlobalView is the state of the global endpoint view on etcd; nil
	// when it is not configured.
	GlobalView *GlobalView `json:"globalView,omitempty"`
}

// GlobalView is what the loader knows of the global endpoint view.
type GlobalView struct {
	// Connected is whether etcd answered lately; Listed whether the
	// loader has had a first complete view (before it, it applies no
	// policy).
	Connected bool `json:"connected"`
	Listed    bool `json:"listed"`
	// Revision is etcd's revision of the view enforced; ViewAge how long
	// ago etcd last confirmed it current.
	Revision int64         `json:"revision"`
	ViewAge  time.Duration `json:"viewAgeNs"`
	// Applied is the revision of the view the enforced policy was built
	// on (Revision once the loader has applied it).
	Applied int64 `json:"applied"`
	// Origins counts the view's endpoints enforced, by origin
	// ("cluster:c2", "sync:vms").
	Origins map[string]int `json:"origins"`
	// Nodes counts the other clusters' nodes whose addresses are
	// remote-node, by origin.
	Nodes map[string]int `json:"nodes,omitempty"`
	// Own counts the view's endpoints of this loader's cluster, which it
	// takes from its local sources instead.
	Own int `json:"own"`
	// Conflicts are the view's endpoints and nodes skipped because an
	// address of theirs is a local endpoint's or node's, or another
	// origin's.
	Conflicts []string `json:"conflicts,omitempty"`
	// Problems are the keys whose values were skipped, with why.
	Problems      []string  `json:"problems,omitempty"`
	LastError     string    `json:"lastError,omitempty"`
	LastErrorTime time.Time `json:"lastErrorTime,omitzero"`
	// Publisher is this loader's publisher of its cluster's endpoints;
	// nil when it does not publish.
	Publisher *Publisher `json:"publisher,omitempty"`
}

// Publisher is the state of the loader's publisher of its cluster's
// endpoints. One loader of a cluster, elected, is the leader and writes.
type Publisher struct {
	Origin string `json:"origin"`
	Leader bool   `json:"leader"`
	// Endpoints and Nodes are how many of each it was last given; Generation
	// counts the sets given, and Published is the generation etcd holds
	// once this loader wrote it as the leader.
	Endpoints     int       `json:"endpoints"`
	Nodes         int       `json:"nodes"`
	Generation    uint64    `json:"generation"`
	Published     uint64    `json:"published"`
	Terms         int       `json:"terms"`
	LastError     string    `json:"lastError,omitempty"`
	LastErrorTime time.Time `json:"lastErrorTime,omitzero"`
}

// Node is another node of the cluster, as the loader knows it.
type Node struct {
	Name string `json:"name"`
	// Origin is the global view's origin of another cluster's node
	// ("cluster:c2"); empty for a node of this loader's cluster.
	Origin string       `json:"origin,omitempty"`
	IPs    []netip.Addr `json:"ips"`
}

// PolicyError is a policy object of the Kubernetes API that roost refused.
type PolicyError struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Error     string `json:"error"`
}

// Apply describes the last reconcile.
type Apply struct {
	Result   string        `json:"result"`
	Time     time.Time     `json:"time"`
	Duration time.Duration `json:"durationNs"`
	Error    string        `json:"error,omitempty"`
	Failures int           `json:"failures"`
}

// Endpoint is one known endpoint.
type Endpoint struct {
	Name string `json:"name"`
	// Origin is where the loader learnt of it: "file" (the endpoints
	// file), "kubernetes" (a pod), or the global view's origin
	// ("cluster:c2", "sync:vms").
	Origin   string            `json:"origin"`
	IPs      []netip.Addr      `json:"ips"`
	Labels   map[string]string `json:"labels"`
	Identity uint32            `json:"identity"`
	Local    bool              `json:"local"`
	Enforced bool              `json:"ingressEnforced"`
}

// SkippedEndpoint is a local-looking endpoint the loader does not enforce on.
type SkippedEndpoint struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Drop is one dropped packet.
type Drop struct {
	Time        time.Time  `json:"time"`
	Src         netip.Addr `json:"src"`
	Dst         netip.Addr `json:"dst"`
	SrcPort     uint16     `json:"srcPort"`
	DstPort     uint16     `json:"dstPort"`
	Proto       uint8      `json:"proto"`
	SrcIdentity uint32     `json:"srcIdentity"`
	Endpoint    string     `json:"endpoint"`
	Ifindex     uint32     `json:"ifindex"`
	Len         uint32     `json:"len"`
	Reason      string     `json:"reason"`
}

// Attachment is one program attached to an endpoint's interface.
type Attachment struct {
	Ifindex   int    `json:"ifindex"`
	Interface string `json:"interface"`
	Program   string `json:"program"`
	Mode      string `json:"mode"`
	Hook      string `json:"hook"`
	ProgramID uint32 `json:"programID"`
	Tag       string `json:"tag"`
	Current   bool   `json:"current"`
	LinkID    uint32 `json:"linkID"`
	Pin       string `json:"pin"`
}

// BPF is the document at PathBPF.
type BPF struct {
	Pins        string       `json:"pins"`
	Attachments []Attachment `json:"attachments"`
}

// Policy is the document at PathPolicy: the resolved policy last applied,
// whose fields it has as policy.Resolved encodes them, and the counters of
// the datapath's policy entries.
type Policy struct {
	policy.Resolved
	// EntryCounters has one element per policy entry of a local endpoint,
	// sorted by endpoint and remote identity.
	EntryCounters []EntryCounter `json:"entryCounters"`
}

// EntryCounter is what the datapath decided with one policy entry of a local
// endpoint: of the new traffic from Remote, the packets the entry's rules
// allowed, denied with a deny rule, or did not match (default deny). The
// datapath folds the rules for any identity into the entry of every
// identity that has one, so the entry counts those too. Replies to the
// endpoint's own connections count in no entry.
type EntryCounter struct {
	Endpoint   string `json:"endpoint"`   // empty when the loader has not applied it since it started
	EndpointID uint32 `json:"endpointID"` // the ifindex of its host-side interface
	// Remote is the source identity; 0 is the entry of every source without
	// an entry of its own.
	Remote uint32 `json:"remote"`
	// Counted is false when the entry has no counter (all were in use when
	// it was written; roost-loader logs it): its counts are then 0.
	Counted       bool  `json:"counted"`
	Allowed       Count `json:"allowed"`
	Denied        Count `json:"denied"`
	DefaultDenied Count `json:"defaultDenied"`
}

// Count is a number of packets and their bytes.
type Count struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Counter is packets and bytes for one reason.
type Counter struct {
	Reason  string `json:"reason"`
	Dropped bool   `json:"dropped"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Client talks to a roost-loader.
type Client struct {
	Base string
	HTTP *http.Client
}

// NewClient returns a client for the loader at addr (host:port or URL).
func NewClient(addr string) *Client {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &Client{Base: strings.TrimRight(addr, "/"), HTTP: &http.Client{}}
}

// Status fetches PathStatus.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.get(ctx, PathStatus, &s)
}

// Policy fetches PathPolicy: the resolved policy last applied, and the
// counters of its entries.
func (c *Client) Policy(ctx context.Context) (Policy, error) {
	var p Policy
	return p, c.get(ctx, PathPolicy, &p)
}

// BPF fetches PathBPF.
func (c *Client) BPF(ctx context.Context) (BPF, error) {
	var b BPF
	return b, c.get(ctx, PathBPF, &b)
}

// Counters fetches PathCounters.
func (c *Client) Counters(ctx context.Context) ([]Counter, error) {
	var cs []Counter
	return cs, c.get(ctx, PathCounters, &cs)
}

// Drops fetches the recent drops; with follow it keeps calling fn for new
// ones until ctx ends.
func (c *Client) Drops(ctx context.Context, follow bool, fn func(Drop) error) error {
	path := PathDrops
	if follow {
		path += "?follow=1"
	}
	resp, err := c.do(ctx, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var d Drop
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			return fmt.Errorf("loader %s: decode: %w", path, err)
		}
		if err := fn(d); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("loader %s: %w", path, err)
	}
	return nil
}

// Services is GET /v1/services: what the socket load balancer and the
// uplink load balancer serve (served with socketLB.enabled or
// xdpLB.enabled).
type Services struct {
	File string `json:"file"`
	// Services counts the services of the last good services file.
	Services int `json:"services"`
	// Frontends are what the socket load balancer serves.
	Frontends []ServiceFrontend `json:"frontends"`
	// Notes are what the last good file's services left out (a backend
	// without the named port a service port targets).
	Notes []string `json:"notes,omitempty"`
	// LastSync is the last attempt; Error its error ("" after a success):
	// the last good set stays served meanwhile.
	LastSync time.Time `json:"lastSync"`
	Error    string    `json:"error,omitempty"`
	// Counters are the socket programs' counters by reason: pass (not a
	// frontend), translated, translated-affinity, no-backend (refused),
	// reverse-translated (recvmsg, getpeername).
	Counters map[string]uint64 `json:"counters,omitempty"`
	// Uplink is what the uplink (XDP) load balancer serves; nil when it
	// is not enabled.
	Uplink *Uplink `json:"uplink,omitempty"`
}

// Uplink is the state of the uplink load balancer (xdpLB).
type Uplink struct {
	// Interfaces are the uplinks and how lb_xdp is attached to each
	// ("native" or "generic").
	Interfaces map[string]string `json:"interfaces"`
	// Algorithm is how a new flow gets its backend: "maglev".
	Algorithm  string `json:"algorithm"`
	MaglevSize uint64 `json:"maglevSize"`
	// Flows counts the flows the connection table remembers.
	Flows     int              `json:"flows"`
	Frontends []UplinkFrontend `json:"frontends"`
	// Counters are the programs' counters by reason (local, encapsulated,
	// decapsulated, no-backend, not-served, reply-translated, ...).
	Counters map[string]uint64 `json:"counters,omitempty"`
}

// UplinkFrontend is one frontend served at the uplink.
type UplinkFrontend struct {
	Frontend string `json:"frontend"` // tcp/192.0.2.10:6379
	// Kind is "vip" (an external or load-balancer IP) or "nodeport".
	Kind     string          `json:"kind"`
	Affinity bool            `json:"affinity,omitempty"`
	Backends []UplinkBackend `json:"backends"`
	// Packets and Bytes count what reached the frontend on this node
	// (decapsulated ones included); Connections the flows this node gave
	// a backend from the Maglev table.
	Packets     uint64 `json:"packets"`
	Bytes       uint64 `json:"bytes"`
	Connections uint64 `json:"connections"`
}

// UplinkBackend is a backend of an uplink frontend.
type UplinkBackend struct {
	Addr string `json:"addr"`
	// Local: on this node (DNAT); otherwise reached encapsulated.
	Local bool `json:"local"`
	// State is "active" (takes new flows) or "draining" (keeps the flows
	// it has).
	State string `json:"state"`
}

// ServiceFrontend is one served frontend and its active backends.
type ServiceFrontend struct {
	Frontend string   `json:"frontend"` // tcp/10.96.0.10:6379
	Backends []string `json:"backends"`
	Affinity string   `json:"affinity,omitempty"`
	// Connections counts the connections (and UDP sends on unconnected
	// sockets) sent to a backend since the frontend was added.
	Connections uint64 `json:"connections"`
}

// ErrNoServices is what Services wraps when the loader serves no
// /v1/services: neither load balancer is enabled.
var ErrNoServices = errors.New("roost-loader load-balances no services (socketLB.enabled and xdpLB.enabled in loader.yaml are both false)")

// Services returns GET /v1/services.
func (c *Client) Services(ctx context.Context) (Services, error) {
	var s Services
	err := c.get(ctx, "/v1/services", &s)
	if se := (*StatusError)(nil); errors.As(err, &se) && se.Code == http.StatusNotFound {
		return s, fmt.Errorf("%w: %w", ErrNoServices, err)
	}
	return s, err
}

func (c *Client) do(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("loader %s: %w", path, err)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("loader %s: %w (is roost-loader running? see --loader)", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, &StatusError{Path: path, Code: resp.StatusCode, Status: resp.Status, Body: strings.TrimSpace(string(body))}
	}
	return resp, nil
}

// StatusError is an answer of the loader other than 200 OK.
type StatusError struct {
	Path   string
	Code   int    // http.StatusNotFound, ...
	Status string // "404 Not Found"
	Body   string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("loader %s: %s: %s", e.Path, e.Status, e.Body)
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	resp, err := c.do(ctx, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("loader %s: decode: %w", path, err)
	}
	return nil
}
