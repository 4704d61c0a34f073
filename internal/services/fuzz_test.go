package services

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzLoad feeds Load arbitrary bytes, seeded with the testdata files and
// the error cases. Load must not panic and must be deterministic; a
// rejected file yields no services and only "source:line: " or "source: "
// error lines; an accepted one keeps the invariants the rest of roost
// relies on, describes without panicking, and round-trips.
func FuzzLoad(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("services:\n- {name: db, clusterIPs: [10.96.0.10], ports: [{port: 80, targetPort: http}], backends: [{ip: 10.244.1.10, ports: {http: 8080}}]}\n"))
	f.Add([]byte("services: [{name: a, externalIPs: [&x 10.0.0.1], ports: [{port: 1}]}, {name: b, externalIPs: [*x]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		svcs, err := Load(bytes.NewReader(data), "fuzz.yaml")
		_, err2 := Load(bytes.NewReader(data), "fuzz.yaml")
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("Load is not deterministic: %v vs %v", err, err2)
		}
		if err != nil {
			if svcs != nil {
				t.Fatal("Load returned services with an error")
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz.yaml:") {
					t.Fatalf("error line without source: %q", line)
				}
			}
			return
		}
		for _, s := range svcs {
			if len(s.Frontends()) == 0 || len(s.Ports) == 0 {
				t.Fatalf("%s: no frontend or no port: %+v", s.FullName(), s)
			}
			keys := map[string]bool{}
			for _, b := range s.Backends {
				if keys[b.Key()] {
					t.Fatalf("%s: backend key %s twice", s.FullName(), b.Key())
				}
				keys[b.Key()] = true
			}
			for _, p := range s.Ports {
				if p.Port == 0 || (p.TargetPort == 0) == (p.TargetPortName == "") {
					t.Fatalf("%s: bad port %+v", s.FullName(), p)
				}
			}
		}
		_ = Describe(svcs)
		again, err := Load(bytes.NewReader(encode(t, svcs)), "encoded.yaml")
		if err != nil {
			t.Fatalf("an accepted file, encoded, is refused: %v", err)
		}
		if diff := cmp.Diff(svcs, again, cmpAddr); diff != "" {
			t.Fatalf("round trip mismatch (-loaded +reloaded):\n%s", diff)
		}
	})
}
