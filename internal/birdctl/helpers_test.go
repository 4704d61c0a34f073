package birdctl

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"
)

// equateNetip makes cmp compare netip values with ==.
var equateNetip = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

// dialT dials the BIRD socket at path and closes the client when the test
// ends.
func dialT(t *testing.T, path string, opts ...Option) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
