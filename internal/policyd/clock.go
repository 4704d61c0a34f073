package policyd

import (
	"time"

	"golang.org/x/sys/unix"
)

// monotonicNow reads CLOCK_MONOTONIC, the clock of drop events.
func monotonicNow() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
