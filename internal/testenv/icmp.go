package testenv

import (
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Ping sends one ICMP echo request from namespace ns to ip with ping(8) and
// waits at most timeout for the reply. It returns ErrDropped when none
// comes, and another error when ping fails otherwise (no route, say).
func Ping(ns, ip string, timeout time.Duration) error {
	wait := strconv.FormatFloat(timeout.Seconds(), 'f', 3, 64)
	argv := InNS(ns, "ping", "-n", "-q", "-c1", "-W", wait, ip)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		// ping's status when no reply came.
		return ErrDropped
	default:
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, out)
	}
}
