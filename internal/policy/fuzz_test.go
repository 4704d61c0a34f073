package policy

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds Parse arbitrary bytes, seeded with every policy under
// testdata. Parse must not panic and must be deterministic; a rejected
// file yields no policies and only "source:line: " error lines; an
// accepted one compiles against a few endpoints, twice to the same text,
// and every local endpoint can be asked for a verdict.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/policies", "testdata/rejected"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
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
	}
	eps := []Endpoint{
		{Name: "a", IPs: addrs("10.0.0.1"), Labels: pod("app", "a", NamespaceLabel, "prod"), Local: true},
		{Name: "b", IPs: addrs("10.1.2.3", "2001:db8::1"), Labels: pod("app", "b")},
		{Name: "c", IPs: addrs("192.0.2.10"), Labels: pod("app", "employee"), Local: true},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pols, err := Parse(bytes.NewReader(data), "fuzz.yaml")
		_, err2 := Parse(bytes.NewReader(data), "fuzz.yaml")
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("Parse is not deterministic: %v vs %v", err, err2)
		}
		if err != nil {
			if pols != nil {
				t.Fatalf("Parse returned policies with an error")
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz.yaml:") {
					t.Fatalf("error line without source: %q", line)
				}
			}
			return
		}
		res, err := Compile(pols, eps, WithHostIPs(addrs("10.0.0.254")...))
		if err != nil {
			if strings.Contains(err.Error(), "defined twice") {
				return
			}
			t.Fatalf("Compile of accepted policies: %v", err)
		}
		again, _ := Compile(pols, eps, WithHostIPs(addrs("10.0.0.254")...))
		if res.String() != again.String() {
			t.Fatal("Compile is not deterministic")
		}
		for _, ep := range res.Endpoints {
			for _, e := range ep.Entries {
				ep.Decide(e.Remote, e.Protocol, e.Port)
				if e.Port > e.EndPort || e.Verdict != Allow && e.Verdict != Deny {
					t.Fatalf("bad entry %+v", e)
				}
			}
		}
	})
}
