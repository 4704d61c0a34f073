package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestOneImageTag: the tag `make images` builds when ROOST_IMAGE_TAG is not
// set (the release in VERSION) is the one every place an operator copies an
// image reference from names: compose/env.example, the formula's defaults,
// salt/pillar.example and the pillar reference in docs/deploy.md. A node
// set up from any of them finds the images the build made, rather than
// trying to pull another tag.
func TestOneImageTag(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(repo, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	version := strings.TrimSpace(read("VERSION"))
	if !regexp.MustCompile(`^v\d+\.\d+\.\d+$`).MatchString(version) {
		t.Fatalf("VERSION %q is not vMAJOR.MINOR.PATCH", version)
	}
	want := map[string]string{"bird": "roost/bird:" + version, "roost": "roost/roost:" + version}

	cmd := exec.Command(filepath.Join(repo, "scripts", "images.sh"), "tag")
	cmd.Env = append(os.Environ(), "ROOST_IMAGE_TAG=")
	out, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) != version {
		t.Errorf("scripts/images.sh tag = %q (%v), want %s", out, err, version)
	}

	for _, rel := range []string{"salt/roost/defaults.yaml", "salt/pillar.example"} {
		var doc struct {
			Roost struct {
				Images map[string]any `yaml:"images"`
			} `yaml:"roost"`
		}
		if err := yaml.Unmarshal([]byte(read(rel)), &doc); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		for k, ref := range want {
			if got := doc.Roost.Images[k]; got != ref {
				t.Errorf("%s: roost:images:%s = %v, want %s", rel, k, got, ref)
			}
		}
	}

	env := map[string]string{}
	for _, line := range strings.Split(read("compose/env.example"), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			env[k] = v
		}
	}
	if env["ROOST_BIRD_IMAGE"] != want["bird"] || env["ROOST_IMAGE"] != want["roost"] {
		t.Errorf("compose/env.example: ROOST_BIRD_IMAGE=%s ROOST_IMAGE=%s, want %s and %s",
			env["ROOST_BIRD_IMAGE"], env["ROOST_IMAGE"], want["bird"], want["roost"])
	}

	row := "| `images:bird`, `images:roost` | `" + want["bird"] + "`, `" + want["roost"] + "` |"
	if !strings.Contains(read("docs/deploy.md"), row) {
		t.Errorf("docs/deploy.md's pillar reference does not say the images default to %s and %s", want["bird"], want["roost"])
	}
}
