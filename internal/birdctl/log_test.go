package birdctl

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Lines real BIRD 2.0.12 daemons wrote to their log file ("log FILE LIMIT
// BACKUP { remote, warning, error, auth, fatal }") and to stderr, node
// bgp_tor1 in AS 65101 or 4200000101 against an FRR 8.4.4 ToR and a BIRD
// ToR in namespaces.
const (
	// The ToR (FRR, AS 65000) when bird.conf expects AS 65001.
	logErrorFRR = "2026-12-04 01:03:24.691 <RMT> bgp_tor1: Error: Bad peer AS: 65000\n"
	// FRR, told the node is AS 65102: its notification carries the AS
	// it got.
	logReceivedFRR = "2026-12-04 01:03:39.070 <RMT> bgp_tor1: Received: Bad peer AS: 65101\n"
	// 4-byte AS numbers: BIRD prints the AS of the peer's AS4 capability;
	// FRR's notification carries the 2-byte field, AS_TRANS.
	logErrorAS4    = "2026-12-04 01:13:45.238 <RMT> bgp_tor1: Error: Bad peer AS: 4200000000\n"
	logReceivedAS4 = "2026-12-04 01:13:55.186 <RMT> bgp_tor1: Received: Bad peer AS: 23456\n"
	// A BIRD ToR (AS 65000) that expects AS 65102.
	logReceivedBIRD = "2026-12-04 01:14:06.005 <RMT> bgp_tor1: Received: Bad peer AS: 65101\n"
	// What else BIRD logs around them.
	logOther = "2026-12-04 01:03:22.757 <INFO> Graceful restart started\n" +
		"2026-12-04 01:03:22.757 <INFO> Started\n" +
		"2026-12-04 01:14:27.499 <INFO> Restarting protocol bgp_tor1\n"
)

func TestParseBadPeerAS(t *testing.T) {
	tests := []struct {
		name string
		log  string
		want map[string]BadPeerAS
	}{
		{name: "empty", log: "", want: map[string]BadPeerAS{}},
		{name: "no bgp errors", log: logOther, want: map[string]BadPeerAS{}},
		{
			name: "bird refused the peer",
			log:  logOther + logErrorFRR,
			want: map[string]BadPeerAS{"bgp_tor1": {Error: true, ErrorAS: 65000, ErrorAt: "2026-12-04 01:03:24.691"}},
		},
		{
			name: "the peer refused this node",
			log:  logOther + logReceivedFRR,
			want: map[string]BadPeerAS{"bgp_tor1": {Received: true, ReceivedAS: 65101, ReceivedAt: "2026-12-04 01:03:39.070"}},
		},
		{
			name: "4-byte AS numbers",
			log:  logErrorAS4 + logReceivedAS4,
			want: map[string]BadPeerAS{"bgp_tor1": {
				Error: true, ErrorAS: 4200000000, ErrorAt: "2026-12-04 01:13:45.238",
				Received: true, ReceivedAS: 23456, ReceivedAt: "2026-12-04 01:13:55.186",
			}},
		},
		{
			name: "the last line of each direction wins",
			log: logErrorFRR + logReceivedBIRD +
				"2026-12-04 02:00:00.000 <RMT> bgp_tor1: Error: Bad peer AS: 65002\n" + logOther,
			want: map[string]BadPeerAS{"bgp_tor1": {
				Error: true, ErrorAS: 65002, ErrorAt: "2026-12-04 02:00:00.000",
				Received: true, ReceivedAS: 65101, ReceivedAt: "2026-12-04 01:14:06.005",
			}},
		},
		{
			name: "per protocol",
			log:  logErrorFRR + strings.Replace(logErrorAS4, "bgp_tor1", "bgp_tor_2", 1),
			want: map[string]BadPeerAS{
				"bgp_tor1":  {Error: true, ErrorAS: 65000, ErrorAt: "2026-12-04 01:03:24.691"},
				"bgp_tor_2": {Error: true, ErrorAS: 4200000000, ErrorAt: "2026-12-04 01:13:45.238"},
			},
		},
		{
			// BIRD prints data of other lengths in hex, and none at all
			// for a notification without data.
			name: "notification without data or with other data",
			log: "2026-12-04 01:00:00.000 <RMT> bgp_tor1: Received: Bad peer AS\n" +
				"2026-12-04 01:00:01.000 <RMT> bgp_tor2: Received: Bad peer AS: 00fde8ab01\n",
			want: map[string]BadPeerAS{
				"bgp_tor1": {Received: true, ReceivedAt: "2026-12-04 01:00:00.000"},
				"bgp_tor2": {Received: true, ReceivedAt: "2026-12-04 01:00:01.000"},
			},
		},
		{
			name: "last line without newline",
			log:  strings.TrimSuffix(logErrorFRR, "\n"),
			want: map[string]BadPeerAS{"bgp_tor1": {Error: true, ErrorAS: 65000, ErrorAt: "2026-12-04 01:03:24.691"}},
		},
		{
			name: "not bad peer AS, not remote, or garbled",
			log: "2026-12-04 01:00:00.000 <RMT> bgp_tor1: Error: Bad peer ASN: 1\n" +
				"2026-12-04 01:00:00.000 <RMT> bgp_tor1: Error: Bad peer AS 1\n" +
				"2026-12-04 01:00:00.000 <RMT> bgp_tor1: Received: Hold timer expired\n" +
				"2026-12-04 01:00:00.000 <RMT> bgp_tor1: Sent: Bad peer AS: 1\n" +
				"2026-12-04 01:00:00.000 <WARN> bgp_tor1: Error: Bad peer AS: 1\n" +
				"2026-12-04 01:00:00.000 <RMT> bgp tor1: Error: Bad peer AS: 1\n" +
				"2026-12-04 01:00:00.000 <RMT> : Error: Bad peer AS: 1\n" +
				"2026-12-04 01:00:00.000 <RMT> bgp_tor1 Error: Bad peer AS: 1\n" +
				"bgp_tor1: Error: Bad peer AS: 1\n" +
				"\x00\xff<RMT>\n",
			want: map[string]BadPeerAS{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ParseBadPeerAS([]byte(tt.log))); diff != "" {
				t.Errorf("ParseBadPeerAS (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadLogTail(t *testing.T) {
	line := func(n int) string { return strings.Repeat("x", n-1) + "\n" }
	tests := []struct {
		name            string
		file, backup    string // "-" for no such file
		limit           int
		want            string
		backupName      string // "" to pass no backup
		wantErrNotExist bool
	}{
		{name: "small file", file: "a\nb\n", backup: "-", limit: 100, want: "a\nb\n", backupName: "x.old"},
		{name: "tail cuts a line", file: "aaaa\nbb\ncc\n", backup: "-", limit: 7, want: "bb\ncc\n", backupName: "x.old"},
		{name: "tail at a line start", file: "aaaa\nbb\ncc\n", backup: "-", limit: 6, want: "bb\ncc\n", backupName: "x.old"},
		{name: "one byte too many", file: "a\nbb\ncc\n", backup: "-", limit: 7, want: "bb\ncc\n", backupName: "x.old"},
		{name: "one long line", file: line(50), backup: "-", limit: 10, want: "", backupName: "x.old"},
		{name: "unfinished last line", file: "a\nb\nhalf", backup: "-", limit: 100, want: "a\nb\n", backupName: "x.old"},
		{name: "backup before a short file", file: "c\n", backup: "a\nb\n", limit: 100, want: "a\nb\nc\n", backupName: "x.old"},
		{name: "backup's tail only", file: "cc\n", backup: "aaaa\nbb\n", limit: 7, want: "bb\ncc\n", backupName: "x.old"},
		{name: "backup not read for a full file", file: "aaaa\nbb\ncc\n", backup: "zz\n", limit: 6, want: "bb\ncc\n", backupName: "x.old"},
		{name: "no backup given", file: "c\n", backup: "a\n", limit: 100, want: "c\n"},
		{name: "missing file", file: "-", backup: "a\n", limit: 100, wantErrNotExist: true, backupName: "x.old"},
		{name: "empty file", file: "", backup: "-", limit: 100, want: "", backupName: "x.old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path, backup := filepath.Join(dir, "x"), ""
			if tt.file != "-" {
				writeFile(t, path, tt.file)
			}
			if tt.backup != "-" {
				writeFile(t, filepath.Join(dir, "x.old"), tt.backup)
			}
			if tt.backupName != "" {
				backup = filepath.Join(dir, tt.backupName)
			}
			got, err := ReadLogTail(path, backup, tt.limit)
			if tt.wantErrNotExist {
				if !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("err = %v, want one for a missing file", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if len(got) > tt.limit {
				t.Errorf("read %d bytes, more than %d", len(got), tt.limit)
			}
		})
	}
}

// TestReadLogTailNotRegular proves that a FIFO or a directory at the log's
// path is refused at once, and one at the backup's path skipped, not read (a
// FIFO would block).
func TestReadLogTailNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, dir} {
		if _, err := ReadLogTail(path, "", MaxLogTail); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("ReadLogTail(%s) = %v, want an error naming it", path, err)
		}
	}
	// A FIFO as backup is skipped, not read.
	log := filepath.Join(dir, "log")
	writeFile(t, log, "a\n")
	if got, err := ReadLogTail(log, fifo, MaxLogTail); err != nil || string(got) != "a\n" {
		t.Errorf("with a FIFO as backup: %q, %v; want the log file alone", got, err)
	}
	if err := os.Remove(fifo); err != nil {
		t.Fatal(err)
	}
}

// TestReadParseBigLog reads a log larger than MaxLogTail: only its tail,
// which holds the newest line.
func TestReadParseBigLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bird.log")
	old := strings.Replace(logErrorFRR, "65000", "64999", 1)
	var b strings.Builder
	b.WriteString(old)
	for b.Len() < 2*MaxLogTail {
		b.WriteString(logOther)
	}
	b.WriteString(logErrorFRR)
	writeFile(t, path, b.String())
	data, err := ReadLogTail(path, path+".old", MaxLogTail)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > MaxLogTail {
		t.Errorf("read %d bytes, more than %d", len(data), MaxLogTail)
	}
	if got := ParseBadPeerAS(data)["bgp_tor1"]; got.ErrorAS != 65000 {
		t.Errorf("ErrorAS = %d, want 65000 from the newest line", got.ErrorAS)
	}
}

// FuzzParseBadPeerAS feeds the log parser arbitrary bytes, seeded with the
// lines real BIRDs wrote. It must not panic, must find only protocols that
// have a "<RMT> NAME: Error|Received: Bad peer AS" line, and must find the
// same in the log read line by line (it keeps no state across lines but the
// last finding of each direction).
func FuzzParseBadPeerAS(f *testing.F) {
	for _, s := range []string{
		logErrorFRR, logReceivedFRR, logErrorAS4, logReceivedAS4, logReceivedBIRD, logOther,
		logOther + logErrorFRR + logReceivedBIRD,
		"2026-12-04 01:00:00.000 <RMT> bgp_tor1: Received: Bad peer AS\n",
		"x <RMT> a: Error: Bad peer AS: 4294967296\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := ParseBadPeerAS(data)
		for proto, b := range got {
			if proto == "" || strings.ContainsAny(proto, " \t\n") {
				t.Errorf("protocol name %q", proto)
			}
			if !b.Error && !b.Received {
				t.Errorf("%s: an empty finding %+v", proto, b)
			}
			if !strings.Contains(string(data), " <RMT> "+proto+": ") {
				t.Errorf("%s: no line of it in the log", proto)
			}
		}
		byLine := map[string]BadPeerAS{}
		for _, line := range strings.SplitAfter(string(data), "\n") {
			for proto, b := range ParseBadPeerAS([]byte(line)) {
				old := byLine[proto]
				if b.Error {
					old.Error, old.ErrorAS, old.ErrorAt = true, b.ErrorAS, b.ErrorAt
				}
				if b.Received {
					old.Received, old.ReceivedAS, old.ReceivedAt = true, b.ReceivedAS, b.ReceivedAt
				}
				byLine[proto] = old
			}
		}
		if diff := cmp.Diff(byLine, got); diff != "" {
			t.Errorf("line by line (-) and whole (+) differ:\n%s", diff)
		}
	})
}
