package testenv

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

// ServeHelloUDP answers every datagram that reaches addr inside namespace ns
// with the datagram "hello", until the test ends.
func ServeHelloUDP(tb testing.TB, ns, addr string) {
	tb.Helper()
	var pc net.PacketConn
	if err := InNetNS(ns, func() (err error) {
		pc, err = net.ListenPacket("udp4", addr)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte("hello"), from)
		}
	}()
}

// ExchangeHelloUDP sends one datagram from namespace ns to addr and reads
// ServeHelloUDP's answer. It returns ErrDropped when no answer comes within
// timeout; any other failure (an ICMP port unreachable, say) is another
// error.
func ExchangeHelloUDP(ns, addr string, timeout time.Duration) error {
	var c net.Conn
	if err := InNetNS(ns, func() (err error) {
		c, err = net.Dial("udp4", addr)
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := c.Write([]byte("hi")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ErrDropped
	}
	if err != nil {
		return err
	}
	if string(buf[:n]) != "hello" {
		return fmt.Errorf("answered %q, want \"hello\"", buf[:n])
	}
	return nil
}
