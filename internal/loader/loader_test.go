package loader

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/roost-net/roost/bpf"
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

// TestPinnedLayouts pins down the layout of every pinned map: a map whose
// type, key or value size, size or flags change no longer adopts the pin a
// running roost made. Open then starts the maps derived from the policy
// anew (and counters, drops), but refuses conntrack and fragments, whose
// state would be lost: a change to those needs a migration first. The
// layouts up to policy_counters are those of the build deployed before
// per-entry counters (commit f0e98a7), which an upgrade adopts as they are.
func TestPinnedLayouts(t *testing.T) {
	want := map[string]struct {
		typ             ebpf.MapType
		key, value, max uint32
		flags           uint32
	}{
		"conntrack":     {ebpf.LRUHash, 44, 16, 131072, 0},
		"counters":      {ebpf.PerCPUArray, 4, 16, 64, 0},
		"drops":         {ebpf.RingBuf, 0, 0, 262144, 0},
		"endpoints":     {ebpf.Hash, 4, 8, 4096, 1},
		"fragments":     {ebpf.LRUHash, 40, 8, 8192, 0},
		"ipcache_host4": {ebpf.Hash, 4, 8, 262144, 1},
		"ipcache_host6": {ebpf.Hash, 16, 8, 262144, 1},
		"ipcache_lpm4":  {ebpf.LPMTrie, 8, 8, 16384, 1},
		"ipcache_lpm6":  {ebpf.LPMTrie, 20, 8, 16384, 1},
		"policy":        {ebpf.Hash, 8, 8, 262144, 1},
		"verdicts":      {ebpf.Array, 4, 1028, 4096, 0},
		// Added with per-entry counters: 3 verdicts x (packets, bytes).
		"policy_counters": {ebpf.PerCPUArray, 4, 48, 65536, 0},
	}
	spec, err := bpf.LoadPolicy()
	if err != nil {
		t.Fatal(err)
	}
	for name, m := range spec.Maps {
		if !isPinned(name) {
			continue
		}
		w, ok := want[name]
		if !ok {
			t.Errorf("map %s is pinned but not in this test: add its layout", name)
			continue
		}
		delete(want, name)
		if m.Type != w.typ || m.KeySize != w.key || m.ValueSize != w.value || m.MaxEntries != w.max || m.Flags != w.flags {
			t.Errorf("map %s: %v key %d value %d max %d flags %#x; pinned maps have %v key %d value %d max %d flags %#x",
				name, m.Type, m.KeySize, m.ValueSize, m.MaxEntries, m.Flags, w.typ, w.key, w.value, w.max, w.flags)
		}
	}
	for name := range want {
		t.Errorf("map %s is no longer pinned: a loader would remove its pin", name)
	}
}
