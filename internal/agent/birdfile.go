package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/roost-net/roost/internal/birdconf"
	"github.com/roost-net/roost/internal/config"
)

// configMode is bird.conf's mode: it holds the peers' passwords, so only its
// owner (root) and its group (BIRD's) may read it.
const configMode = 0o640

// writeTemp writes data to a new temp file beside path, mode configMode,
// group b's config group, synced to disk, and returns its name.
func writeTemp(path string, data []byte, b config.Bird) (string, error) {
	gid, err := configGID(b)
	if err != nil {
		return "", fmt.Errorf("write bird config: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".roost-*")
	if err != nil {
		return "", fmt.Errorf("write bird config: %w", err)
	}
	name := tmp.Name()
	fail := func(err error) (string, error) {
		tmp.Close()
		os.Remove(name)
		return "", fmt.Errorf("write bird config %s: %w", name, err)
	}
	if err := tmp.Chmod(configMode); err != nil {
		return fail(err)
	}
	if gid >= 0 {
		if err := tmp.Chown(-1, gid); err != nil {
			return fail(fmt.Errorf("give it to group %d (bird.configGroup): %w", gid, err))
		}
	}
	if _, err := tmp.Write(data); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(name)
		return "", fmt.Errorf("write bird config %s: %w", name, err)
	}
	return name, nil
}

// renameSynced renames tmp to path and syncs the directory, so that after a
// crash path is either the old file or the new one, whole.
func renameSynced(tmp, path string) error {
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("put bird config in place: %w", err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("sync %s: %w", filepath.Dir(path), err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", filepath.Dir(path), err)
	}
	return nil
}

// configGID returns the group bird.conf is given: bird.configGroup (a name
// or a number) when set; else the group of BIRD's socket directory when that
// is not root's (Debian's /run/bird is bird:bird); else group "bird" when it
// exists; else -1, leaving the file's group alone.
func configGID(b config.Bird) (int, error) {
	if g := b.ConfigGroup; g != "" {
		if n, err := strconv.Atoi(g); err == nil && n >= 0 {
			return n, nil
		}
		grp, err := user.LookupGroup(g)
		if err != nil {
			return 0, fmt.Errorf("bird.configGroup %q: %w", g, err)
		}
		return strconv.Atoi(grp.Gid)
	}
	if fi, err := os.Stat(filepath.Dir(b.Socket)); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Gid != 0 {
			return int(st.Gid), nil
		}
	}
	if grp, err := user.LookupGroup("bird"); err == nil {
		return strconv.Atoi(grp.Gid)
	}
	return -1, nil
}

func inodeOf(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

func protocolOf(p config.Peer) string { return birdconf.ProtocolName(p.Name) }

// changedFor reports whether going from config old to new could have
// brought down the sessions of protocols: their protocol bgp blocks differ,
// or something outside every block and the static routes does (the router
// id, the filter). With no old config, everything changed.
func changedFor(old, new []byte, protocols []string) bool {
	if old == nil {
		return true
	}
	oldRest, oldBlocks := splitConfig(old)
	newRest, newBlocks := splitConfig(new)
	if oldRest != newRest {
		return true
	}
	for _, p := range protocols {
		if oldBlocks[p] != newBlocks[p] {
			return true
		}
	}
	return false
}

// splitConfig splits a rendered config into its protocol bgp blocks, by
// protocol name, and the rest without the static routes.
func splitConfig(conf []byte) (string, map[string]string) {
	conf = withoutRoutes(conf)
	var rest strings.Builder
	blocks := map[string]string{}
	var cur *strings.Builder
	var name string
	sc := bufio.NewScanner(bytes.NewReader(conf))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case cur != nil:
			cur.WriteString(line + "\n")
			if line == "}" {
				blocks[name] = cur.String()
				cur = nil
			}
		case strings.HasPrefix(line, "protocol bgp "):
			name = strings.TrimSuffix(strings.TrimPrefix(line, "protocol bgp "), " {")
			cur = &strings.Builder{}
			cur.WriteString(line + "\n")
		case strings.HasPrefix(line, "\troute "):
		default:
			rest.WriteString(line + "\n")
		}
	}
	return rest.String(), blocks
}

// withoutRoutes returns conf without its runs of static route lines
// ("\troute …"), cut out whole rather than line by line: at 10,000 prefixes
// they are nearly all of it.
func withoutRoutes(conf []byte) []byte {
	const route, end = "\n\troute ", "\n}\n"
	var out []byte
	for {
		i := bytes.Index(conf, []byte(route))
		if i < 0 {
			return append(out, conf...)
		}
		j := bytes.Index(conf[i:], []byte(end))
		if j < 0 {
			return append(out, conf...)
		}
		out = append(out, conf[:i]...)
		conf = conf[i+j:]
	}
}
