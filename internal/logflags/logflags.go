// Package logflags is the daemons' logging command line: --log-level and
// --log-format, and the logger they give.
package logflags

import (
	"flag"
	"fmt"
	"io"

	"github.com/sirupsen/logrus"
)

// Flags are the values of --log-level and --log-format.
type Flags struct {
	level, format *string
}

// Register adds --log-level (default info) and --log-format (default
// text) to fs.
func Register(fs *flag.FlagSet) *Flags {
	return &Flags{
		level:  fs.String("log-level", "info", "log level: debug, info, warn, error"),
		format: fs.String("log-format", "text", "log format: text or json"),
	}
}

// Logger returns a logger writing to w at the level and in the format
// given, or an error naming the flag that is wrong.
func (f *Flags) Logger(w io.Writer) (*logrus.Logger, error) {
	log := logrus.New()
	log.SetOutput(w)
	lvl, err := logrus.ParseLevel(*f.level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	log.SetLevel(lvl)
	switch *f.format {
	case "text":
	case "json":
		log.SetFormatter(&logrus.JSONFormatter{})
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", *f.format)
	}
	return log, nil
}
