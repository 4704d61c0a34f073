// Package testenv holds what roost's tests share: the rule for privileged
// tests, lookups of the real daemons they drive, network namespaces with
// test-only names, and a real BIRD started for one test.
//
// The rule: a privileged test calls Privileged first. Without root it skips,
// unless ROOST_REQUIRE_PRIVILEGED=1 (set by CI), in which case it fails, so a
// CI run can never pass by skipping. Binary reports the same way for a daemon
// that is not installed.
package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireEnv is the environment variable that turns skips into failures.
const RequireEnv = "ROOST_REQUIRE_PRIVILEGED"

// Required reports whether skips must be failures (ROOST_REQUIRE_PRIVILEGED=1).
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// skip skips the test, or fails it when Required.
func skip(tb testing.TB, why string) {
	tb.Helper()
	if Required() {
		tb.Fatalf("%s, and %s=1 forbids skipping", why, RequireEnv)
	}
	tb.Skip(why)
}

// Privileged skips the test unless it runs as root (see the package doc).
func Privileged(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		skip(tb, "needs root")
	}
}

// Binary returns the path of the named program, skipping the test when it is
// not installed (failing under ROOST_REQUIRE_PRIVILEGED=1). scripts/deps.sh
// installs every program the tests use.
func Binary(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		// Debian puts some daemons outside PATH for non-login shells.
		for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/lib/frr"} {
			if st, err := os.Stat(dir + "/" + name); err == nil && !st.IsDir() {
				return dir + "/" + name
			}
		}
		skip(tb, name+" is not installed (run scripts/deps.sh)")
	}
	return p
}

// Name returns a short unique name with the given prefix, for namespaces,
// interfaces and files of one test. Test names start with "rt" so that they
// can never collide with the lab's (tor1, node1, ...). Interface names must
// stay under 16 bytes: keep prefix at most 6 bytes.
func Name(prefix string) string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return "rt" + prefix + hex.EncodeToString(b[:])
}

// Run runs a command and fails the test with its output when it fails.
func Run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
