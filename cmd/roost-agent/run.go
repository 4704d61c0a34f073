package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/internal/agent"
	"github.com/roost-net/roost/internal/birdconf"
	"github.com/roost-net/roost/internal/config"
	"github.com/roost-net/roost/internal/filewatch"
	"github.com/roost-net/roost/internal/k8swatch"
	"github.com/roost-net/roost/internal/routes"
	"github.com/roost-net/roost/internal/serve"
)

const usage = `Usage: roost-agent [--config FILE] [--dry-run] [--log-level LEVEL] [--log-format text|json]

roost-agent announces this node's PodCIDRs (and nothing else) to its BGP peers
through BIRD 2. It renders <bird.configDir>/bird.conf from its config, has BIRD
check it ("configure check"), puts it in place and reconfigures BIRD over the
control socket. Prefix changes never reset a BGP session; a config BIRD
rejects never replaces the running one.

PodCIDRs come from the config file (podCIDRs, re-read on SIGHUP and whenever
the file changes) or, with kubernetes.enabled, from this node's Node object
(spec.podCIDRs). Health, readiness, metrics and status are served on "listen":
/healthz /readyz /metrics /v1/status /v1/config, POST /v1/reload.

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
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	format := fs.String("log-format", "text", "log format: text or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (see --help)", fs.Args())
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

	log := logrus.New()
	log.SetOutput(stderr)
	lvl, err := logrus.ParseLevel(*level)
	if err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log.SetLevel(lvl)
	switch *format {
	case "text":
	case "json":
		log.SetFormatter(&logrus.JSONFormatter{})
	default:
		return fmt.Errorf("--log-format %q: want text or json", *format)
	}

	bird := agent.NewBirdClient(cfg.Bird.Socket)
	defer bird.Close()
	var holes agent.Blackholes
	if cfg.BlackholeRoutes {
		holes = routes.NewBlackholes(nil, 0)
	}
	a := agent.New(agent.Options{Config: cfg, Bird: bird, Blackholes: holes, Log: log})

	var reloadMu sync.Mutex
	reload := func() error {
		reloadMu.Lock()
		defer reloadMu.Unlock()
		c, err := load()
		if err != nil {
			a.SetConfigError(err)
			log.WithError(err).Error("config reload failed; keeping the running config")
			return err
		}
		if c.Kubernetes.Enabled != cfg.Kubernetes.Enabled || c.Kubernetes.Kubeconfig != cfg.Kubernetes.Kubeconfig || c.Listen != cfg.Listen || c.Node != cfg.Node {
			err := errors.New("kubernetes, listen and node take effect only on restart")
			a.SetConfigError(err)
			log.WithError(err).Warn("config reload")
		} else {
			a.SetConfigError(nil)
		}
		a.SetConfig(c)
		return nil
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
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
	start("http", func() error { return serve.Serve(ctx, cfg.Listen, a.Handler(reload)) })
	start("config watch", func() error {
		return filewatch.Watch(ctx, *path, func() { _ = reload() })
	})
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
			}
		}
	}()
	if cfg.Kubernetes.Enabled {
		cs, err := k8swatch.NewClientset(cfg.Kubernetes.Kubeconfig)
		if err != nil {
			return err
		}
		start("kubernetes", func() error { return k8swatch.WatchNode(ctx, cs, cfg.Node, 0, a.SetNode) })
	}
	log.WithField("node", cfg.Node).WithField("listen", cfg.Listen).Info("roost-agent started")

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
	out, err := birdconf.Render(agent.RenderInput(cfg, cfg.PodCIDRs))
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	_, err = w.Write(out)
	return err
}
