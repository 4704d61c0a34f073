package birdctl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
)

// BIRD tells the AS number a peer sent in its OPEN message only in its log:
// "show protocols all" says "BGP Error: Bad peer AS" and the AS BIRD
// expected, never the AS it got. ReadLogTail and ParseBadPeerAS read it from
// the log file BIRD writes (birdconf renders its "log" statement), whose
// lines BIRD 2.0.12 writes as
//
//	2026-12-04 01:03:24.691 <RMT> bgp_tor1: Error: Bad peer AS: 65000
//
// (its default "timeformat log", "%F %T.%3f", then the message class).

// MaxLogTail is how much of BIRD's log file roostctl reads: the newest lines
// of a file BIRD rotates at about 1 MB, hundreds of connection attempts.
const MaxLogTail = 256 << 10

// ReadLogTail returns up to limit bytes from the end of BIRD's log: the end
// of the file at path and, when that holds fewer than limit bytes, the end of
// backup (the file BIRD renamed the log to when it reached its size limit;
// "" for none) before it. The result holds whole lines only. It reads
// regular files only, never more than limit bytes in all, and never blocks
// on a file. A path that is missing, cannot be read or is not a regular file
// (a FIFO, a directory) is an error (errors.Is(err, fs.ErrNotExist) for a
// missing file); such a backup is skipped.
func ReadLogTail(path, backup string, limit int) ([]byte, error) {
	data, size, err := readTail(path, limit)
	if err != nil {
		return nil, err
	}
	if backup == "" || size >= int64(limit) {
		return data, nil
	}
	// The log file holds less than limit bytes: the lines before it are
	// at the end of the backup, if BIRD has rotated the log already. A
	// backup that cannot be read only takes older lines away.
	older, _, err := readTail(backup, limit-len(data))
	if err != nil {
		return data, nil
	}
	return append(older, data...), nil
}

// readTail returns whole lines from the last limit bytes of the regular
// file at path, and the file's size.
func readTail(path string, limit int) ([]byte, int64, error) {
	// O_NONBLOCK: opening a FIFO does not wait for a writer (it is then
	// refused as not a regular file).
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, &os.PathError{Op: "read", Path: path, Err: errors.New("not a regular file")}
	}
	size := fi.Size()
	start := max(0, size-int64(limit))
	cut := start > 0
	if cut {
		// Also read the byte before start, to know whether start
		// begins a line.
		start--
	}
	// The file may grow while it is read: read no more than it held.
	buf := make([]byte, size-start)
	n, err := f.ReadAt(buf, start)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, fmt.Errorf("read %s: %w", path, err)
	}
	buf = buf[:n]
	if cut {
		// Drop the line cut at start: up to the first newline, which
		// is the byte read before start when start begins a line.
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		} else {
			buf = buf[:0]
		}
	}
	// Drop a last line BIRD is still writing.
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		buf = buf[:i+1]
	} else {
		buf = buf[:0]
	}
	return buf, size, nil
}

// BadPeerAS is what BIRD's log last said about one BGP protocol's sessions
// refused over an AS number, in each direction.
type BadPeerAS struct {
	// Error is set when BIRD refused the peer's OPEN message because its AS
	// number is not the one configured ("bgp_tor1: Error: Bad peer AS:
	// 65000"; "show protocols all" then says "BGP Error: Bad peer AS").
	// ErrorAS is the AS number the peer sent, ErrorAt the line's time as
	// BIRD wrote it.
	Error   bool
	ErrorAS uint32
	ErrorAt string

	// Received is set when the peer refused this node's OPEN with a Bad
	// Peer AS notification ("bgp_tor1: Received: Bad peer AS: 65101";
	// "show protocols all" then says "Received: Bad peer AS"). ReceivedAS
	// is the number the notification carried, 0 when it carried none (FRR
	// sends the AS it received, this node's); ReceivedAt is the line's
	// time.
	Received   bool
	ReceivedAS uint32
	ReceivedAt string
}

// rmt is what separates a log line's time from a message of class remote,
// which BGP errors are.
var rmt = []byte(" <RMT> ")

// ParseBadPeerAS returns, for each BIRD protocol that log (BIRD's log file,
// or its tail) has a "Bad peer AS" line for, what the last such lines of each
// direction say. Other lines, and lines cut or garbled, are skipped. The
// number after "Bad peer AS: " is read as a decimal AS number, as BIRD prints
// the 2 or 4 bytes of data its notification carries; other data (printed in
// hex) gives 0.
func ParseBadPeerAS(log []byte) map[string]BadPeerAS {
	out := map[string]BadPeerAS{}
	for len(log) > 0 {
		var line []byte
		line, log, _ = bytes.Cut(log, []byte{'\n'})
		at, msg, ok := bytes.Cut(line, rmt)
		if !ok {
			continue
		}
		proto, msg, ok := bytes.Cut(msg, []byte(": "))
		if !ok || len(proto) == 0 || bytes.ContainsAny(proto, " \t") {
			continue
		}
		dir, msg, ok := bytes.Cut(msg, []byte(": "))
		if !ok {
			continue
		}
		as, ok := badPeerAS(msg)
		if !ok {
			continue
		}
		b := out[string(proto)]
		switch string(dir) {
		case "Error":
			b.Error, b.ErrorAS, b.ErrorAt = true, as, string(at)
		case "Received":
			b.Received, b.ReceivedAS, b.ReceivedAt = true, as, string(at)
		default:
			continue
		}
		out[string(proto)] = b
	}
	return out
}

// badPeerAS reads the message after "Error: " or "Received: ": "Bad peer
// AS", then ": " and the notification's data, if any.
func badPeerAS(msg []byte) (uint32, bool) {
	rest, ok := bytes.CutPrefix(msg, []byte("Bad peer AS"))
	if !ok {
		return 0, false
	}
	if len(rest) == 0 {
		return 0, true
	}
	data, ok := bytes.CutPrefix(rest, []byte(": "))
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(string(data), 10, 32)
	if err != nil {
		return 0, true // data BIRD printed in hex
	}
	return uint32(n), true
}
