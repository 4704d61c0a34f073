package testenv

import (
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// ServeHello accepts TCP connections on addr inside namespace ns and answers
// each with the line "hello", until the test ends.
func ServeHello(tb testing.TB, ns, addr string) {
	tb.Helper()
	var ln net.Listener
	if err := InNetNS(ns, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "hello")
			c.Close()
		}
	}()
}

// ServeEcho accepts TCP connections on addr ("tcp": either family)
// inside namespace ns and echoes back what each sends, until the test ends.
func ServeEcho(tb testing.TB, ns, addr string) {
	tb.Helper()
	var ln net.Listener
	if err := InNetNS(ns, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
}

// ErrDropped is a connection attempt that timed out, as one does when its
// SYN is dropped.
var ErrDropped = errors.New("timed out (dropped)")

// ConnectHello opens a TCP connection from namespace ns to addr and reads
// ServeHello's line. It returns ErrDropped when the attempt times out; any
// other failure (refused, unreachable) is another error.
func ConnectHello(ns, addr string, timeout time.Duration) error {
	var c net.Conn
	err := InNetNS(ns, func() (err error) {
		c, err = net.DialTimeout("tcp4", addr, timeout)
		return err
	})
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ErrDropped
	}
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	line, err := io.ReadAll(c)
	if err != nil || string(line) != "hello\n" {
		return fmt.Errorf("connected, but read %q: %v", line, err)
	}
	return nil
}
