package birdctl

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// okReply answers every request with an empty successful reply of the kind
// the request expects.
func okReply(req string) (string, after) {
	switch {
	case req == "restrict":
		return "0016 Access restricted\n", keepOpen
	case req == "configure confirm":
		return "0018 Reconfiguration confirmed\n", keepOpen
	case req == "configure undo":
		return "0021-Undo requested\n0003 Reconfigured\n", keepOpen
	case req == "configure status":
		return "0003-Daemon is up and running\n0000 \n", keepOpen
	case strings.HasPrefix(req, "configure check"):
		return "0002-Reading configuration from x\n0020 Configuration OK\n", keepOpen
	case strings.HasPrefix(req, "configure"):
		return "0002-Reading configuration from x\n0003 Reconfigured\n", keepOpen
	case req == "show status":
		return "1000-BIRD 2.0.12\n1011-Router ID is 192.0.2.1\n0013 Daemon is up and running\n", keepOpen
	case strings.HasSuffix(req, " count"):
		return "1007-0 of 0 routes for 0 networks in table master4\n0000 \n", keepOpen
	}
	return "0000 \n", keepOpen
}

// TestRequests checks the exact request line each typed call sends.
func TestRequests(t *testing.T) {
	for _, tc := range []struct {
		name string
		call func(context.Context, *Client) error
		want string
	}{
		{"status", func(ctx context.Context, c *Client) error { _, err := c.Status(ctx); return err }, "show status"},
		{"protocols", func(ctx context.Context, c *Client) error {
			_, err := c.Protocols(ctx, ProtocolQuery{})
			return err
		}, "show protocols"},
		{"protocols all pattern", func(ctx context.Context, c *Client) error {
			_, err := c.Protocols(ctx, ProtocolQuery{All: true, Pattern: "tor*"})
			return err
		}, `show protocols all "tor*"`},
		{"routes", func(ctx context.Context, c *Client) error {
			_, err := c.Routes(ctx, RouteQuery{})
			return err
		}, "show route"},
		{"routes for address", func(ctx context.Context, c *Client) error {
			_, err := c.Routes(ctx, RouteQuery{For: netip.MustParsePrefix("10.0.0.1/32"), Table: "master4", Protocol: "own4", All: true})
			return err
		}, "show route for 10.0.0.1 table master4 protocol own4 all"},
		{"routes for prefix", func(ctx context.Context, c *Client) error {
			_, err := c.Routes(ctx, RouteQuery{For: netip.MustParsePrefix("2001:db8::/64")})
			return err
		}, "show route for 2001:db8::/64"},
		{"routes export", func(ctx context.Context, c *Client) error {
			_, err := c.Routes(ctx, RouteQuery{Export: "tor1"})
			return err
		}, "show route export tor1"},
		{"route count", func(ctx context.Context, c *Client) error {
			_, err := c.RouteCount(ctx, RouteQuery{Export: "tor_1", All: true})
			return err
		}, "show route export tor_1 count"},
		{"configure check", func(ctx context.Context, c *Client) error {
			return c.ConfigureCheck(ctx, "/etc/bird/.bird.conf.123")
		}, `configure check "/etc/bird/.bird.conf.123"`},
		{"configure check default", func(ctx context.Context, c *Client) error {
			return c.ConfigureCheck(ctx, "")
		}, "configure check"},
		{"configure", func(ctx context.Context, c *Client) error {
			_, err := c.Configure(ctx, ConfigureOptions{})
			return err
		}, "configure"},
		{"configure file timeout rounded up", func(ctx context.Context, c *Client) error {
			_, err := c.Configure(ctx, ConfigureOptions{File: "/etc/bird/bird.conf", Timeout: 1500 * time.Millisecond})
			return err
		}, `configure "/etc/bird/bird.conf" timeout 2`},
		{"configure timeout", func(ctx context.Context, c *Client) error {
			_, err := c.Configure(ctx, ConfigureOptions{Timeout: time.Minute})
			return err
		}, "configure timeout 60"},
		{"confirm", func(ctx context.Context, c *Client) error { return c.ConfigureConfirm(ctx) }, "configure confirm"},
		{"undo", func(ctx context.Context, c *Client) error { _, err := c.ConfigureUndo(ctx); return err }, "configure undo"},
		{"configure status", func(ctx context.Context, c *Client) error {
			_, err := c.ConfigureStatus(ctx)
			return err
		}, "configure status"},
		{"restrict", func(ctx context.Context, c *Client) error { return c.Restrict(ctx) }, "restrict"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeBird(t, okReply)
			c := dialT(t, f.path)
			if err := tc.call(t.Context(), c); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{"1> " + tc.want}, f.requests()); diff != "" {
				t.Errorf("requests differ (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRequestsRejected checks that requests BIRD would misread never leave
// the client.
func TestRequestsRejected(t *testing.T) {
	for _, tc := range []struct {
		name string
		call func(context.Context, *Client) error
	}{
		{"newline", func(ctx context.Context, c *Client) error { _, err := c.Cmd(ctx, "show status\nconfigure"); return err }},
		{"NUL", func(ctx context.Context, c *Client) error { _, err := c.Cmd(ctx, "configure\x00 check"); return err }},
		{"carriage return", func(ctx context.Context, c *Client) error { _, err := c.Cmd(ctx, "show status\r"); return err }},
		{"too long", func(ctx context.Context, c *Client) error {
			_, err := c.Cmd(ctx, "show status"+strings.Repeat(" ", MaxRequestLen))
			return err
		}},
		{"quote in file", func(ctx context.Context, c *Client) error { return c.ConfigureCheck(ctx, `/etc/bird/a"b.conf`) }},
		{"newline in file", func(ctx context.Context, c *Client) error {
			_, err := c.Configure(ctx, ConfigureOptions{File: "/etc/bird/a\nb.conf"})
			return err
		}},
		{"quote in pattern", func(ctx context.Context, c *Client) error {
			_, err := c.Protocols(ctx, ProtocolQuery{Pattern: `tor"`})
			return err
		}},
		{"dash in table", func(ctx context.Context, c *Client) error {
			_, err := c.Routes(ctx, RouteQuery{Table: "master-4"})
			return err
		}},
		{"digit first in protocol", func(ctx context.Context, c *Client) error {
			_, err := c.Routes(ctx, RouteQuery{Protocol: "1tor"})
			return err
		}},
		{"space in export", func(ctx context.Context, c *Client) error {
			_, err := c.RouteCount(ctx, RouteQuery{Export: "tor1 all"})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeBird(t, okReply)
			c := dialT(t, f.path)
			if err := tc.call(t.Context(), c); err == nil {
				t.Fatal("no error")
			}
			if got := f.requests(); len(got) != 0 {
				t.Errorf("sent %q", got)
			}
		})
	}
	t.Run("longest request is sent", func(t *testing.T) {
		f := newFakeBird(t, okReply)
		c := dialT(t, f.path)
		line := "show status" + strings.Repeat(" ", MaxRequestLen-len("show status"))
		if _, err := c.Cmd(t.Context(), line); err != nil {
			t.Fatal(err)
		}
	})
}

// TestContextEndsMidReply checks that a context ending while BIRD is half
// way through a reply returns the context's error and that the next call
// works on a new connection.
func TestContextEndsMidReply(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ctx     func(context.Context) (context.Context, context.CancelFunc)
		wantErr error
	}{
		{"deadline", func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, 100*time.Millisecond)
		}, context.DeadlineExceeded},
		{"cancel", func(ctx context.Context) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeBird(t, func(req string) (string, after) {
				if req == "show route" {
					return "1007-Table master4:\n 10.0.0.0/24          blackhole [s 12:00:00.000] * (200)\n", stall
				}
				return okReply(req)
			})
			c := dialT(t, f.path)
			ctx, cancel := tc.ctx(t.Context())
			defer cancel()
			_, err := c.Routes(ctx, RouteQuery{})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if _, err := c.Status(t.Context()); err != nil {
				t.Fatalf("call after the cancelled one: %v", err)
			}
			want := []string{"1> show route", "2> show status"}
			if diff := cmp.Diff(want, f.requests()); diff != "" {
				t.Errorf("requests differ (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("already expired", func(t *testing.T) {
		f := newFakeBird(t, okReply)
		c := dialT(t, f.path)
		ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
		defer cancel()
		if _, err := c.Status(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
		if _, err := c.Status(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}

// TestReconnect checks when the client dials again, and that a restricted
// client restricts every new session before anything else.
func TestReconnect(t *testing.T) {
	for _, tc := range []struct {
		name     string
		reply    func(req string) (string, after)
		restrict bool
		wantErr  bool // whether the first status call fails
		want     []string
	}{
		{
			name: "bird hung up after a reply",
			reply: func(req string) (string, after) {
				r, _ := okReply(req)
				return r, hangUp
			},
			want: []string{"1> show status", "2> show status"},
		},
		{
			name: "restricted client restricts the new session",
			reply: func(req string) (string, after) {
				r, _ := okReply(req)
				if req == "restrict" {
					return r, keepOpen
				}
				return r, hangUp
			},
			restrict: true,
			want:     []string{"1> restrict", "1> show status", "2> restrict", "2> show status"},
		},
		{
			name: "bird hung up inside a reply",
			reply: func(req string) (string, after) {
				if req == "show status" {
					return "1000-BIRD 2.0.12\n", hangUp
				}
				return okReply(req)
			},
			wantErr: true,
			want:    []string{"1> show status", "2> show status"},
		},
		{
			name: "malformed reply",
			reply: func(req string) (string, after) {
				if req == "show status" {
					return "hello\n", keepOpen
				}
				return okReply(req)
			},
			wantErr: true,
			want:    []string{"1> show status", "2> show status"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeBird(t, tc.reply)
			c := dialT(t, f.path)
			if tc.restrict {
				if err := c.Restrict(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			_, err := c.Status(t.Context())
			if (err != nil) != tc.wantErr {
				t.Fatalf("first status: err = %v, want error %v", err, tc.wantErr)
			}
			_, err = c.Status(t.Context())
			if !tc.wantErr && err != nil {
				t.Fatalf("second status: %v", err)
			}
			if diff := cmp.Diff(tc.want, f.requests()); diff != "" {
				t.Errorf("requests differ (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAsync(t *testing.T) {
	f := newFakeBird(t, func(req string) (string, after) {
		return "+Config timeout expired, starting undo\n1000-BIRD 2.0.12\n+Reconfiguring\n0013 Daemon is up and running\n+Reconfigured\n", keepOpen
	})
	var async []string
	c := dialT(t, f.path, WithAsync(func(s string) { async = append(async, s) }))
	for range 2 {
		s, err := c.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if s.Version != "2.0.12" || s.Message != "Daemon is up and running" {
			t.Errorf("status = %+v", s)
		}
	}
	want := []string{
		"Config timeout expired, starting undo", "Reconfiguring",
		"Reconfigured", "Config timeout expired, starting undo", "Reconfiguring",
	}
	if diff := cmp.Diff(want, async); diff != "" {
		t.Errorf("async lines differ (-want +got):\n%s", diff)
	}
}

func TestDialErrors(t *testing.T) {
	t.Run("no socket", func(t *testing.T) {
		if _, err := Dial(t.Context(), "/nonexistent/bird.ctl"); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("not a greeting", func(t *testing.T) {
		f := newFakeBird(t, okReply)
		ln, err := net.Listen("unix", f.path+".2")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			conn, err := ln.Accept()
			if err == nil {
				conn.Write([]byte("8000 go away\n"))
				conn.Close()
			}
		}()
		if _, err := Dial(t.Context(), f.path+".2"); err == nil || !strings.Contains(err.Error(), "greeting") {
			t.Fatalf("err = %v, want an error about the greeting", err)
		}
	})
}

func TestClosed(t *testing.T) {
	f := newFakeBird(t, okReply)
	c := dialT(t, f.path)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(t.Context()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("err = %v, want net.ErrClosed", err)
	}
	if got := f.requests(); len(got) != 0 {
		t.Errorf("sent %q after Close", got)
	}
}
