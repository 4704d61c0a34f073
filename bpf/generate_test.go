package bpf

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roost-net/roost/internal/testenv"
)

// generateCommands returns the commands of bpf.go's //go:generate lines,
// each split as go generate splits it (spaces, and double quotes around one
// argument).
func generateCommands(t *testing.T) [][]string {
	t.Helper()
	src, err := os.ReadFile("bpf.go")
	if err != nil {
		t.Fatal(err)
	}
	var cmds [][]string
	for _, line := range strings.Split(string(src), "\n") {
		rest, ok := strings.CutPrefix(line, "//go:generate ")
		if !ok {
			continue
		}
		var args []string
		for rest = strings.TrimSpace(rest); rest != ""; rest = strings.TrimSpace(rest) {
			if rest[0] == '"' {
				end := strings.IndexByte(rest[1:], '"')
				if end < 0 {
					t.Fatalf("unterminated quote in %q", line)
				}
				args = append(args, rest[1:1+end])
				rest = rest[2+end:]
				continue
			}
			field, after, _ := strings.Cut(rest, " ")
			args, rest = append(args, field), after
		}
		cmds = append(cmds, args)
	}
	if len(cmds) == 0 {
		t.Fatal("bpf.go has no //go:generate line")
	}
	return cmds
}

// TestGeneratedCurrent regenerates the bpf2go output with bpf.go's own
// //go:generate command into a temporary directory and compares it byte for
// byte with the committed files: CI fails when someone changed the C
// without running `go generate ./bpf`. Needs Debian's clang-19 and
// llvm-strip-19, the pinned compiler, whose output this is.
func TestGeneratedCurrent(t *testing.T) {
	testenv.Binary(t, "clang-19")
	testenv.Binary(t, "llvm-strip-19")
	goBin := testenv.Binary(t, "go")

	dir := t.TempDir()
	for _, args := range generateCommands(t) {
		if len(args) < 3 || args[0] != "go" || args[1] != "tool" || args[2] != "bpf2go" {
			t.Fatalf("//go:generate runs %q, want go tool bpf2go", args)
		}
		argv := append([]string{"tool", "bpf2go", "-output-dir", dir}, args[3:]...)
		cmd := exec.Command(goBin, argv...)
		cmd.Env = append(os.Environ(), "GOPACKAGE=bpf", "GOFILE=bpf.go")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(argv, " "), err, out)
		}
	}

	fresh, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(fresh) == 0 {
		t.Fatalf("bpf2go wrote nothing to %s (%v)", dir, err)
	}
	for _, f := range fresh {
		name := filepath.Base(f)
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil {
			t.Errorf("%s is generated but not committed: %v", name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run `go generate ./bpf` (with clang-19) and commit the result", name)
		}
	}
}
