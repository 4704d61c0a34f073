package birdctl

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// after is what a fakeBird does once it has written a reply.
type after int

const (
	keepOpen after = iota // wait for the next request
	hangUp                // close the connection
	stall                 // write nothing more and read nothing more until the test ends
)

// fakeBird is a control socket that greets like BIRD 2.0.12 and answers
// each request with what handle returns. It logs requests as "N> request",
// N counting connections from 1, so tests can see redials.
type fakeBird struct {
	path   string
	handle func(req string) (reply string, then after)

	mu    sync.Mutex
	log   []string
	conns int
}

// newFakeBird starts a fakeBird that lives until the test ends.
func newFakeBird(t *testing.T, handle func(req string) (string, after)) *fakeBird {
	t.Helper()
	dir, err := os.MkdirTemp("", "bcf") // short: sun_path holds 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fakeBird{path: filepath.Join(dir, "bird.ctl"), handle: handle}
	ln, err := net.Listen("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(done)
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns++
			n := f.conns
			f.mu.Unlock()
			wg.Add(2)
			go func() { // closes conn when the test ends, unblocking serve
				defer wg.Done()
				<-done
				conn.Close()
			}()
			go func() {
				defer wg.Done()
				f.serve(conn, n, done)
			}()
		}
	}()
	return f
}

func (f *fakeBird) serve(conn net.Conn, n int, done chan struct{}) {
	defer conn.Close()
	if _, err := conn.Write([]byte("0001 BIRD 2.0.12 ready.\n")); err != nil {
		return
	}
	br := bufio.NewReader(conn)
	for {
		req, err := br.ReadString('\n')
		if err != nil {
			return
		}
		req = strings.TrimSuffix(req, "\n")
		f.mu.Lock()
		f.log = append(f.log, fmt.Sprintf("%d> %s", n, req))
		f.mu.Unlock()
		reply, then := f.handle(req)
		if _, err := conn.Write([]byte(reply)); err != nil {
			return
		}
		switch then {
		case hangUp:
			return
		case stall:
			<-done
			return
		}
	}
}

// requests returns the log of requests so far.
func (f *fakeBird) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}
