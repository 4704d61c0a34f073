package serve

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestServeUnix(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "agent.sock")
	// A stale socket left by a crash is replaced.
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ServeUnix(ctx, path, 0o600, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hi") }))
	}()
	var fi os.FileInfo
	for deadline := time.Now().Add(5 * time.Second); ; {
		var c net.Conn
		if c, err = net.Dial("unix", path); err == nil {
			c.Close()
			fi, err = os.Stat(path)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket never answered: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v (%v), want 0600", fi.Mode(), err)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	resp, err := hc.Get("http://x/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hi" {
		t.Errorf("body = %q", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ServeUnix: %v", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestServeUnixRefusesNonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	if err := os.WriteFile(path, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := ServeUnix(context.Background(), path, 0o600, http.NotFoundHandler())
	if err == nil {
		t.Fatal("served over a regular file")
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Error("regular file replaced")
	}
}
