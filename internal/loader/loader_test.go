package loader

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// TestOpenNotBPFFS points the loader at a directory of an ordinary
// filesystem: the error says so and how to mount one.
func TestOpenNotBPFFS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "roost")
	l, err := Open(Options{BPFFS: dir})
	if err == nil {
		l.Close()
		t.Fatal("Open succeeded on a directory that is not on a BPF filesystem")
	}
	if !errors.Is(err, ErrNotBPFFS) {
		t.Errorf("error %v does not wrap ErrNotBPFFS", err)
	}
	for _, want := range []string{dir, "mount -t bpf bpf " + filepath.Dir(dir)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestOpenNoDirectory(t *testing.T) {
	if _, err := Open(Options{}); err == nil {
		t.Error("Open without BPFFS succeeded")
	}
}

func TestMountPoint(t *testing.T) {
	tests := []struct{ dir, want string }{
		{"/sys/fs/bpf/roost", "/sys/fs/bpf"},
		{"/sys/fs/bpf/a/b", "/sys/fs/bpf"},
		{"/sys/fs/bpfx/roost", "/sys/fs/bpfx"},
		{"/tmp/x/roost", "/tmp/x"},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			if got := mountPoint(tt.dir); got != tt.want {
				t.Errorf("mountPoint(%q) = %q, want %q", tt.dir, got, tt.want)
			}
		})
	}
}

// TestVerifierErrorInFull checks that a verifier rejection is reported
// with every line of the verifier's log, and still unwraps to it.
func TestVerifierErrorInFull(t *testing.T) {
	var log []string
	for i := range 40 {
		log = append(log, fmt.Sprintf("%d: (b7) r0 = %d", i, i))
	}
	log = append(log, "R0 !read_ok", "processed 41 insns (limit 1000000)")
	ve := &ebpf.VerifierError{Cause: errors.New("permission denied"), Log: log}
	err := error(&verifierError{err: fmt.Errorf("program to_endpoint: load program: %w", ve), ve: ve})

	msg := err.Error()
	for _, line := range log {
		if !strings.Contains(msg, line) {
			t.Errorf("message lacks verifier line %q", line)
		}
	}
	if !strings.Contains(msg, "to_endpoint") {
		t.Errorf("message %q does not name the program", msg)
	}
	var got *ebpf.VerifierError
	if !errors.As(err, &got) || got != ve {
		t.Error("errors.As does not find the verifier error")
	}
}

// TestCheckFeatures checks that a missing kernel feature is named, and a
// probe that fails otherwise says what the loader needs.
func TestCheckFeatures(t *testing.T) {
	missing := func() error { return fmt.Errorf("ring buffer: %w", ebpf.ErrNotSupported) }
	denied := func() error { return errors.New("operation not permitted") }
	ok := func() error { return nil }
	err := checkFeatures([]feature{{"ring buffer maps (Linux 5.8)", missing}, {"present", ok}, {"LPM trie maps", denied}})
	if !errors.Is(err, ErrKernelFeature) || !errors.Is(err, ebpf.ErrNotSupported) {
		t.Errorf("error %v does not wrap ErrKernelFeature and ebpf.ErrNotSupported", err)
	}
	for _, want := range []string{"ring buffer maps (Linux 5.8)", "LPM trie maps", "CAP_BPF", "operation not permitted"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "present") {
		t.Errorf("error %q names a feature that is there", err)
	}
	if err := checkFeatures([]feature{{"present", ok}}); err != nil {
		t.Errorf("all present: %v", err)
	}
}
