package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/roost-net/roost/internal/endpoints"
	"github.com/roost-net/roost/internal/filewatch"
	"github.com/roost-net/roost/internal/k8swatch"
	"github.com/roost-net/roost/internal/loader"
	"github.com/roost-net/roost/internal/loaderconfig"
	"github.com/roost-net/roost/internal/logflags"
	"github.com/roost-net/roost/internal/maglev"
	"github.com/roost-net/roost/internal/policy"
	"github.com/roost-net/roost/internal/policyd"
	"github.com/roost-net/roost/internal/serve"
	"github.com/roost-net/roost/internal/services"
	"github.com/roost-net/roost/internal/services/kubewatch"
	"github.com/roost-net/roost/internal/servicesd"
	"github.com/roost-net/roost/internal/socklb"
)

const usage = `Usage: roost-loader [--config FILE] [--dry-run] [--log-level LEVEL] [--log-format text|json]

roost-loader enforces L3/L4 ingress policy, written as CiliumNetworkPolicy and
CiliumClusterwideNetworkPolicy (cilium.io/v2), on this node's endpoints with
eBPF, with Cilium's semantics. It reads endpoints, nodes and namespaces from
endpointsFile and policies from policyDir/*.yaml (a CiliumNetworkPolicy
without metadata.namespace is in namespace "default"), re-reading both on
change and on SIGHUP; with kubernetes.enabled it also watches Pods,
Namespaces, Nodes and both policy kinds through the API server. The node's
own addresses (identity host) come from its interfaces and hostIPs; other
nodes' (identity remote-node) from the sources. It compiles all of it to
identities and per-endpoint verdict tables, and keeps its programs attached
(TCX) to the host side of each local endpoint's interface. Maps and links are
pinned under bpffs, so a restart or an upgrade adopts them and enforcement
never stops. A policy, endpoint or config error keeps the last good policy
enforced and shows in /v1/status; a bad policy object of the API is refused
alone (its last good version stays).

With a globalView section (docs/globalview.md), it also follows the global
endpoint view on etcd: every other cluster's endpoints and the outside
workloads roost-sync registers, enforced with the labels their publisher
derived; every loader of a cluster campaigns to publish the cluster's own
endpoints there, and the elected one writes. It waits for its first view
(at most syncTimeout) before it applies a policy, keeps enforcing its last
view while etcd does not answer (then /readyz answers 503), and shows each
endpoint's origin in /v1/status and roostctl endpoints.

servicesFile lists Services to load-balance and their backends. With
socketLB.enabled, a socket-level load balancer (cgroup connect, sendmsg,
recvmsg and getpeername programs on socketLB.cgroup, by default the cgroup
v2 root) serves their cluster, external and load-balancer IPs to every
process of the node, pods included: a connection to a frontend goes to one
of its ready backends, chosen once per connect() or sendto(), with no
per-packet NAT. With xdpLB.enabled, an XDP program on each of
xdpLB.interfaces (the uplinks) serves their external and load-balancer IPs
(VIPs) and node ports to clients outside the fabric: a connection table,
then a Maglev table per frontend that every node builds alike; a local
backend gets the packets by DNAT, a remote one encapsulated (IPIP) through
the fabric, and replies leave the backend's node directly. The file is
re-read on change and on SIGHUP; a bad file keeps the last good set
served. GET /v1/services shows what is served.

--dry-run validates the config, the endpoints file, the services file and
every policy file, prints the ignored fields on stderr and the resolved
policy (every endpoint treated as local, the host being hostIPs and the
endpoints file's node of this name) and the services on stdout, and exits
0, or prints every problem and exits 1.

Flags:
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("roost-loader", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	path := fs.String("config", loaderconfig.DefaultPath, "config file (YAML)")
	dryRun := fs.Bool("dry-run", false, "validate config, endpoints, services and policies, print the resolved policy and services and exit")
	logFlags := logflags.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (see --help)", fs.Args())
	}
	defaults := loaderconfig.Default()
	if h, err := os.Hostname(); err == nil {
		defaults.Node = h
	}
	f, err := os.Open(*path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	cfg, err := loaderconfig.Load(f, defaults)
	f.Close()
	if err != nil {
		return fmt.Errorf("config %s:\n%w", *path, err)
	}
	if *dryRun {
		return dryRunResolve(cfg, stdout, stderr)
	}

	log, err := logFlags.Logger(stderr)
	if err != nil {
		return err
	}

	l, err := loader.Open(loader.Options{BPFFS: cfg.BPFFS, Log: log})
	if err != nil {
		return err
	}
	// Close releases this process's handles only: the programs stay
	// attached and enforcing until the next loader adopts them.
	defer l.Close()
	// The uplink load balancer decapsulates only what the cluster's nodes
	// encapsulated: policy knows them (svcs is set before anything runs).
	var svcs *servicesd.Daemon
	gv, err := newGlobalView(cfg, log)
	if err != nil {
		return err
	}
	if gv != nil {
		defer gv.client.Close()
	}
	d := policyd.New(policyd.Options{Config: cfg, Enforcer: l, Log: log, GlobalView: gv.hooks(), OnNodes: func(ips []netip.Addr) {
		if svcs != nil {
			svcs.SetNodes(ips)
		}
	}, NotReady: func() string {
		// Services served from a file that no longer loads, or not yet
		// synced: what is served may not be what should be.
		if svcs == nil {
			return ""
		}
		if e := svcs.SyncError(); e != "" {
			return "services: " + e
		}
		return ""
	}})
	handler := d.Handler(l, cfg.BPFFS)

	// The load balancers, pinned beside the policy programs; like them
	// they stay attached and serving when the loader exits.
	if cfg.SocketLB.Enabled || cfg.XDPLB.Enabled {
		o := servicesd.Options{File: cfg.ServicesFile, Kubernetes: cfg.Kubernetes.Enabled, Node: cfg.Node, Log: log}
		if cfg.SocketLB.Enabled {
			cgroup := cfg.SocketLB.Cgroup
			if cgroup == "" {
				if cgroup, err = socklb.CgroupRoot(); err != nil {
					return fmt.Errorf("socketLB: %w", err)
				}
			}
			lb, err := socklb.Open(filepath.Join(cfg.BPFFS, "sock"))
			if err != nil {
				return err
			}
			defer lb.Close()
			if err := lb.Attach(cgroup); err != nil {
				return fmt.Errorf("socketLB: %w", err)
			}
			o.Datapath = lb
			log.WithField("cgroup", cgroup).WithField("servicesFile", cfg.ServicesFile).Info("socket load balancer attached")
		}
		if cfg.XDPLB.Enabled {
			lb, err := openUplink(cfg.XDPLB, filepath.Join(cfg.BPFFS, "xdp"))
			if err != nil {
				return fmt.Errorf("xdpLB: %w", err)
			}
			defer lb.Close()
			o.Uplink, o.MaglevSize = lb, cfg.XDPLB.MaglevSize
			if o.MaglevSize == 0 {
				o.MaglevSize = maglev.DefaultSize
			}
			o.NodeAddrs = func() []netip.Addr { return nodePortAddrs(l, log) }
			log.WithField("interfaces", lb.Modes()).WithField("servicesFile", cfg.ServicesFile).Info("uplink load balancer attached")
		}
		svcs = servicesd.New(o)
		if err := d.RegisterMetrics(svcs.Collector()); err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("/v1/services", svcs.Handler())
		mux.Handle("/", handler)
		handler = mux
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	start := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				// Only the first error is read: the others must not
				// block their goroutine, or wg.Wait below would hang.
				select {
				case errc <- fmt.Errorf("%s: %w", name, err):
				default:
					log.WithError(err).WithField("task", name).Error("stopped")
				}
			}
		}()
	}
	start("reconcile", func() error { return d.Run(ctx, 100*time.Millisecond, 5*time.Second) })
	start("http", func() error { return serve.Serve(ctx, cfg.Listen, handler) })
	if svcs != nil {
		start("services", func() error { svcs.Run(ctx.Done(), 100*time.Millisecond, 5*time.Second); return nil })
		if cfg.ServicesFile != "" {
			start("services watch", func() error { return filewatch.Watch(ctx, cfg.ServicesFile, svcs.Changed) })
		}
	}
	start("policy watch", func() error {
		return filewatch.WatchDir(ctx, cfg.PolicyDir, endpoints.IsPolicyFile, d.Changed)
	})
	if cfg.EndpointsFile != "" {
		start("endpoints watch", func() error { return filewatch.Watch(ctx, cfg.EndpointsFile, d.Changed) })
	}
	start("drops", func() error { return l.ReadDrops(ctx, d.RecordDrop) })
	if gv != nil {
		gv.start(ctx, d, start)
	}
	start("address watch", func() error {
		return l.WatchAddresses(ctx, func() {
			d.Changed()
			if svcs != nil {
				svcs.Changed() // node ports are served on the node's addresses
			}
		})
	})
	if cfg.Kubernetes.Enabled {
		kcfg, err := k8swatch.NewConfig(cfg.Kubernetes.Kubeconfig)
		if err != nil {
			return err
		}
		cs, err := kubernetes.NewForConfig(kcfg)
		if err != nil {
			return fmt.Errorf("kubernetes client for %s: %w", kcfg.Host, err)
		}
		dyn, err := dynamic.NewForConfig(kcfg)
		if err != nil {
			return fmt.Errorf("kubernetes client for %s: %w", kcfg.Host, err)
		}
		start("pods", func() error { return endpoints.WatchPods(ctx, cs, 0, d.SetPods) })
		start("namespaces", func() error { return endpoints.WatchNamespaces(ctx, cs, 0, d.SetNamespaces) })
		start("nodes", func() error { return endpoints.WatchNodes(ctx, cs, 0, d.SetNodes) })
		start("policies", func() error { return endpoints.WatchPolicies(ctx, dyn, 0, d.SetPolicies) })
		if svcs != nil {
			sc, err := kubewatch.NewClients(kcfg)
			if err != nil {
				return err
			}
			start("kubernetes services", func() error { return kubewatch.WatchKubernetes(ctx, sc, 0, svcs.SetKubernetes) })
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: re-reading endpoints, policies and services")
				d.Changed()
				if svcs != nil {
					svcs.Changed()
				}
			}
		}
	}()
	log.WithField("node", cfg.Node).WithField("listen", cfg.Listen).WithField("bpffs", cfg.BPFFS).Info("roost-loader started")
	if svcs == nil && cfg.ServicesFile != "" {
		if _, err := os.Stat(cfg.ServicesFile); err == nil {
			log.WithField("servicesFile", cfg.ServicesFile).Warn("services file not served: socketLB.enabled and xdpLB.enabled are false")
		}
	}

	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
	}
	cancel()
	wg.Wait()
	log.Info("roost-loader stopped; programs stay attached")
	return first
}

// dryRunResolve prints what the config's files resolve to, every endpoint
// treated as local so that each shows its policy, then the services, and
// the ignored fields on stderr. The problems of the policy inputs and of
// the services file are reported together.
func dryRunResolve(cfg loaderconfig.Config, w, stderr io.Writer) error {
	var svcs []services.Service
	var svcErr error
	if cfg.ServicesFile != "" {
		svcs, svcErr = services.LoadFile(cfg.ServicesFile)
	}
	res, err := resolvePolicy(cfg, stderr)
	if err := errors.Join(err, svcErr); err != nil {
		return err
	}
	if _, err := fmt.Fprint(w, res.String()); err != nil {
		return err
	}
	_, err = fmt.Fprint(w, services.Describe(svcs))
	return err
}

// resolvePolicy compiles the policy of the config's files, every endpoint
// treated as local, and prints the ignored fields on stderr.
func resolvePolicy(cfg loaderconfig.Config, stderr io.Writer) (policy.Resolved, error) {
	files, err := policyd.ReadFiles(cfg)
	if err != nil {
		return policy.Resolved{}, err
	}
	for _, p := range files.Policies {
		for _, warn := range p.Warnings {
			fmt.Fprintln(stderr, "warning:", warn)
		}
	}
	ws, err := endpoints.Merge(files.Endpoints.Endpoints, nil)
	if err != nil {
		return policy.Resolved{}, err
	}
	eps := endpoints.Derive(ws, files.Endpoints.Namespaces, cfg.Cluster)
	for i := range eps {
		eps[i].Local = true
	}
	hostIPs := slices.Clone(cfg.HostIPs)
	var nodeIPs []netip.Addr
	for _, n := range files.Endpoints.Nodes {
		if n.Name == cfg.Node {
			hostIPs = append(hostIPs, n.IPs...)
		} else {
			nodeIPs = append(nodeIPs, n.IPs...)
		}
	}
	slices.SortFunc(hostIPs, netip.Addr.Compare)
	res, err := policy.Compile(files.Policies, eps, policy.WithHostIPs(slices.Compact(hostIPs)...),
		policy.WithRemoteNodeIPs(nodeIPs...), policy.WithCluster(cfg.Cluster))
	if err != nil {
		return policy.Resolved{}, fmt.Errorf("compile policy: %w", err)
	}
	return res, nil
}
