// Package filewatch tells when a file's content may have changed: written in
// place, replaced by rename (as editors, Salt and Kubernetes ConfigMaps do),
// created or removed.
package filewatch

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/fsnotify/fsnotify"
)

// Watch calls changed each time the file at path may have changed, until ctx
// is done. It watches the file's directory, so that a file replaced by rename,
// or created later, is still followed. changed runs on Watch's goroutine and
// must not block for long. Watch returns an error only when the watch cannot
// be set up or the kernel reports a failure; it returns nil when ctx ends.
func Watch(ctx context.Context, path string, changed func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", path, err)
	}
	defer w.Close()
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("watch %s: %w", path, err)
	}
	dir := filepath.Dir(abs)
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("watch %s: directory %s: %w", path, dir, err)
	}
	// A ConfigMap mount swaps a "..data" symlink; any event in the
	// directory of a symlinked file may change it.
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if filepath.Clean(ev.Name) == abs || filepath.Base(ev.Name) == "..data" {
				changed()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			return fmt.Errorf("watch %s: %w", path, err)
		}
	}
}

// WatchDir calls changed each time an entry of dir whose name passes match
// may have changed (written, created, removed, renamed), and on a ConfigMap
// "..data" swap, until ctx is done. Errors as for Watch.
func WatchDir(ctx context.Context, dir string, match func(name string) bool, changed func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if name := filepath.Base(ev.Name); name == "..data" || match(name) {
				changed()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			return fmt.Errorf("watch %s: %w", dir, err)
		}
	}
}
