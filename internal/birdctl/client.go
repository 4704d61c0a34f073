// Package birdctl is a client for BIRD 2's control socket (the protocol
// birdc speaks): it frames requests and replies, turns 8xxx/9xxx replies
// into *Error, and parses the replies roost needs (show status, show
// protocols, show route, configure) into typed values. It also reads, from
// BIRD's log file, what the socket never tells: the AS number a refused peer
// sent (ReadLogTail, ParseBadPeerAS).
//
// A Client owns one connection at a time and serializes calls on it. When the
// connection breaks (I/O error, cancelled context, BIRD restarted), the next
// call dials the same socket path again and, if the client was restricted,
// restricts the new session before anything else.
package birdctl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MaxRequestLen is the longest request line, without its "\n", that BIRD
// 2.0.12 accepts: it reads requests into a 1024-byte buffer and drops the
// connection when a line does not fit.
const MaxRequestLen = 1022

// Client talks to one BIRD control socket. Its methods are safe for
// concurrent use; calls run one at a time.
type Client struct {
	path  string
	async func(string)

	mu         sync.Mutex
	conn       *net.UnixConn // nil until dialled and after a broken exchange
	br         *bufio.Reader
	version    string
	restricted bool
	closed     bool
}

// Option configures a Client.
type Option func(*Client)

// WithAsync has the client pass every asynchronous line BIRD sends ("+text",
// e.g. "Config timeout expired, starting undo", or log lines after "echo
// all") to fn, without the "+". BIRD sends them between replies and the
// client reads them with the next reply, so fn sees them during the next
// call. fn runs while that call holds the client: it must not call the
// client. Without WithAsync, asynchronous lines are dropped.
func WithAsync(fn func(text string)) Option {
	return func(c *Client) { c.async = fn }
}

// Dial connects to the BIRD control socket at path and reads its greeting.
// It returns an error if the socket does not answer with a 0001 greeting
// before ctx ends.
func Dial(ctx context.Context, path string, opts ...Option) (*Client, error) {
	c := &Client{path: path}
	for _, o := range opts {
		o(c)
	}
	if err := c.connect(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Version returns the BIRD version from the last greeting, e.g. "2.0.12".
func (c *Client) Version() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

// Close closes the connection. Calls after Close return an error wrapping
// net.ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn, c.br = nil, nil
	return err
}

// Restrict makes the session read-only (BIRD's "restrict"): BIRD then
// answers 8007 (ErrAccessDenied) to configure and every other command that
// changes state. The client stays restricted across reconnects.
func (c *Client) Restrict(ctx context.Context) error {
	rep, err := c.Cmd(ctx, "restrict")
	if err != nil {
		return err
	}
	return expect("restrict", rep, CodeRestricted)
}

// Cmd sends one raw request line (without "\n") and returns BIRD's reply.
// The line must be at most MaxRequestLen bytes with no control characters
// but tab. When BIRD answers with an 8xxx or 9xxx code, Cmd returns the
// reply together with an *Error. Other errors are about the connection or
// ctx (wrapping ctx.Err()); after one the connection is closed and the next
// call dials again.
func (c *Client) Cmd(ctx context.Context, line string) (*Reply, error) {
	if err := checkRequest(line); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rep, err := c.roundTrip(ctx, line)
	if err != nil {
		return nil, err
	}
	if rep.Code == CodeRestricted {
		c.restricted = true
	}
	return rep, replyError(line, rep)
}

// checkRequest rejects request lines BIRD would misread or drop the
// connection for: too long, or holding a control character (BIRD stops at
// NUL and could run a prefix of the request).
func checkRequest(line string) error {
	if len(line) > MaxRequestLen {
		return fmt.Errorf("bird request %.40q...: longer than %d bytes", line, MaxRequestLen)
	}
	for _, r := range line {
		if (r < 0x20 && r != '\t') || r == 0x7f {
			return fmt.Errorf("bird request %q: control character %q not allowed", line, r)
		}
	}
	return nil
}

// roundTrip sends line and reads the reply, on a fresh connection if the
// current one is gone or BIRD has closed it. A request that BIRD provably
// did not run on a reused connection (the write failed, or BIRD closed the
// socket with the request unread) is sent once more on a fresh one; any
// other failure is returned, since BIRD may have run the request. c.mu
// must be held.
func (c *Client) roundTrip(ctx context.Context, line string) (*Reply, error) {
	if c.closed {
		return nil, fmt.Errorf("bird %s: %w", c.path, net.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bird %s: %s: %w", c.path, quoteReq(line), err)
	}
	if c.conn != nil && !c.alive() {
		c.drop()
	}
	for attempt := 0; ; attempt++ {
		reused := c.conn != nil
		if !reused {
			if err := c.connect(ctx); err != nil {
				return nil, err
			}
		}
		rep, sent, err := c.exchange(ctx, line)
		if err == nil {
			return rep, nil
		}
		c.drop()
		if sent || !reused || attempt > 0 || ctx.Err() != nil {
			return nil, err
		}
	}
}

// exchange writes line on the current connection and reads the reply. sent
// reports whether the request may have reached BIRD.
func (c *Client) exchange(ctx context.Context, line string) (rep *Reply, sent bool, err error) {
	stop := c.watch(ctx)
	defer stop()
	if _, err := io.WriteString(c.conn, line+"\n"); err != nil {
		return nil, false, c.connErr(ctx, "send "+quoteReq(line), err)
	}
	rep, err = readReply(c.br, c.async)
	if err != nil {
		// A UNIX socket reports ECONNRESET only when the peer closed it
		// with bytes unread: BIRD went away without reading all of the
		// request, so it did not run it.
		sent = !errors.Is(err, syscall.ECONNRESET)
		return nil, sent, c.connErr(ctx, "read reply to "+quoteReq(line), err)
	}
	return rep, true, nil
}

// connect dials c.path, reads the greeting and, for a restricted client,
// restricts the new session. c.mu must be held (or c not yet shared).
func (c *Client) connect(ctx context.Context) error {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		return fmt.Errorf("dial bird %s: %w", c.path, err)
	}
	c.conn, c.br = nc.(*net.UnixConn), bufio.NewReader(nc)
	stop := c.watch(ctx)
	rep, err := readReply(c.br, c.async)
	stop()
	if err != nil {
		err = c.connErr(ctx, "read greeting", err)
		c.drop()
		return err
	}
	f := strings.Fields(rep.Text)
	if rep.Code != CodeWelcome || len(f) < 2 || f[0] != "BIRD" {
		c.drop()
		return fmt.Errorf("bird %s: unexpected greeting %04d %q", c.path, rep.Code, rep.Text)
	}
	c.version = f[1]
	if c.restricted {
		rep, _, err := c.exchange(ctx, "restrict")
		if err == nil {
			err = expect("restrict", rep, CodeRestricted)
		}
		if err != nil {
			c.drop()
			return fmt.Errorf("restrict new session: %w", err)
		}
	}
	return nil
}

// watch applies ctx to the connection: its deadline, and cancellation by
// moving the deadline into the past. The returned func undoes both; once it
// returns, ctx no longer touches the connection.
func (c *Client) watch(ctx context.Context) (stop func()) {
	conn := c.conn
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	done := make(chan struct{})
	stopCancel := context.AfterFunc(ctx, func() {
		_ = conn.SetDeadline(time.Unix(1, 0))
		close(done)
	})
	return func() {
		if !stopCancel() {
			<-done
		}
		_ = conn.SetDeadline(time.Time{})
	}
}

// connErr describes a failed read or write. When ctx ended, the error wraps
// ctx's error, so errors.Is(err, context.DeadlineExceeded) holds even when
// the socket deadline fired a moment before ctx's own timer.
func (c *Client) connErr(ctx context.Context, what string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("bird %s: %s: %w", c.path, what, cerr)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if _, ok := ctx.Deadline(); ok {
			return fmt.Errorf("bird %s: %s: %w", c.path, what, context.DeadlineExceeded)
		}
	}
	return fmt.Errorf("bird %s: %s: %w", c.path, what, err)
}

// alive reports whether BIRD still holds the other end of the connection:
// it peeks at the socket without blocking and sees end of file after BIRD
// exited or restarted.
func (c *Client) alive() bool {
	raw, err := c.conn.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	var b [1]byte
	err = raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = n > 0 || err == syscall.EAGAIN || err == syscall.EINTR
		return true
	})
	return err == nil && ok
}

// drop closes the connection; the next call dials again.
func (c *Client) drop() {
	if c.conn != nil {
		_ = c.conn.Close()
	}
	c.conn, c.br = nil, nil
}

// expect returns nil if rep ended with one of codes, and an error naming the
// request and BIRD's answer otherwise.
func expect(request string, rep *Reply, codes ...int) error {
	for _, code := range codes {
		if rep.Code == code {
			return nil
		}
	}
	return fmt.Errorf("bird %q: unexpected reply %04d %q", request, rep.Code, rep.Text)
}

// quoteReq quotes a request for an error message.
func quoteReq(line string) string { return fmt.Sprintf("%q", line) }
