package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
)

// ForwardLoopback makes addr (host:port on 127.0.0.1) of the test's own
// network namespace reachable at the same address inside namespace ns: it
// listens there and relays each connection to addr, dialled from the test's
// namespace. A process run inside ns with ip netns exec can then use a
// server that listens on the loopback outside, kube-apiserver say, with the
// same URL and certificate. The relay and its connections end with the
// test.
func ForwardLoopback(tb testing.TB, ns, addr string) {
	tb.Helper()
	var ln net.Listener
	if err := InNetNS(ns, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		tb.Fatalf("forward %s into %s: %v", addr, ns, err)
	}
	var (
		mu     sync.Mutex
		open   = map[net.Conn]bool{}
		closed bool
		wg     sync.WaitGroup
	)
	// keep records c as open, or closes it when the relay has stopped.
	keep := func(c net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			c.Close()
			return false
		}
		open[c] = true
		return true
	}
	drop := func(cs ...net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range cs {
			c.Close()
			delete(open, c)
		}
	}
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil || !keep(in) {
				return
			}
			wg.Go(func() {
				out, err := net.Dial("tcp", addr)
				if err != nil || !keep(out) {
					drop(in)
					return
				}
				relay(in, out)
				drop(in, out)
			})
		}
	})
}

// relay copies both ways between a and b until one direction ends, then
// closes both and waits for the other.
func relay(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	a.Close()
	b.Close()
	<-done
}
