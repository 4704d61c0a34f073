package services

import (
	"flag"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestDescribe compares the description of each testdata file with its
// golden file (name.describe); -update rewrites them.
func TestDescribe(t *testing.T) {
	for _, name := range []string{"services", "full"} {
		t.Run(name, func(t *testing.T) {
			svcs, err := LoadFile("testdata/" + name + ".yaml")
			if err != nil {
				t.Fatal(err)
			}
			got := Describe(svcs)
			golden := "testdata/" + name + ".describe"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("Describe mismatch (-want +got):\n%s", diff)
			}
		})
	}
	if got, want := Describe(nil), "services:\n  none\n"; got != want {
		t.Errorf("Describe(nil) = %q, want %q", got, want)
	}
}
