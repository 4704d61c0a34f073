// Package fieldcheck is what roost's configuration packages share: strict
// YAML decoding, problems collected at their field paths and reported all at
// once, and checks of values that several configs hold.
package fieldcheck

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Decode reads all of r and decodes it as YAML into v, refusing fields v
// does not have. An empty input leaves v as it is.
func Decode(r io.Reader, v any) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("parse config: %w", err)
	}
	return nil
}

// Problem is one thing wrong with a config, at a field path.
type Problem struct {
	Field string
	Msg   string
}

func (p Problem) Error() string { return p.Field + ": " + p.Msg }

// Problems collects problems, each at its field.
type Problems []Problem

// Add records a problem at field.
func (ps *Problems) Add(field, format string, args ...any) {
	*ps = append(*ps, Problem{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// Err returns every problem joined, or nil.
func (ps Problems) Err() error {
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errors.Join(errs...)
}

// Combine joins the problems of converting a file (conv) with those of
// validating the result (valid). A field that failed to convert was left at
// its default, and validation's complaint about that default would only
// repeat the problem, so it is dropped.
func Combine(conv, valid Problems) error {
	bad := map[string]bool{}
	for _, p := range conv {
		bad[p.Field] = true
	}
	out := conv
	for _, p := range valid {
		if !bad[p.Field] {
			out = append(out, p)
		}
	}
	return out.Err()
}

// Listen checks a listen address: host:port with a literal IP host (or an
// empty host) and a numeric port.
func Listen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%q: host must be an IP address", s)
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port must be 0..65535", s)
	}
	return nil
}
