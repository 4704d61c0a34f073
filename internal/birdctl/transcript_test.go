package birdctl

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/parsed")

// transcriptFiles returns the recorded replies in testdata/replies (see
// TestPrivilegedRecordTranscripts), failing when there are too few for the
// tests that use them to mean anything.
func transcriptFiles(tb testing.TB) []string {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "replies", "*.reply"))
	if err != nil {
		tb.Fatal(err)
	}
	if len(files) < 40 {
		tb.Fatalf("found %d transcripts in testdata/replies, want at least 40", len(files))
	}
	return files
}

// bigTranscript returns the recorded reply to "show route" for a table of
// 10,000 static routes.
func bigTranscript(tb testing.TB) []byte {
	tb.Helper()
	f, err := os.Open(filepath.Join("testdata", "replies", "show-route-big.reply.gz"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestTranscripts frames every recorded reply of a real BIRD, parses it with
// the parser its request calls for, and compares the result with
// testdata/parsed/NAME.json (-update rewrites them).
func TestTranscripts(t *testing.T) {
	for _, file := range transcriptFiles(t) {
		name := strings.TrimSuffix(filepath.Base(file), ".reply")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var async []string
			br := bufio.NewReader(bytes.NewReader(raw))
			rep, err := readReply(br, func(s string) { async = append(async, s) })
			if err != nil {
				t.Fatal(err)
			}
			if n := br.Buffered(); n != 0 {
				t.Errorf("reply ended %d bytes before the end of the transcript", n)
			}
			got, err := json.MarshalIndent(transcriptView(name, rep, async), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", "parsed", name+".json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s differs (-want +got):\n%s", golden, diff)
			}
		})
	}
}

// transcript is what the golden files hold for one recorded reply.
type transcript struct {
	Async   []string `json:",omitempty"`
	Lines   []Line
	Error   string   `json:",omitempty"`
	ErrorIs []string `json:",omitempty"`
	Parsed  any      `json:",omitempty"`
}

// transcriptView frames, and parses by the transcript's name, one reply.
func transcriptView(name string, rep *Reply, async []string) transcript {
	v := transcript{Async: async, Lines: rep.Lines}
	parsed, err := parseByName(name, rep)
	if err == nil {
		v.Parsed = parsed
		return v
	}
	v.Error = err.Error()
	for _, s := range []struct {
		name string
		err  error
	}{
		{"ErrNotFound", ErrNotFound}, {"ErrConfig", ErrConfig}, {"ErrAccessDenied", ErrAccessDenied},
		{"ErrNoTables", ErrNoTables}, {"ErrNothingToDo", ErrNothingToDo}, {"ErrShuttingDown", ErrShuttingDown},
	} {
		if errors.Is(err, s.err) {
			v.ErrorIs = append(v.ErrorIs, s.name)
		}
	}
	return v
}

// parseByName runs the parser that the request behind transcript name
// needs, as the typed calls do: BIRD errors first, then the parser.
func parseByName(name string, rep *Reply) (any, error) {
	if err := replyError(name, rep); err != nil {
		return nil, err
	}
	switch {
	case strings.HasPrefix(name, "show-status"), name == "async-show-status":
		s, err := parseStatus(rep)
		return statusView(s), err
	case strings.HasPrefix(name, "show-protocols"):
		return parseProtocols(rep)
	case strings.HasPrefix(name, "show-route-count"):
		return parseRouteCount(rep)
	case strings.HasPrefix(name, "show-route"):
		return parseRoutes(rep)
	case strings.HasPrefix(name, "configure-status"):
		return parseConfigStatus(rep)
	case strings.HasPrefix(name, "configure-check"):
		return "ok", expect(name, rep, CodeConfigOK)
	case strings.HasPrefix(name, "configure-confirm"):
		return "ok", parseConfirm(rep)
	case strings.HasPrefix(name, "configure-undo"):
		return parseUndo(rep)
	case strings.HasPrefix(name, "configure"):
		return parseConfigure(name, rep)
	case name == "restrict":
		return "ok", expect(name, rep, CodeRestricted)
	}
	return nil, nil
}

// statusView is Status with its times as the wall clock BIRD printed, so
// that golden files do not depend on the machine's time zone.
func statusView(s Status) any {
	const layout = "2006-01-02 15:04:05.000"
	type view struct {
		Status
		ServerTime, LastReboot, LastReconfig string
	}
	return view{s, s.ServerTime.Format(layout), s.LastReboot.Format(layout), s.LastReconfig.Format(layout)}
}

// TestBigTranscript parses the recorded 10,000-route reply and checks it
// against the count BIRD gave for the same table.
func TestBigTranscript(t *testing.T) {
	rep, err := readReply(bufio.NewReader(bytes.NewReader(bigTranscript(t))), nil)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := parseRoutes(rep)
	if err != nil {
		t.Fatal(err)
	}
	countRaw, err := os.ReadFile(filepath.Join("testdata", "replies", "show-route-count-big.reply"))
	if err != nil {
		t.Fatal(err)
	}
	countRep, err := readReply(bufio.NewReader(bytes.NewReader(countRaw)), nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := parseRouteCount(countRep)
	if err != nil {
		t.Fatal(err)
	}
	if want != 10000 || len(routes) != want {
		t.Fatalf("parsed %d routes, count says %d, want 10000 both", len(routes), want)
	}
	seen := map[string]bool{}
	for _, r := range routes {
		if r.Table != "big4" || r.Dest != "blackhole" || r.Protocol != "big" || !r.Primary ||
			r.Preference != 200 || !r.Prefix.IsValid() || r.Prefix.Bits() != 32 || seen[r.Net] {
			t.Fatalf("route %+v: want a unique primary /32 blackhole of big in big4, preference 200", r)
		}
		seen[r.Net] = true
	}
}

// TestStatusTimes checks that show status times are read in the local time
// zone, as BIRD prints them.
func TestStatusTimes(t *testing.T) {
	rep := &Reply{Code: CodeStatus, Text: "Daemon is up and running", Lines: []Line{
		{CodeVersion, "BIRD 2.0.12"},
		{CodeStatusDetail, "Router ID is 10.99.0.1"},
		{CodeStatusDetail, "Current server time is 2026-11-25 19:52:25.060"},
		{CodeStatusDetail, "Last reboot on 2026-11-25 19:52:18"},
		{CodeStatusDetail, "Last reconfiguration on 2026-11-25 19:52:22.929123"},
		{CodeStatus, "Daemon is up and running"},
	}}
	s, err := parseStatus(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		got  time.Time
		want time.Time
	}{
		{"server time", s.ServerTime, time.Date(2026, 11, 25, 19, 52, 25, 60e6, time.Local)},
		{"last reboot", s.LastReboot, time.Date(2026, 11, 25, 19, 52, 18, 0, time.Local)},
		{"last reconfig", s.LastReconfig, time.Date(2026, 11, 25, 19, 52, 22, 929123e3, time.Local)},
	} {
		if !c.got.Equal(c.want) || c.got.Location() != time.Local {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	rep.Lines[2].Text = "Current server time is 25-11-2026 19:52:25"
	if _, err := parseStatus(rep); err == nil || !strings.Contains(err.Error(), "server time") {
		t.Errorf("day-first time: err = %v, want an error naming server time", err)
	}
}
