package birdctl

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
)

// FuzzReadReply feeds the framer arbitrary bytes, seeded with every reply
// recorded from a real BIRD. It checks that readReply never panics, agrees
// with a line-by-line model of the framing rules, consumes exactly the bytes
// of one reply (up to and including the first final line), reports the
// final code, gives the same result however the bytes arrive, and that a
// reply written back out frames to the same lines. The typed parsers run on
// every framed reply and must not panic either.
func FuzzReadReply(f *testing.F) {
	for _, file := range transcriptFiles(f) {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"1002-a\n+log\n b\n0000 \n+after\n",
		" orphan\n0000 \n",
		"0000\n",
		"1007-\n \n0000 \n",
		"0003 Reconfigured\n0000 \n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want, wantAsync, wantUsed, wantOK := modelReply(data)

		var async []string
		src := bytes.NewReader(data)
		br := bufio.NewReaderSize(src, 16)
		rep, err := readReply(br, func(s string) { async = append(async, s) })
		if (err == nil) != wantOK {
			t.Fatalf("readReply err = %v, model says ok = %v", err, wantOK)
		}
		if err != nil {
			return
		}
		used := len(data) - src.Len() - br.Buffered()
		if used != wantUsed {
			t.Fatalf("consumed %d bytes, want %d (through the first final line)", used, wantUsed)
		}
		if diff := cmp.Diff(want, rep); diff != "" {
			t.Fatalf("reply differs from model (-model +got):\n%s", diff)
		}
		if diff := cmp.Diff(wantAsync, async); diff != "" {
			t.Fatalf("async lines differ from model (-model +got):\n%s", diff)
		}
		last := rep.Lines[len(rep.Lines)-1]
		if rep.Code != last.Code || rep.Text != last.Text {
			t.Fatalf("reply code %d %q, but final line %d %q", rep.Code, rep.Text, last.Code, last.Text)
		}

		// One byte at a time: same reply.
		slow, err := readReply(bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(data)), 16), nil)
		if err != nil {
			t.Fatalf("byte by byte: %v", err)
		}
		if diff := cmp.Diff(rep, slow); diff != "" {
			t.Fatalf("byte by byte differs (-whole +bytes):\n%s", diff)
		}

		// Written back out, the lines frame the same.
		again, err := readReply(bufio.NewReader(bytes.NewReader(writeReply(rep))), nil)
		if err != nil {
			t.Fatalf("reframing %q: %v", writeReply(rep), err)
		}
		if diff := cmp.Diff(rep, again); diff != "" {
			t.Fatalf("reframed reply differs (-first +again):\n%s", diff)
		}

		// Typed parsers: errors are fine, panics are not.
		_, _ = parseStatus(rep)
		_, _ = parseProtocols(rep)
		_, _ = parseRoutes(rep)
		_, _ = parseRouteCount(rep)
		_, _ = parseConfigure("configure", rep)
		_, _ = parseUndo(rep)
		_ = parseConfirm(rep)
		_, _ = parseConfigStatus(rep)
	})
}

// modelReply applies the framing rules of DESIGN.md to data directly: lines
// up to the first final one, "+" lines aside, continuations with the code of
// the line before. It reports how many bytes the reply took.
func modelReply(data []byte) (rep *Reply, async []string, used int, ok bool) {
	rep = &Reply{}
	code := -1
	for used < len(data) {
		n := bytes.IndexByte(data[used:], '\n')
		if n < 0 {
			return nil, nil, 0, false
		}
		line := string(data[used : used+n])
		used += n + 1
		if line == "" || len(line) > maxLineLen {
			return nil, nil, 0, false
		}
		switch line[0] {
		case '+':
			async = append(async, line[1:])
			continue
		case ' ':
			if code < 0 {
				return nil, nil, 0, false
			}
			rep.Lines = append(rep.Lines, Line{code, line[1:]})
			continue
		}
		if len(line) < 4 || !isDigits(line[:4]) || (len(line) > 4 && line[4] != '-' && line[4] != ' ') {
			return nil, nil, 0, false
		}
		c, _ := strconv.Atoi(line[:4])
		code = c
		text := ""
		if len(line) > 4 {
			text = line[5:]
		}
		rep.Lines = append(rep.Lines, Line{c, text})
		if len(line) == 4 || line[4] == ' ' {
			rep.Code, rep.Text = c, text
			return rep, async, used, true
		}
	}
	return nil, nil, 0, false
}

func isDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// writeReply writes rep's lines in BIRD's framing, using continuation lines
// where the code repeats.
func writeReply(rep *Reply) []byte {
	var b bytes.Buffer
	for i, l := range rep.Lines {
		switch {
		case i == len(rep.Lines)-1:
			fmt.Fprintf(&b, "%04d %s\n", l.Code, l.Text)
		case i > 0 && rep.Lines[i-1].Code == l.Code:
			fmt.Fprintf(&b, " %s\n", l.Text)
		default:
			fmt.Fprintf(&b, "%04d-%s\n", l.Code, l.Text)
		}
	}
	return b.Bytes()
}

// BenchmarkReadReply frames the recorded reply to "show route" for a table
// of 10,000 static routes.
func BenchmarkReadReply(b *testing.B) {
	data := bigTranscript(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := readReply(bufio.NewReader(bytes.NewReader(data)), nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseRoutes frames and parses the same 10,000-route reply.
func BenchmarkParseRoutes(b *testing.B) {
	data := bigTranscript(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		rep, err := readReply(bufio.NewReader(bytes.NewReader(data)), nil)
		if err != nil {
			b.Fatal(err)
		}
		if rs, err := parseRoutes(rep); err != nil || len(rs) != 10000 {
			b.Fatalf("%d routes, %v", len(rs), err)
		}
	}
}
