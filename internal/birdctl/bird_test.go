package birdctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/testenv"
)

// These tests drive a real BIRD 2 started for each test (no root needed):
// static and pipe protocols only, nothing that touches the kernel.

// birdConfig is the config the tests start BIRD with; extra is appended.
func birdConfig(extra string) string {
	return `router id 192.0.2.1;
protocol device {}
ipv4 table t2;
protocol static own4 { ipv4; route 10.10.0.0/24 blackhole; route 10.20.0.5/32 blackhole; }
protocol static own6 { ipv6; route 2001:db8:10::/64 blackhole; }
protocol static off4 { disabled; ipv4; route 10.40.0.0/24 blackhole; }
protocol pipe p2 { table master4; peer table t2; export where proto = "own4"; import none; }
` + extra
}

func TestBirdQueries(t *testing.T) {
	b := testenv.StartBird(t, "", birdConfig(""))
	c := dialT(t, b.Socket)
	ctx := t.Context()

	t.Run("version", func(t *testing.T) {
		if got := c.Version(); got != "2.0.12" {
			t.Errorf("Version() = %q, want 2.0.12 (DESIGN.md: test against exactly that binary)", got)
		}
	})
	t.Run("status", func(t *testing.T) {
		s, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.Version != "2.0.12" || s.RouterID != netip.MustParseAddr("192.0.2.1") ||
			s.Message != "Daemon is up and running" || s.GracefulRestart {
			t.Errorf("status = %+v", s)
		}
		if s.ServerTime.IsZero() || s.LastReboot.After(s.ServerTime) || s.LastReconfig.Before(s.LastReboot) {
			t.Errorf("times: server %v, reboot %v, reconfig %v", s.ServerTime, s.LastReboot, s.LastReconfig)
		}
	})
	t.Run("protocols", func(t *testing.T) {
		ps, err := c.Protocols(ctx, ProtocolQuery{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range ps {
			got = append(got, p.Name+" "+p.Proto+" "+p.Table+" "+p.State)
			if p.Since == "" || p.Channels != nil {
				t.Errorf("%s: since %q, channels %v", p.Name, p.Since, p.Channels)
			}
		}
		want := []string{"device1 Device --- up", "own4 Static master4 up", "own6 Static master6 up", "off4 Static master4 down", "p2 Pipe --- up"}
		if !slices.Equal(got, want) {
			t.Errorf("protocols = %q, want %q", got, want)
		}
	})
	t.Run("protocols all pattern", func(t *testing.T) {
		ps, err := c.Protocols(ctx, ProtocolQuery{All: true, Pattern: "own*"})
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != 2 || len(ps[0].Channels) != 1 {
			t.Fatalf("protocols = %+v, want own4 and own6 with a channel each", ps)
		}
		want := Channel{Name: "ipv4", State: "UP", Table: "master4", InputFilter: "ACCEPT", OutputFilter: "REJECT", Imported: 2, Preferred: 2}
		if ps[0].Name != "own4" || ps[0].Channels[0] != want {
			t.Errorf("own4 = %+v, want channel %+v", ps[0], want)
		}
	})
	t.Run("protocols no match", func(t *testing.T) {
		_, err := c.Protocols(ctx, ProtocolQuery{Pattern: "nosuch"})
		var e *Error
		if !errors.Is(err, ErrNotFound) || !errors.As(err, &e) || e.Code != 8003 || e.Request != `show protocols "nosuch"` {
			t.Fatalf("err = %v, want *Error 8003 for the request, matching ErrNotFound", err)
		}
	})
	for _, tc := range []struct {
		name  string
		q     RouteQuery
		want  []string // "table net dest protocol"
		count int
	}{
		{"all tables", RouteQuery{}, []string{
			"master4 10.10.0.0/24 blackhole own4", "master4 10.20.0.5/32 blackhole own4", "master6 2001:db8:10::/64 blackhole own6",
		}, 3},
		{"table", RouteQuery{Table: "t2"}, []string{"t2 10.10.0.0/24 blackhole own4", "t2 10.20.0.5/32 blackhole own4"}, 2},
		{"for address", RouteQuery{For: netip.MustParsePrefix("10.10.0.1/32")}, []string{"master4 10.10.0.0/24 blackhole own4"}, 1},
		{"for prefix", RouteQuery{For: netip.MustParsePrefix("2001:db8:10::/64")}, []string{"master6 2001:db8:10::/64 blackhole own6"}, 1},
		{"protocol", RouteQuery{Protocol: "own6"}, []string{"master6 2001:db8:10::/64 blackhole own6"}, 1},
		{"export", RouteQuery{Export: "p2"}, []string{"master4 10.10.0.0/24 blackhole own4", "master4 10.20.0.5/32 blackhole own4"}, 2},
		{"disabled protocol", RouteQuery{Protocol: "off4"}, nil, 0},
	} {
		t.Run("routes "+tc.name, func(t *testing.T) {
			for _, all := range []bool{false, true} {
				q := tc.q
				q.All = all
				rs, err := c.Routes(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, r := range rs {
					got = append(got, strings.Join([]string{r.Table, r.Prefix.String(), r.Dest, r.Protocol}, " "))
					if !r.Primary || r.Since == "" || (r.Attrs["Type"] == "static univ") != all {
						t.Errorf("all=%v: route %+v", all, r)
					}
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("all=%v: routes = %q, want %q", all, got, tc.want)
				}
			}
			n, err := c.RouteCount(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.count {
				t.Errorf("count = %d, want %d", n, tc.count)
			}
		})
	}
	t.Run("routes not found", func(t *testing.T) {
		_, err := c.Routes(ctx, RouteQuery{For: netip.MustParsePrefix("10.77.0.0/16")})
		var e *Error
		if !errors.Is(err, ErrNotFound) || !errors.As(err, &e) || e.Code != 8001 {
			t.Fatalf("err = %v, want *Error 8001 matching ErrNotFound", err)
		}
	})
	t.Run("export of a down protocol", func(t *testing.T) {
		_, err := c.Routes(ctx, RouteQuery{Export: "off4"})
		if !errors.Is(err, ErrNoTables) {
			t.Fatalf("err = %v, want ErrNoTables", err)
		}
		if _, err := c.RouteCount(ctx, RouteQuery{Export: "off4"}); !errors.Is(err, ErrNoTables) {
			t.Fatalf("count: err = %v, want ErrNoTables", err)
		}
	})
	t.Run("raw parse error", func(t *testing.T) {
		rep, err := c.Cmd(ctx, "show protocols nosuch")
		var e *Error
		if !errors.As(err, &e) || e.Code != 9001 || e.Request != "show protocols nosuch" || rep == nil || rep.Code != 9001 {
			t.Fatalf("reply %+v, err = %v, want 9001 with the reply", rep, err)
		}
	})
	t.Run("longest request", func(t *testing.T) {
		line := "show status" + strings.Repeat(" ", MaxRequestLen-len("show status"))
		if _, err := c.Cmd(ctx, line); err != nil {
			t.Fatalf("%d-byte request: %v", len(line), err)
		}
	})
	t.Run("bird drops longer requests", func(t *testing.T) {
		// Why MaxRequestLen is what it is: one byte more and BIRD 2.0.12
		// closes the connection instead of answering.
		conn, err := net.Dial("unix", b.Socket)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		greeting := make([]byte, len("0001 BIRD 2.0.12 ready.\n"))
		if _, err := io.ReadFull(conn, greeting); err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte("show status" + strings.Repeat(" ", MaxRequestLen+1-len("show status")) + "\n"))
		if got, err := io.ReadAll(conn); len(got) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
			t.Fatalf("BIRD answered %q (err %v) to a %d-byte request, want the connection closed", got, err, MaxRequestLen+1)
		}
	})
}

func TestBirdConfigure(t *testing.T) {
	b := testenv.StartBird(t, "", birdConfig(""))
	var mu sync.Mutex
	var async []string
	c := dialT(t, b.Socket, WithAsync(func(s string) {
		mu.Lock()
		defer mu.Unlock()
		async = append(async, s)
	}))
	ctx := t.Context()
	conf := func(name, extra string) string {
		p := filepath.Join(b.Dir, name)
		writeFile(t, p, birdConfig(extra))
		return p
	}
	has := func(t *testing.T, prefix string) bool {
		t.Helper()
		_, err := c.Routes(ctx, RouteQuery{For: netip.MustParsePrefix(prefix)})
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	bad := filepath.Join(b.Dir, "bad.conf")
	writeFile(t, bad, "router id 192.0.2.1;\nprotocol static s1 {\n  ipv4; route 10.0.0.0/8 blackhole\n}\n")

	t.Run("check good", func(t *testing.T) {
		if err := c.ConfigureCheck(ctx, conf("good.conf", "protocol static new1 { ipv4; route 10.50.0.0/24 blackhole; }\n")); err != nil {
			t.Fatal(err)
		}
		if err := c.ConfigureCheck(ctx, ""); err != nil {
			t.Fatalf("check of the running file: %v", err)
		}
		if has(t, "10.50.0.0/24") {
			t.Error("configure check applied the config")
		}
	})
	t.Run("check bad", func(t *testing.T) {
		err := c.ConfigureCheck(ctx, bad)
		var e *Error
		if !errors.Is(err, ErrConfig) || !errors.As(err, &e) || e.Code != 8002 || !strings.HasPrefix(e.Text, bad+":4:1 syntax error") {
			t.Fatalf("err = %v, want 8002 naming %s line 4", err, bad)
		}
	})
	t.Run("check missing", func(t *testing.T) {
		err := c.ConfigureCheck(ctx, filepath.Join(b.Dir, "missing.conf"))
		var e *Error
		if !errors.As(err, &e) || e.Code != 8002 || !strings.Contains(e.Text, "No such file") {
			t.Fatalf("err = %v, want 8002 no such file", err)
		}
	})
	t.Run("configure bad keeps the running config", func(t *testing.T) {
		_, err := c.Configure(ctx, ConfigureOptions{File: bad})
		if !errors.Is(err, ErrConfig) {
			t.Fatalf("err = %v, want ErrConfig", err)
		}
		if !has(t, "10.10.0.0/24") {
			t.Error("running config lost its routes")
		}
	})
	t.Run("configure good", func(t *testing.T) {
		file := conf("good.conf", "protocol static new1 { ipv4; route 10.50.0.0/24 blackhole; }\n")
		res, err := c.Configure(ctx, ConfigureOptions{File: file})
		if err != nil {
			t.Fatal(err)
		}
		if res.Code != CodeReconfigured || !res.Done() || res.File != file || res.UndoIn != 0 {
			t.Errorf("result = %+v, want done at once (protocols only added)", res)
		}
		if !has(t, "10.50.0.0/24") {
			t.Error("new route missing")
		}
	})
	t.Run("timeout then confirm", func(t *testing.T) {
		file := conf("t1.conf", "protocol static new2 { ipv4; route 10.51.0.0/24 blackhole; }\n")
		res, err := c.Configure(ctx, ConfigureOptions{File: file, Timeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		// Removing protocol new1 takes BIRD a moment: 0004.
		if res.UndoIn != 30*time.Second || (res.Code != CodeReconfigured && res.Code != CodeReconfigInProgress) {
			t.Errorf("result = %+v, want reconfigured or in progress, undo in 30s", res)
		}
		waitReconfigured(t, c)
		st, err := c.ConfigureStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Unconfirmed || st.UndoIn <= 0 || st.UndoIn > 30*time.Second || st.Code != CodeReconfigured {
			t.Errorf("status = %+v, want unconfirmed", st)
		}
		if err := c.ConfigureConfirm(ctx); err != nil {
			t.Fatal(err)
		}
		if st, err := c.ConfigureStatus(ctx); err != nil || st.Unconfirmed || st.Message != "Daemon is up and running" {
			t.Errorf("status after confirm = %+v, %v", st, err)
		}
		if err := c.ConfigureConfirm(ctx); !errors.Is(err, ErrNothingToDo) {
			t.Errorf("second confirm: err = %v, want ErrNothingToDo", err)
		}
		if !has(t, "10.51.0.0/24") {
			t.Error("confirmed route missing")
		}
	})
	t.Run("timeout then undo", func(t *testing.T) {
		file := conf("t2.conf", "protocol static new3 { ipv4; route 10.52.0.0/24 blackhole; }\n")
		if _, err := c.Configure(ctx, ConfigureOptions{File: file, Timeout: 30 * time.Second}); err != nil {
			t.Fatal(err)
		}
		waitReconfigured(t, c)
		if !has(t, "10.52.0.0/24") || has(t, "10.51.0.0/24") {
			t.Fatal("t2.conf not applied")
		}
		res, err := c.ConfigureUndo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.Code != CodeReconfigured && res.Code != CodeReconfigInProgress {
			t.Errorf("undo result = %+v", res)
		}
		waitReconfigured(t, c)
		if has(t, "10.52.0.0/24") || !has(t, "10.51.0.0/24") {
			t.Error("undo did not restore t1.conf")
		}
		if _, err := c.ConfigureUndo(ctx); !errors.Is(err, ErrNothingToDo) {
			t.Errorf("second undo: err = %v, want ErrNothingToDo", err)
		}
		if err := c.ConfigureConfirm(ctx); !errors.Is(err, ErrNothingToDo) {
			t.Errorf("confirm after undo: err = %v, want ErrNothingToDo", err)
		}
	})
	t.Run("timeout expires", func(t *testing.T) {
		file := conf("t3.conf", "protocol static new4 { ipv4; route 10.53.0.0/24 blackhole; }\n")
		if _, err := c.Configure(ctx, ConfigureOptions{File: file, Timeout: time.Second}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "BIRD to undo t3.conf", func() bool {
			st, err := c.ConfigureStatus(ctx)
			return err == nil && !st.Unconfirmed && st.Code == CodeReconfigured
		})
		if has(t, "10.53.0.0/24") || !has(t, "10.51.0.0/24") {
			t.Error("expired timeout did not restore t1.conf")
		}
		if err := c.ConfigureConfirm(ctx); !errors.Is(err, ErrNothingToDo) {
			t.Errorf("late confirm: err = %v, want ErrNothingToDo", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Contains(async, "Config timeout expired, starting undo") {
			t.Errorf("async lines %q lack BIRD's undo notice", async)
		}
	})
}

func TestBirdRestricted(t *testing.T) {
	b := testenv.StartBird(t, "", birdConfig(""))
	c := dialT(t, b.Socket)
	ctx := t.Context()
	if err := c.Restrict(ctx); err != nil {
		t.Fatal(err)
	}
	denied := func(t *testing.T) {
		t.Helper()
		for name, call := range map[string]func() error{
			"configure": func() error { _, err := c.Configure(ctx, ConfigureOptions{}); return err },
			"check":     func() error { return c.ConfigureCheck(ctx, "") },
			"confirm":   func() error { return c.ConfigureConfirm(ctx) },
			"undo":      func() error { _, err := c.ConfigureUndo(ctx); return err },
		} {
			var e *Error
			if err := call(); !errors.Is(err, ErrAccessDenied) || !errors.As(err, &e) || e.Code != 8007 {
				t.Errorf("%s: err = %v, want 8007 access denied", name, err)
			}
		}
		if _, err := c.Status(ctx); err != nil {
			t.Errorf("status: %v", err)
		}
		if _, err := c.ConfigureStatus(ctx); err != nil {
			t.Errorf("configure status: %v", err)
		}
	}
	denied(t)

	// Another session is not restricted.
	other := dialT(t, b.Socket)
	if _, err := other.Configure(ctx, ConfigureOptions{}); err != nil {
		t.Fatalf("unrestricted session: %v", err)
	}

	// A restarted BIRD gets a new session; the client restricts it too.
	b.Kill()
	b.Start("")
	denied(t)
}

func TestBirdReconnect(t *testing.T) {
	b := testenv.StartBird(t, "", birdConfig(""))
	c := dialT(t, b.Socket)
	ctx := t.Context()
	first, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("restarted between calls", func(t *testing.T) {
		b.Kill()
		b.Start("")
		s, err := c.Status(ctx)
		if err != nil {
			t.Fatalf("first call after restart: %v", err)
		}
		if !s.LastReboot.After(first.LastReboot) {
			t.Errorf("last reboot %v, want after %v: not the new BIRD", s.LastReboot, first.LastReboot)
		}
	})
	t.Run("down during a call", func(t *testing.T) {
		b.Kill()
		if _, err := c.Status(ctx); err == nil {
			t.Fatal("status while BIRD is down: no error")
		}
		b.Start("")
		if _, err := c.Status(ctx); err != nil {
			t.Fatalf("status after BIRD is back: %v", err)
		}
	})
}

func TestBirdDeadline(t *testing.T) {
	b := testenv.StartBird(t, "", birdConfig(""))
	c := dialT(t, b.Socket)
	ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Millisecond))
	defer cancel()
	if _, err := c.Protocols(ctx, ProtocolQuery{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if _, err := Dial(ctx, b.Socket); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial: err = %v, want context.DeadlineExceeded", err)
	}
	if _, err := c.Protocols(t.Context(), ProtocolQuery{}); err != nil {
		t.Fatalf("call after the expired one: %v", err)
	}
}

// TestBirdConcurrent shares one client between goroutines: calls must not
// mix their replies (run with -race).
func TestBirdConcurrent(t *testing.T) {
	b := testenv.StartBird(t, "", birdConfig(""))
	c := dialT(t, b.Socket)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range 4 {
		wg.Go(func() {
			for range 25 {
				var err error
				if i%2 == 0 {
					var n int
					if n, err = c.RouteCount(t.Context(), RouteQuery{}); err == nil && n != 3 {
						err = errors.New("wrong count")
					}
				} else {
					var s Status
					if s, err = c.Status(t.Context()); err == nil && s.Version != "2.0.12" {
						err = errors.New("wrong status")
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// waitReconfigured waits until BIRD has finished reconfiguring.
func waitReconfigured(t *testing.T, c *Client) {
	t.Helper()
	waitFor(t, "BIRD to finish reconfiguring", func() bool {
		st, err := c.ConfigureStatus(t.Context())
		return err == nil && st.Code == CodeReconfigured
	})
}

// waitFor polls cond every 50ms for up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// BenchmarkBirdRoutes reads a table of 10,000 routes from a real BIRD, in
// full and as a count.
func BenchmarkBirdRoutes(b *testing.B) {
	var extra strings.Builder
	extra.WriteString("ipv4 table big4;\nprotocol static big {\n  ipv4 { table big4; };\n")
	for i := range 10000 {
		fmt.Fprintf(&extra, "  route 100.64.%d.%d/32 blackhole;\n", i/256, i%256)
	}
	extra.WriteString("}\n")
	bird := testenv.StartBird(b, "", birdConfig(extra.String()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Dial(ctx, bird.Socket)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.Run("Routes", func(b *testing.B) {
		for b.Loop() {
			if rs, err := c.Routes(ctx, RouteQuery{Table: "big4"}); err != nil || len(rs) != 10000 {
				b.Fatalf("%d routes, %v", len(rs), err)
			}
		}
	})
	b.Run("RouteCount", func(b *testing.B) {
		for b.Loop() {
			if n, err := c.RouteCount(ctx, RouteQuery{Table: "big4"}); err != nil || n != 10000 {
				b.Fatalf("count %d, %v", n, err)
			}
		}
	})
}
