package serve

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
)

// ServeUnix serves h on a unix socket at path until ctx ends. The socket is
// created with mode perm (its file permissions are its access control); its
// directory is created 0755 when missing; a stale socket left by a crash is
// replaced, but a path that is not a socket is an error. The socket is
// removed on return.
func ServeUnix(ctx context.Context, path string, perm fs.FileMode, h http.Handler) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return fmt.Errorf("control socket %s: exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("control socket %s: remove stale socket: %w", path, err)
		}
	}
	// The umask makes the socket private from the moment it exists; the
	// chmod then sets perm exactly.
	old := syscall.Umask(0o777 &^ int(perm.Perm()))
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	defer os.Remove(path)
	if err := os.Chmod(path, perm.Perm()); err != nil {
		ln.Close()
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	return serveOn(ctx, ln, path, h)
}
