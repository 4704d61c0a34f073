package globalview

import (
	"time"

	"github.com/roost-net/roost/internal/fieldcheck"
)

// File is the YAML form of Config, as the configuration files that embed
// it write it (loader.yaml's globalView.etcd, roost-sync's etcd). Unset
// fields keep their defaults; durations are Go durations ("5s").
type File struct {
	Endpoints      []string `yaml:"endpoints"`
	CAFile         string   `yaml:"caFile"`
	CertFile       string   `yaml:"certFile"`
	KeyFile        string   `yaml:"keyFile"`
	DialTimeout    string   `yaml:"dialTimeout"`
	RequestTimeout string   `yaml:"requestTimeout"`
	Prefix         string   `yaml:"prefix"`
}

// Apply returns c with f's fields set over it, and the problems of
// converting them, each at its field below path. It does not validate the
// result: call Config.Problems(path) for that.
func (f File) Apply(c Config, path string) (Config, fieldcheck.Problems) {
	var ps fieldcheck.Problems
	field := func(name string) string {
		if path == "" {
			return name
		}
		return path + "." + name
	}
	if f.Endpoints != nil {
		c.Endpoints = f.Endpoints
	}
	if f.CAFile != "" {
		c.CAFile = f.CAFile
	}
	if f.CertFile != "" {
		c.CertFile = f.CertFile
	}
	if f.KeyFile != "" {
		c.KeyFile = f.KeyFile
	}
	if f.Prefix != "" {
		c.Prefix = f.Prefix
	}
	for _, d := range []struct {
		name, s string
		to      *time.Duration
	}{{"dialTimeout", f.DialTimeout, &c.DialTimeout}, {"requestTimeout", f.RequestTimeout, &c.RequestTimeout}} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			ps.Add(field(d.name), "%q is not a duration (e.g. 5s)", d.s)
			continue
		}
		*d.to = v
	}
	return c, ps
}
