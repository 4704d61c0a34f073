// Package syncconfig is roost-sync's configuration: its schema, defaults,
// loading with unknown fields rejected, and validation that reports every
// problem at once with its field path.
//
// A Config returned by Load is validated and must be treated as immutable.
package syncconfig

import (
	"io"
	"path/filepath"
	"time"

	"github.com/roost-net/roost/internal/fieldcheck"
	"github.com/roost-net/roost/internal/globalview"
)

// DefaultPath is where roost-sync reads its configuration by default.
const DefaultPath = "/etc/roost/sync.yaml"

// DefaultWorkloadsFile is the workloads file unless configured.
const DefaultWorkloadsFile = "/etc/roost/workloads.yaml"

// Config is the validated configuration of roost-sync.
type Config struct {
	// Name is the syncer's name: it publishes as the origin sync:<Name>.
	// Instances with the same name elect one writer.
	Name string
	// Etcd is how to reach etcd and where the global view lives.
	Etcd globalview.Config
	// WorkloadsFile lists workloads to register, re-read on change; empty
	// for none. A missing file is an empty one.
	WorkloadsFile string
	// Listen is the host:port of the HTTP API, health and metrics.
	Listen string
	// LeaseTTL is the lease of the published endpoints: after the last
	// instance of this syncer stops or dies, its workloads stay in the
	// global view this long, and no longer.
	LeaseTTL time.Duration
	// HeartbeatTimeout is how long an API-registered workload stays after
	// its last registration or heartbeat.
	HeartbeatTimeout time.Duration
	// Cluster, when set, is the cluster the workloads are registered into:
	// they carry io.cilium.k8s.policy.cluster=<Cluster>.
	Cluster string
}

// Default returns the defaults: no name and no etcd endpoints (both
// required), DefaultWorkloadsFile, listening on 127.0.0.1:9482, a 30 s
// lease and a 30 s heartbeat timeout, no cluster.
func Default() Config {
	return Config{
		Etcd:             globalview.Default(),
		WorkloadsFile:    DefaultWorkloadsFile,
		Listen:           "127.0.0.1:9482",
		LeaseTTL:         30 * time.Second,
		HeartbeatTimeout: 30 * time.Second,
	}
}

// file is the YAML form of Config: plain strings, so that one bad value does
// not stop the others from being checked.
type file struct {
	Name             *string          `yaml:"name"`
	Etcd             *globalview.File `yaml:"etcd"`
	WorkloadsFile    *string          `yaml:"workloadsFile"`
	Listen           *string          `yaml:"listen"`
	LeaseTTL         *string          `yaml:"leaseTTL"`
	HeartbeatTimeout *string          `yaml:"heartbeatTimeout"`
	Cluster          *string          `yaml:"cluster"`
}

// Load reads a YAML configuration from r on top of Default and validates
// it. Unknown fields are an error. The returned error lists every problem
// found, each with its field path.
func Load(r io.Reader) (Config, error) {
	var f file
	if err := fieldcheck.Decode(r, &f); err != nil {
		return Config{}, err
	}
	c, conv := f.apply(Default())
	if err := fieldcheck.Combine(conv, c.problems()); err != nil {
		return Config{}, err
	}
	return c, nil
}

// apply converts the YAML form onto c, collecting conversion problems.
func (f file) apply(c Config) (Config, fieldcheck.Problems) {
	var ps fieldcheck.Problems
	if f.Name != nil {
		c.Name = *f.Name
	}
	if f.Etcd != nil {
		var eps fieldcheck.Problems
		c.Etcd, eps = f.Etcd.Apply(c.Etcd, "etcd")
		ps = append(ps, eps...)
	}
	if f.WorkloadsFile != nil {
		c.WorkloadsFile = *f.WorkloadsFile
		if c.WorkloadsFile != "" {
			c.WorkloadsFile = filepath.Clean(c.WorkloadsFile)
		}
	}
	if f.Listen != nil {
		c.Listen = *f.Listen
	}
	if f.Cluster != nil {
		c.Cluster = *f.Cluster
	}
	for _, d := range []struct {
		field string
		s     *string
		to    *time.Duration
	}{{"leaseTTL", f.LeaseTTL, &c.LeaseTTL}, {"heartbeatTimeout", f.HeartbeatTimeout, &c.HeartbeatTimeout}} {
		if d.s == nil {
			continue
		}
		v, err := time.ParseDuration(*d.s)
		if err != nil {
			ps.Add(d.field, "%q is not a duration (e.g. 30s)", *d.s)
			continue
		}
		*d.to = v
	}
	return c, ps
}

// Validate reports every problem of c at once, each naming its field.
func (c Config) Validate() error { return c.problems().Err() }

func (c Config) problems() fieldcheck.Problems {
	var ps fieldcheck.Problems
	if c.Name == "" {
		ps.Add("name", "must be set: the syncer publishes as origin sync:<name>")
	} else if globalview.SyncOrigin(c.Name).Validate() != nil {
		ps.Add("name", "%q must be 1-32 lower-case letters, digits and '-', starting with a letter and not ending with '-' (the syncer publishes as origin sync:<name>)", c.Name)
	}
	ps = append(ps, c.Etcd.Problems("etcd")...)
	if c.WorkloadsFile != "" && !filepath.IsAbs(c.WorkloadsFile) {
		ps.Add("workloadsFile", "%q must be an absolute path, or empty for none", c.WorkloadsFile)
	}
	if err := fieldcheck.Listen(c.Listen); err != nil {
		ps.Add("listen", "%v", err)
	}
	// The publisher's candidacy lease is a third of this, at least 2 s,
	// and must be shorter.
	if c.LeaseTTL < 3*time.Second || c.LeaseTTL%time.Second != 0 {
		ps.Add("leaseTTL", "%v must be whole seconds, at least 3s (a standby instance takes over within a third of it)", c.LeaseTTL)
	}
	if c.HeartbeatTimeout < time.Second {
		ps.Add("heartbeatTimeout", "%v must be at least 1s", c.HeartbeatTimeout)
	}
	if c.Cluster != "" && globalview.ClusterOrigin(c.Cluster).Validate() != nil {
		ps.Add("cluster", "%q must be 1-32 lower-case letters, digits and '-', starting with a letter and not ending with '-' (a Cilium cluster name), or empty for none", c.Cluster)
	}
	return ps
}
