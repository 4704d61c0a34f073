package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// prepareBPFFS checks that dir is on (or, missing, would be created on) a
// mounted BPF filesystem, and creates it with its maps and links
// subdirectories.
func prepareBPFFS(dir string) error {
	probe := dir
	for {
		if _, err := os.Stat(probe); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("pin directory %s: %w", dir, err)
		}
		parent := filepath.Dir(probe)
		if parent == probe {
			break
		}
		probe = parent
	}
	var st unix.Statfs_t
	if err := unix.Statfs(probe, &st); err != nil {
		return fmt.Errorf("pin directory %s: statfs %s: %w", dir, probe, err)
	}
	if uint32(st.Type) != unix.BPF_FS_MAGIC {
		return fmt.Errorf("pin directory %s: %s is %w (filesystem magic %#x, want %#x): "+
			"mount one with `mount -t bpf bpf %s`, or in a container bind-mount the host's /sys/fs/bpf "+
			"with rshared propagation", dir, probe, ErrNotBPFFS, uint32(st.Type), uint32(unix.BPF_FS_MAGIC), mountPoint(dir))
	}
	for _, d := range []string{dir, filepath.Join(dir, "maps"), filepath.Join(dir, "links")} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("pin directory: %w", err)
		}
	}
	return nil
}

// mountPoint suggests where to mount a BPF filesystem for dir: the
// conventional /sys/fs/bpf when dir is below it, else dir's parent.
func mountPoint(dir string) string {
	if rel, err := filepath.Rel("/sys/fs/bpf", dir); err == nil && rel != ".." && !filepath.IsAbs(rel) && (len(rel) < 3 || rel[:3] != "../") {
		return "/sys/fs/bpf"
	}
	return filepath.Dir(dir)
}

// lockDir takes an exclusive, non-blocking flock on dir, so that two
// loaders never work on the same pins. Closing the file releases it, and so
// does the process's exit.
func lockDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock pin directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock pin directory %s: %w", dir, ErrBusy)
		}
		return nil, fmt.Errorf("lock pin directory %s: %w", dir, err)
	}
	return f, nil
}
