package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/roost-net/roost/internal/globalview"
	"github.com/roost-net/roost/internal/logflags"
	"github.com/roost-net/roost/internal/syncconfig"
	"github.com/roost-net/roost/internal/syncd"
)

const usage = `Usage: roost-sync [--config FILE] [--dry-run] [--log-level LEVEL] [--log-format text|json]

roost-sync registers workloads outside Kubernetes (VMs, bare-metal hosts) in
roost's global endpoint view on etcd (docs/globalview.md), as the origin
sync:<name>, so that every roost-loader of every cluster enforces policy on
them: CiliumNetworkPolicies select them by their namespace and labels, as
they select pods.

Workloads come from two sources:

  workloadsFile (default /etc/roost/workloads.yaml): a list of
  {name, namespace, ips, labels}, re-read on change and on SIGHUP. A
  missing file is an empty one; a file that does not load (YAML, an unknown
  field, a bad address, a name or address twice) is reported in the log and
  in /v1/status, and the last good set stays published.

  the HTTP API on listen (default 127.0.0.1:9482):
    PUT    /v1/workloads/NAMESPACE/NAME  {"ips": [...], "labels": {...}}
    POST   /v1/workloads/NAMESPACE/NAME/heartbeat
    DELETE /v1/workloads/NAMESPACE/NAME
    GET    /v1/workloads, /v1/status, /healthz, /readyz, /metrics
  An API workload expires heartbeatTimeout after its last PUT or heartbeat.
  API workloads live in this process's memory only: after a restart a
  heartbeat answers 404, and the client registers again.

The workloads are published under an etcd lease (leaseTTL): when roost-sync
stops or dies they stay for that long, then expire, unless another instance
of the same name (which campaigns meanwhile; one instance writes) takes
over. SIGTERM and SIGINT stop it without deregistering anything.

--dry-run loads the config and the workloads file, prints the workloads
with the labels they are published with, and exits 0, or prints every
problem and exits 1.

Flags:
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("roost-sync", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	path := fs.String("config", syncconfig.DefaultPath, "config file (YAML)")
	dryRun := fs.Bool("dry-run", false, "load the config and the workloads file, print the workloads and exit")
	logFlags := logflags.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (see --help)", fs.Args())
	}
	log, err := logFlags.Logger(stderr)
	if err != nil {
		return err
	}

	f, err := os.Open(*path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	cfg, err := syncconfig.Load(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("config %s:\n%w", *path, err)
	}
	if *dryRun {
		return printWorkloads(cfg, stdout)
	}

	id, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("host name, which names this instance in etcd: %w", err)
	}
	d, err := syncd.New(syncd.Options{Config: cfg, ID: id, Log: log})
	if err != nil {
		return err
	}
	defer d.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.WithField("file", cfg.WorkloadsFile).Info("SIGHUP: re-reading the workloads file")
				d.Reload()
			}
		}
	}()
	return d.Run(ctx, ln)
}

// printWorkloads prints what the config publishes from the workloads file:
// each workload with its addresses and the labels policy selects it by.
func printWorkloads(cfg syncconfig.Config, w io.Writer) error {
	var ws []syncd.Workload
	if cfg.WorkloadsFile != "" {
		var err error
		if ws, err = syncd.LoadFile(cfg.WorkloadsFile); err != nil {
			return err
		}
	}
	origin := globalview.SyncOrigin(cfg.Name)
	var b strings.Builder
	cluster := cfg.Cluster
	if cluster == "" {
		cluster = "none"
	}
	fmt.Fprintf(&b, "origin %s, cluster %s, etcd %s\n", origin, cluster, strings.Join(cfg.Etcd.Endpoints, ","))
	switch _, err := os.Stat(cfg.WorkloadsFile); {
	case cfg.WorkloadsFile == "":
		b.WriteString("workloads file: none\n")
	case errors.Is(err, os.ErrNotExist):
		fmt.Fprintf(&b, "workloads file %s: missing, no workloads (read when it appears)\n", cfg.WorkloadsFile)
	default:
		fmt.Fprintf(&b, "workloads file %s: %d workloads\n", cfg.WorkloadsFile, len(ws))
	}
	for _, wl := range ws {
		e := wl.Endpoint(origin, cfg.Cluster)
		addrs := make([]string, len(e.IPs))
		for i, a := range e.IPs {
			addrs[i] = a.String()
		}
		fmt.Fprintf(&b, "  %s  %s\n", wl.ID(), strings.Join(addrs, ", "))
		for _, k := range slices.Sorted(maps.Keys(e.Labels)) {
			fmt.Fprintf(&b, "    %s=%s\n", k, e.Labels[k])
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
