package testenv

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Bird is a real BIRD 2 daemon started for one test, in the foreground, with
// its config file, control socket and log in a temporary directory.
type Bird struct {
	tb     testing.TB
	NS     string // network namespace, "" for the test's own
	Dir    string // holds bird.conf, bird.ctl, bird.log
	Config string // path of the config file BIRD was started with
	Socket string // path of the control socket
	Log    string // path of BIRD's stderr
	// User, when set before Start, runs BIRD as that user and its group
	// ("-u User -g User"), as Debian's bird.service does with "bird".
	User string
	cmd  *exec.Cmd
}

// MinimalConfig is a config BIRD accepts and that touches nothing.
const MinimalConfig = "router id 192.0.2.1;\nprotocol device {}\n"

// StartBird writes conf to a fresh directory and starts bird in namespace ns
// ("" for none) with "-f -R -c <dir>/bird.conf -s <dir>/bird.ctl". It waits
// for the control socket to answer and stops BIRD when the test ends. BIRD
// runs as the test's user: reading a kernel table needs nothing more, and
// roost's configs have no kernel export.
func StartBird(tb testing.TB, ns, conf string) *Bird {
	tb.Helper()
	b := NewBird(tb, ns, conf)
	b.Start("")
	return b
}

// NewBird is StartBird without the start: set User, then call Start.
func NewBird(tb testing.TB, ns, conf string) *Bird {
	tb.Helper()
	Binary(tb, "bird")
	dir := tb.TempDir()
	// The socket path must fit in sun_path (108 bytes); test temp dirs can
	// be long, so keep the socket in a short directory of its own.
	sockDir, err := os.MkdirTemp("", "rb")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(sockDir) })
	b := &Bird{
		tb: tb, NS: ns, Dir: dir, Config: filepath.Join(dir, "bird.conf"),
		Socket: filepath.Join(sockDir, "bird.ctl"), Log: filepath.Join(dir, "bird.log"),
	}
	if err := os.WriteFile(b.Config, []byte(conf), 0o640); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(b.Stop)
	return b
}

// Start (re)starts BIRD with the files it was first started with, and waits
// for the socket to answer.
func (b *Bird) Start(bin string) {
	b.tb.Helper()
	if bin == "" {
		bin = Binary(b.tb, "bird")
	}
	_ = os.Remove(b.Socket)
	log, err := os.OpenFile(b.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		b.tb.Fatal(err)
	}
	args := []string{bin, "-f", "-R", "-c", b.Config, "-s", b.Socket}
	if b.User != "" {
		args = append(args, "-u", b.User, "-g", b.User)
	}
	argv := InNS(b.NS, args...)
	b.cmd = exec.Command(argv[0], argv[1:]...)
	b.cmd.Stdout, b.cmd.Stderr = log, log
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		b.tb.Fatalf("start bird: %v", err)
	}
	log.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", b.Socket); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, _ := os.ReadFile(b.Log)
	b.tb.Fatalf("bird did not open %s within 10s; log:\n%s", b.Socket, out)
}

// Kill stops BIRD with SIGKILL, the way a crash would, and waits for it.
func (b *Bird) Kill() {
	if b.cmd == nil || b.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	_ = b.cmd.Wait()
	b.cmd = nil
}

// StopGraceful stops BIRD the way roost's BIRD image does when its
// container stops (compose/bird/bird-entrypoint): "birdc graceful restart",
// after which BIRD closes its BGP sessions without a NOTIFICATION, so that
// peers acting as graceful-restart helpers keep its routes as stale, and
// exits. It waits up to timeout for the process to end; when birdc fails
// or BIRD outlives timeout it kills BIRD and fails the test. Start brings
// BIRD back in graceful-restart recovery (-R), as the image does.
func (b *Bird) StopGraceful(timeout time.Duration) {
	b.tb.Helper()
	if b.cmd == nil || b.cmd.Process == nil {
		b.tb.Fatal("stop bird gracefully: bird is not running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, Binary(b.tb, "birdc"), "-s", b.Socket, "graceful", "restart").CombinedOutput()
	if err != nil {
		b.Kill()
		b.tb.Fatalf("stop bird gracefully: birdc -s %s graceful restart: %v: %s", b.Socket, err, bytes.TrimSpace(out))
	}
	exited := make(chan struct{})
	go func() {
		_ = b.cmd.Wait() // BIRD's exit status after a graceful restart says nothing more
		close(exited)
	}()
	select {
	case <-exited:
		b.cmd = nil
	case <-ctx.Done():
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		b.cmd = nil
		b.tb.Fatalf("stop bird gracefully: bird still running %v after birdc said %q; killed it; log:\n%s",
			timeout, bytes.TrimSpace(out), b.LogText())
	}
}

// Signal sends sig to BIRD (e.g. SIGSTOP and SIGCONT, to make it stop
// answering and then go on).
func (b *Bird) Signal(sig syscall.Signal) {
	b.tb.Helper()
	if b.cmd == nil || b.cmd.Process == nil {
		b.tb.Fatal("bird is not running")
	}
	if err := syscall.Kill(-b.cmd.Process.Pid, sig); err != nil {
		b.tb.Fatalf("signal bird: %v", err)
	}
}

// Stop ends BIRD; it is registered as cleanup by StartBird.
func (b *Bird) Stop() { b.Kill() }

// LogText returns what BIRD has written to stderr so far.
func (b *Bird) LogText() string {
	out, _ := os.ReadFile(b.Log)
	return string(bytes.TrimSpace(out))
}
