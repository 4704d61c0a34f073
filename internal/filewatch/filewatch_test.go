package filewatch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(path, []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan struct{}, 100)
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, path, func() { events <- struct{}{} }) }()

	// fsnotify adds the watch asynchronously to this goroutine; poke the
	// file until the first event shows the watch is live.
	deadline := time.After(10 * time.Second)
	live := false
	for !live {
		if err := os.WriteFile(path, []byte("b"), 0o644); err != nil {
			t.Fatal(err)
		}
		select {
		case <-events:
			live = true
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal("no event for an in-place write")
		}
	}
	drain := func() {
		for {
			select {
			case <-events:
			case <-time.After(100 * time.Millisecond):
				return
			}
		}
	}
	expect := func(what string, do func()) {
		t.Helper()
		drain()
		do()
		select {
		case <-events:
		case <-time.After(10 * time.Second):
			t.Fatalf("no event for %s", what)
		}
	}
	expect("rename into place", func() {
		tmp := filepath.Join(dir, ".agent.yaml.tmp")
		if err := os.WriteFile(tmp, []byte("c"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	})
	expect("remove", func() { os.Remove(path) })
	expect("create", func() { os.WriteFile(path, []byte("d"), 0o644) })

	// Another file in the directory is not our file.
	drain()
	os.WriteFile(filepath.Join(dir, "other"), []byte("x"), 0o644)
	select {
	case <-events:
		t.Error("event for another file")
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Watch: %v", err)
	}
}

func TestWatchMissingDir(t *testing.T) {
	err := Watch(context.Background(), "/nonexistent-roost/agent.yaml", func() {})
	if err == nil {
		t.Fatal("want error for a missing directory")
	}
}

func TestWatchDir(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan struct{}, 100)
	done := make(chan error, 1)
	isYAML := func(name string) bool { return filepath.Ext(name) == ".yaml" }
	go func() { done <- WatchDir(ctx, dir, isYAML, func() { events <- struct{}{} }) }()

	// Wait until the watch is live.
	deadline := time.After(10 * time.Second)
	for live := false; !live; {
		os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("x"), 0o644)
		select {
		case <-events:
			live = true
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal("no event for a new policy file")
		}
	}
	for {
		select {
		case <-events:
			continue
		case <-time.After(100 * time.Millisecond):
		}
		break
	}
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644)
	select {
	case <-events:
		t.Error("event for a file that does not match")
	case <-time.After(200 * time.Millisecond):
	}
	os.Remove(filepath.Join(dir, "a.yaml"))
	select {
	case <-events:
	case <-time.After(10 * time.Second):
		t.Error("no event for a removed policy file")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("WatchDir: %v", err)
	}
}
