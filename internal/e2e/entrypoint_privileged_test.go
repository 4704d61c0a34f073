package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/testenv"
)

// TestPrivilegedBirdEntrypointMovesBrokenConfig runs the BIRD image's
// entrypoint as the container would, on a bird.conf that does not parse:
// the file is moved aside and BIRD starts from the bootstrap config, so the
// agent (which has no bird binary in its image to repair it) can configure
// it again.
func TestPrivilegedBirdEntrypointMovesBrokenConfig(t *testing.T) {
	testenv.Privileged(t)
	testenv.Binary(t, "bird")
	ns := testenv.NetNS(t, "bird")
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "rbe")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	conf, sock := filepath.Join(dir, "bird.conf"), filepath.Join(sockDir, "bird.ctl")
	if err := os.WriteFile(conf, []byte("protocol bgp broken {\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	entry, err := filepath.Abs("../../compose/bird/bird-entrypoint")
	if err != nil {
		t.Fatal(err)
	}
	argv := testenv.InNS(ns, entry)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "BIRD_CONFIG="+conf, "BIRD_SOCKET="+sock, "BIRD_ROUTER_ID=192.0.2.1", "BIRD_STOP=shutdown")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("BIRD did not start from the entrypoint; output:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b, err := os.ReadFile(conf + ".broken"); err != nil || !strings.Contains(string(b), "broken") {
		t.Errorf("broken config not kept aside: %v", err)
	}
	if b, _ := os.ReadFile(conf); !strings.Contains(string(b), "Bootstrap config") {
		t.Errorf("bird.conf is not the bootstrap config:\n%s", b)
	}
	if !strings.Contains(out.String(), "does not parse") {
		t.Errorf("entrypoint did not say why:\n%s", out.String())
	}
}
