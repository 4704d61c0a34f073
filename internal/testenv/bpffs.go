package testenv

import (
	"os/exec"
	"testing"
)

// BPFFS mounts a private BPF file system on a temporary directory for the
// test, so that pins never touch the host's /sys/fs/bpf, and unmounts it at
// cleanup.
func BPFFS(tb testing.TB) string {
	tb.Helper()
	Privileged(tb)
	dir := tb.TempDir()
	Run(tb, "mount", "-t", "bpf", "bpf", dir)
	tb.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	return dir
}
