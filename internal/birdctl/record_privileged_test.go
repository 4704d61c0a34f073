package birdctl

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var record = flag.Bool("record", false, "record testdata/replies from real BIRDs (needs root; then run -update)")

// TestPrivilegedRecordTranscripts re-records the transcripts in
// testdata/replies: the exact bytes real BIRD 2 daemons send in answer to
// each request (async lines before a reply included), in the bgp lab. It is
// a tool, run by hand with -record; the transcripts it writes feed the
// golden parser tests, the fuzz corpus and the benchmark. After recording,
// refresh the golden files: go test ./internal/birdctl -run Transcript -update.
//
// Without -record it records into a temporary directory and checks that the
// real BIRD still answers every request with the final code of the
// committed transcript, so the transcripts the fuzzer and the parser tests
// rely on stay true to the BIRD installed.
func TestPrivilegedRecordTranscripts(t *testing.T) {
	lab := startBGPLab(t, labOptions{bigRoutes: 10000, communities: 60})
	dir := filepath.Join("testdata", "replies")
	if !*record {
		dir = t.TempDir()
		t.Cleanup(func() { compareFinalCodes(t, dir, filepath.Join("testdata", "replies")) })
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(lab.node.Dir, "good.conf")
	bad := filepath.Join(lab.node.Dir, "bad.conf")
	noTor1 := filepath.Join(lab.node.Dir, "notor1.conf")
	writeFile(t, good, nodeConfig(labOptions{communities: 60}))
	writeFile(t, bad, "router id 10.99.0.1;\nprotocol device {}\nprotocol static s {\n  ipv4;\n  route 10.10.0.0/24 blackhole\n}\n")
	writeFile(t, noTor1, nodeConfig(labOptions{withoutTor1: true}))

	// The ToR: plain status once graceful restart recovery is over, and
	// BGP routes with attributes.
	tor := dialRecorder(t, lab.tor.Socket)
	deadline := time.Now().Add(30 * time.Second)
	for {
		rep := tor.roundTrip("show status")
		if rep.Code == CodeStatus && !hasCode(rep, CodeGracefulRestart) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("tor still in graceful restart recovery after 30s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	tor.save(dir, "show-status", "show status")
	tor.save(dir, "show-route-all-bgp", "show route all")
	tor.save(dir, "show-route-bgp", "show route")
	tor.save(dir, "show-protocols-all-tor", "show protocols all node1")

	// tor2's neighbor does not exist: wait until BIRD has a last error
	// for it ("Socket: No route to host" once ARP gives up).
	client := dialT(t, lab.node.Socket)
	for deadline := time.Now().Add(30 * time.Second); ; {
		ps, err := client.Protocols(t.Context(), ProtocolQuery{All: true, Pattern: "tor2"})
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) == 1 && ps[0].LastError != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tor2 has no last error after 30s: %+v", ps)
		}
		time.Sleep(200 * time.Millisecond)
	}

	node := dialRecorder(t, lab.node.Socket)
	node.writeFile(dir, "greeting", node.greeting)
	node.save(dir, "show-route-count-big", "show route table big4 count")
	node.send("show route table big4")
	big := node.read()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(big); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	node.writeFile(dir, "show-route-big.reply.gz", gz.Bytes())

	for _, r := range []struct{ name, req string }{
		{"show-status-gr", "show status"},
		{"show-protocols", "show protocols"},
		{"show-protocols-all", "show protocols all"},
		{"show-protocols-pattern", `show protocols all "tor*"`},
		{"show-protocols-nomatch", `show protocols "nosuch"`},
		{"show-route", "show route"},
		{"show-route-all", "show route all"},
		{"show-route-multipath", "show route table multi4 all"},
		{"show-route-for", "show route for 10.10.0.1"},
		{"show-route-for-notfound", "show route for 10.77.0.0/16"},
		{"show-route-export", "show route export tor1"},
		{"show-route-export-all", "show route export tor1 all"},
		{"show-route-export-down", "show route export tor2"},
		{"show-route-count", "show route count"},
		{"show-route-count-export", "show route export tor1 count"},
		{"parse-error", "show protocols nosuch"},
		{"configure-check", `configure check "` + good + `"`},
		{"configure-check-default", "configure check"},
		{"configure-check-bad", `configure check "` + bad + `"`},
		{"configure-check-missing", `configure check "` + lab.node.Dir + `/missing.conf"`},
		{"configure-bad", `configure "` + bad + `"`},
		{"configure", "configure"},
		{"configure-file", `configure "` + good + `"`},
		{"configure-timeout", "configure timeout 30"},
		{"configure-status-unconfirmed", "configure status"},
		{"configure-confirm", "configure confirm"},
		{"configure-confirm-nothing", "configure confirm"},
		{"configure-timeout-file", `configure "` + good + `" timeout 30`},
		{"configure-undo", "configure undo"},
		{"configure-undo-nothing", "configure undo"},
		{"configure-status", "configure status"},
	} {
		// Let each reconfiguration finish before the next request, so
		// that these show the common answers; the pipelined requests
		// below catch "in progress" and "queued".
		node.settle()
		node.save(dir, r.name, r.req)
	}
	restricted := dialRecorder(t, lab.node.Socket)
	restricted.save(dir, "restrict", "restrict")
	restricted.save(dir, "restricted-configure", "configure")
	restricted.save(dir, "restricted-configure-check", "configure check")
	restricted.save(dir, "configure-status-restricted", "configure status")

	// Async lines: with "echo all" BIRD copies its log to the session as
	// "+..." lines, and the session that set a configure timeout hears
	// "+Config timeout expired, starting undo". They arrive after the
	// reply they follow and are read with the next one.
	async := dialRecorder(t, lab.node.Socket)
	async.save(dir, "echo", "echo all")
	async.save(dir, "configure-timeout-short", "configure timeout 1")
	time.Sleep(2 * time.Second)
	async.save(dir, "async-show-status", "show status")

	// Removing an established session takes BIRD a moment: a configure
	// right after one that does is queued, and an undo then drops the
	// queued one. Send four requests at once.
	piped := dialRecorder(t, lab.node.Socket)
	piped.send(`configure "` + noTor1 + `"`)
	piped.send(`configure "` + lab.node.Config + `"`)
	piped.send("configure status")
	piped.send("configure undo")
	for _, name := range []string{"configure-in-progress", "configure-queued", "configure-status-queued", "configure-undo-unqueued"} {
		piped.writeFile(dir, name+".reply", piped.read())
	}
}

// recorder speaks to a BIRD socket and keeps the exact bytes of each reply.
type recorder struct {
	t        *testing.T
	conn     net.Conn
	tee      bytes.Buffer // every byte read from conn
	br       *bufio.Reader
	used     int // bytes of tee that replies have consumed
	greeting []byte
}

// dialRecorder connects to path and reads the greeting.
func dialRecorder(t *testing.T, path string) *recorder {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	r := &recorder{t: t, conn: conn}
	r.br = bufio.NewReader(io.TeeReader(conn, &r.tee))
	r.greeting = r.read()
	return r
}

func (r *recorder) send(req string) {
	r.t.Helper()
	if _, err := io.WriteString(r.conn, req+"\n"); err != nil {
		r.t.Fatal(err)
	}
}

// read reads one reply and returns the bytes it took.
func (r *recorder) read() []byte {
	r.t.Helper()
	if _, err := readReply(r.br, nil); err != nil {
		r.t.Fatal(err)
	}
	end := r.tee.Len() - r.br.Buffered()
	raw := bytes.Clone(r.tee.Bytes()[r.used:end])
	r.used = end
	return raw
}

// settle waits until BIRD has finished reconfiguring.
func (r *recorder) settle() {
	r.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if rep := r.roundTrip("configure status"); hasCode(rep, CodeReconfigured) {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatal("bird still reconfiguring after 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *recorder) roundTrip(req string) *Reply {
	r.t.Helper()
	r.send(req)
	rep, err := readReply(bufio.NewReader(bytes.NewReader(r.read())), nil)
	if err != nil {
		r.t.Fatal(err)
	}
	return rep
}

// save sends req and writes the reply's bytes to dir/name.reply.
func (r *recorder) save(dir, name, req string) {
	r.t.Helper()
	r.send(req)
	r.writeFile(dir, name+".reply", r.read())
}

func (r *recorder) writeFile(dir, name string, b []byte) {
	r.t.Helper()
	if filepath.Ext(name) == "" {
		name += ".reply"
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func hasCode(rep *Reply, code int) bool {
	for _, l := range rep.Lines {
		if l.Code == code {
			return true
		}
	}
	return false
}

// compareFinalCodes checks that each *.reply in got ends with the same final
// code as the file of the same name in want.
func compareFinalCodes(t *testing.T, got, want string) {
	files, err := filepath.Glob(filepath.Join(got, "*.reply"))
	if err != nil || len(files) == 0 {
		t.Errorf("nothing recorded in %s: %v", got, err)
		return
	}
	for _, f := range files {
		name := filepath.Base(f)
		g, err1 := os.ReadFile(f)
		w, err2 := os.ReadFile(filepath.Join(want, name))
		if err1 != nil || err2 != nil {
			t.Errorf("%s: %v %v", name, err1, err2)
			continue
		}
		if gc, wc := finalCode(g), finalCode(w); gc != wc {
			t.Errorf("%s: BIRD now ends with %q, the transcript with %q", name, gc, wc)
		}
	}
}

// finalCode returns the code of the last final line ("DDDD text").
func finalCode(b []byte) string {
	code := ""
	for _, l := range strings.Split(string(b), "\n") {
		if len(l) >= 5 && l[4] == ' ' && strings.Trim(l[:4], "0123456789") == "" {
			code = l[:4]
		}
	}
	return code
}
