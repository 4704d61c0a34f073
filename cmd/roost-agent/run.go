package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/internal/agent"
	"github.com/roost-net/roost/internal/birdconf"
	"github.com/roost-net/roost/internal/config"
	"github.com/roost-net/roost/internal/filewatch"
	"github.com/roost-net/roost/internal/k8swatch"
	"github.com/roost-net/roost/internal/logflags"
	"github.com/roost-net/roost/internal/routes"
	"github.com/roost-net/roost/internal/serve"
	"github.com/roost-net/roost/internal/services/kubewatch"
	"github.com/roost-net/roost/internal/vips"
)

const usage = `Usage: roost-agent [--config FILE] [--dry-run] [--log-level LEVEL] [--log-format text|json]

roost-agent announces this node's PodCIDRs and its services' VIPs (and nothing
else) to its BGP peers through BIRD 2. It renders its config into a temp file beside
<bird.configDir>/bird.conf, has BIRD load it over the control socket, and
renames it to bird.conf once BIRD runs it. Prefix changes never reset a BGP
session; a config BIRD rejects never replaces the running one.

PodCIDRs come from the config file (podCIDRs, re-read on SIGHUP and whenever
the file changes) or, with kubernetes.enabled, from this node's Node object
(spec.podCIDRs). A reload that changes a setting read only at start (node,
listen, controlSocket, kubernetes, bird.socket, bird.configDir, bird.binary,
blackholeRoutes, resyncInterval, vips.servicesFile, vips.table,
vips.kubernetes, drain.stateFile) is refused whole: the running config stays.

VIPs (vips.servicesFile, vips.kubernetes) are blackhole routes in a kernel
table of their own (vips.table) that BIRD learns: a VIP coming or going
never reconfigures BIRD. Communities are added per prefix class
(communities.podCIDR, communities.vip), per peer (peers[].communities), and
per service (bgpCommunities in the services file, or the Service annotation
roost.io/bgp-communities).

"roostctl drain" announces everything with GRACEFUL_SHUTDOWN (65535:0) for
drain.wait, then withdraws it all, sessions kept up; "roostctl undrain" goes
back. The state is kept in drain.stateFile, so it survives a restart of the
agent or of BIRD.

Each change is loaded with "configure timeout" (bird.confirmTimeout) and
confirmed only once every BGP session that was Established is again; else
BIRD goes back to the previous config. Every call to BIRD is bounded by
bird.timeout: a BIRD that stops answering makes /readyz fail within seconds.

Health, readiness, metrics and status are served on "listen" (/healthz
/readyz /metrics /v1/status); the rendered config (passwords redacted) and
reload, drain and undrain only on the control socket (controlSocket, mode
0600), which "roostctl config", "roostctl reload", "roostctl drain" and
"roostctl undrain" use.

--dry-run validates the config, prints the BIRD config it would render and
exits 0, or prints every problem and exits 1 (a check command for Salt).

Flags:
`

// run is roost-agent without the process around it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("roost-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	path := fs.String("config", config.DefaultPath, "config file (YAML)")
	dryRun := fs.Bool("dry-run", false, "validate the config, print the rendered BIRD config and exit")
	logFlags := logflags.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (see --help)", fs.Args())
	}
	// The heap is small (a few MB at 10,000 prefixes); a soft limit keeps
	// the runtime from holding on to pages it no longer needs (measured:
	// RSS 26-28 MB → 24-25 MB at 10,000 prefixes). GOMEMLIMIT overrides.
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(12 << 20)
	}
	defaults := config.Default()
	if h, err := os.Hostname(); err == nil {
		defaults.Node = h
	}
	load := func() (config.Config, error) {
		f, err := os.Open(*path)
		if err != nil {
			return config.Config{}, fmt.Errorf("config: %w", err)
		}
		defer f.Close()
		c, err := config.Load(f, defaults)
		if err != nil {
			return config.Config{}, fmt.Errorf("config %s:\n%w", *path, err)
		}
		return c, nil
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if *dryRun {
		return dryRunRender(cfg, stdout)
	}

	log, err := logFlags.Logger(stderr)
	if err != nil {
		return err
	}

	bird, poller := agent.NewBirdClient(cfg.Bird.Socket), agent.NewBirdClient(cfg.Bird.Socket)
	defer bird.Close()
	defer poller.Close()
	var holes agent.Blackholes
	if cfg.BlackholeRoutes {
		h, err := routes.NewHandle(cfg.Bird.Timeout)
		if err != nil {
			return err
		}
		defer h.Close()
		holes = routes.NewBlackholes(h, 0)
	}
	var check func(context.Context, string) error
	if bin, err := exec.LookPath(cfg.Bird.Binary); err == nil {
		check = agent.ParseCheck(bin)
	} else {
		log.WithError(err).Warn("no bird binary: a broken bird.conf cannot be repaired while BIRD is down")
	}
	// The VIPs, in a kernel table of their own that BIRD's kernel
	// protocols learn from (rendered by BirdInput).
	var ann *vips.Announcer
	drain, err := agent.LoadDrain(cfg.Drain.StateFile)
	if err != nil {
		return err
	}
	opts := agent.Options{Config: cfg, Bird: bird, Poller: poller, Blackholes: holes, Check: check, Log: log, Drain: drain}
	if cfg.VIPs.Enabled() {
		h, err := routes.NewHandle(cfg.Bird.Timeout)
		if err != nil {
			return err
		}
		defer h.Close()
		ann = vips.New(cfg.VIPs.ServicesFile, cfg.Node, routes.NewBlackholes(h, int(cfg.VIPs.Table)), log)
		ann.Kubernetes = cfg.VIPs.Kubernetes
		opts.VIPs = func() ([]netip.Prefix, string) { st := ann.Status(); return st.VIPs, st.Error }
		// A VIP with communities of its own waits for BIRD to run its
		// tag: announce it once the apply that carries it is done.
		opts.VIPTagsApplied = ann.Changed
	}
	a := agent.New(opts)
	if ann != nil {
		ann.Tagger = a
	}

	var reloadMu sync.Mutex
	reload := func() error {
		reloadMu.Lock()
		defer reloadMu.Unlock()
		c, err := load()
		if err == nil {
			err = restartOnly(cfg, c)
		}
		if err != nil {
			a.SetConfigError(err)
			log.WithError(err).Error("config reload refused; keeping the running config")
			return err
		}
		a.SetConfigError(nil)
		a.SetConfig(c)
		return nil
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 8) // one per task, so none blocks
	var wg sync.WaitGroup
	start := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	start("reconcile", func() error { return a.Run(ctx) })
	start("http", func() error { return serve.Serve(ctx, cfg.Listen, a.Handler()) })
	start("control socket", func() error { return serve.ServeUnix(ctx, cfg.ControlSocket, 0o600, a.ControlHandler(reload)) })
	start("config watch", func() error {
		return filewatch.Watch(ctx, *path, func() { _ = reload() })
	})
	vipsChanged := func() {}
	if ann != nil {
		start("VIPs", func() error { ann.Run(ctx, cfg.Debounce, cfg.ResyncInterval); return nil })
		if cfg.VIPs.ServicesFile != "" {
			start("services file watch", func() error { return filewatch.Watch(ctx, cfg.VIPs.ServicesFile, ann.Changed) })
		}
		if cfg.VIPs.Kubernetes {
			kcfg, err := k8swatch.NewConfig(cfg.Kubernetes.Kubeconfig)
			if err != nil {
				return err
			}
			sc, err := kubewatch.NewClients(kcfg)
			if err != nil {
				return err
			}
			start("kubernetes services", func() error { return kubewatch.WatchKubernetes(ctx, sc, 0, ann.SetKubernetes) })
		}
		vipsChanged = ann.Changed
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
				log.Info("SIGHUP: reloading config")
				if reload() == nil {
					a.Reload()
				}
				vipsChanged()
			}
		}
	}()
	if cfg.Kubernetes.Enabled {
		cs, err := k8swatch.NewNodeClient(cfg.Kubernetes.Kubeconfig)
		if err != nil {
			return err
		}
		setNode := a.SetNode
		if ann != nil {
			// The Node's label k8swatch.ExcludeVIPsLabel takes it out of
			// the VIPs' next hops.
			setNode = func(s k8swatch.NodeState) { a.SetNode(s); ann.SetExcluded(s.ExcludeVIPs) }
		}
		start("kubernetes", func() error { return k8swatch.WatchNode(ctx, cs, cfg.Node, 0, setNode) })
	}
	log.WithFields(logrus.Fields{"node": cfg.Node, "listen": cfg.Listen, "controlSocket": cfg.ControlSocket}).Info("roost-agent started")

	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
	}
	cancel()
	wg.Wait()
	log.Info("roost-agent stopped")
	return first
}

// dryRunRender prints what the agent would render from cfg alone (with
// Kubernetes as the source, the Node's PodCIDRs are not known: none).
func dryRunRender(cfg config.Config, w io.Writer) error {
	out, err := birdconf.Render(cfg.BirdInput(cfg.PodCIDRs))
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// restartOnly refuses a reload that changes a setting read only at start:
// applying the rest would leave the agent half on the old config.
func restartOnly(old, c config.Config) error {
	var changed []string
	check := func(name string, differ bool) {
		if differ {
			changed = append(changed, name)
		}
	}
	check("node", old.Node != c.Node)
	check("listen", old.Listen != c.Listen)
	check("controlSocket", old.ControlSocket != c.ControlSocket)
	check("kubernetes.enabled", old.Kubernetes.Enabled != c.Kubernetes.Enabled)
	check("kubernetes.kubeconfig", old.Kubernetes.Kubeconfig != c.Kubernetes.Kubeconfig)
	check("bird.socket", old.Bird.Socket != c.Bird.Socket)
	check("bird.configDir", old.Bird.ConfigDir != c.Bird.ConfigDir)
	check("bird.binary", old.Bird.Binary != c.Bird.Binary)
	check("blackholeRoutes", old.BlackholeRoutes != c.BlackholeRoutes)
	check("resyncInterval", old.ResyncInterval != c.ResyncInterval)
	check("vips.servicesFile", old.VIPs.ServicesFile != c.VIPs.ServicesFile)
	check("vips.table", old.VIPs.Table != c.VIPs.Table)
	check("vips.kubernetes", old.VIPs.Kubernetes != c.VIPs.Kubernetes)
	check("drain.stateFile", old.Drain.StateFile != c.Drain.StateFile)
	if len(changed) == 0 {
		return nil
	}
	return fmt.Errorf("reload refused, the running config is kept: %s take(s) effect only when roost-agent restarts", strings.Join(changed, ", "))
}
