package endpoints

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/roost-net/roost/internal/policy"
)

// policyText is a valid policy named name.
func policyText(name string) string {
	return `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ` + name + `}
spec:
  endpointSelector: {matchLabels: {app: ` + name + `}}
  ingress: [{fromEntities: [cluster]}]
`
}

// writeFiles makes dir hold files (name → content; content "dir" makes a
// directory, "-> target" a symbolic link).
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, name)
		var err error
		switch {
		case content == "dir":
			err = os.MkdirAll(path, 0o755)
		case strings.HasPrefix(content, "-> "):
			err = os.Symlink(strings.TrimPrefix(content, "-> "), path)
		default:
			if err = os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
				err = os.WriteFile(path, []byte(content), 0o644)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// ids returns "file:ID" of each policy, the file relative to dir.
func ids(dir string, pols []policy.Policy) []string {
	var out []string
	for _, p := range pols {
		rel, _ := filepath.Rel(dir, p.File)
		out = append(out, rel+":"+p.ID())
	}
	return out
}

func TestLoadPolicyDirSeed(t *testing.T) {
	pols, err := LoadPolicyDir("testdata/policies")
	if err != nil {
		t.Fatalf("LoadPolicyDir: %v", err)
	}
	if len(pols) != 1 || pols[0].ID() != "default/clustermesh-ingress-l4-policy" || pols[0].File != "testdata/policies/seed.yaml" || pols[0].Line != 1 {
		t.Fatalf("LoadPolicyDir = %+v, want the seed policy from testdata/policies/seed.yaml:1", pols)
	}
	// The seed policy against the lab's endpoints, db and employee local:
	// employee may reach db on 6379/TCP, guest may not.
	eps := Derive(labEndpoints(), nil, "default")
	eps[0].Local, eps[1].Local = true, true
	res, err := policy.Compile(pols, eps)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	var db policy.EndpointPolicy
	for _, ep := range res.Endpoints {
		if ep.Name == "db" {
			db = ep
		}
	}
	if !db.Enforced {
		t.Fatalf("db is not enforced: %+v", res.Endpoints)
	}
	for _, tc := range []struct {
		src  string
		port uint16
		want policy.Verdict
	}{
		{"10.244.1.11", 6379, policy.Allow}, // employee
		{"10.244.2.11", 6379, policy.Allow}, // employee2
		{"10.0.9.10", 6379, policy.Allow},   // vm1
		{"10.244.2.10", 6379, policy.Deny},  // guest
		{"10.244.1.11", 6380, policy.Deny},  // employee, wrong port
	} {
		if got := db.Decide(res.Lookup(netip.MustParseAddr(tc.src)), policy.ProtoTCP, tc.port); got != tc.want {
			t.Errorf("%s → db:%d = %v, want %v", tc.src, tc.port, got, tc.want)
		}
	}
}

func TestLoadPolicyDir(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string // "file:policy" in order
	}{
		{name: "empty directory"},
		{
			name:  "sorted by file name, documents in order",
			files: map[string]string{"b.yaml": policyText("b1") + "---\n" + policyText("b0"), "a.yml": policyText("a")},
			want:  []string{"a.yml:default/a", "b.yaml:default/b1", "b.yaml:default/b0"},
		},
		{
			name: "other and hidden files ignored",
			files: map[string]string{
				"README.md":      "not a policy",
				"p.yaml.bak":     "not: a policy",
				".p.yaml.swp":    "binary junk",
				".hidden.yaml":   "kind: nonsense",
				"sub":            "dir",
				"sub/deep.yaml":  "kind: nonsense",
				"policy.yaml":    policyText("p"),
				"empty.yaml":     "",
				"comments.yaml":  "# nothing yet\n",
				"..data/x.yaml":  policyText("x"),
				"x.yaml":         "-> ..data/x.yaml",
				"..2024_01/skip": "kind: nonsense",
			},
			want: []string{"policy.yaml:default/p", "x.yaml:default/x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tt.files)
			pols, err := LoadPolicyDir(dir)
			if err != nil {
				t.Fatalf("LoadPolicyDir: %v", err)
			}
			if got := ids(dir, pols); !slices.Equal(got, tt.want) {
				t.Errorf("policies = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLoadPolicyDirErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string // substrings of the error; "DIR" stands for the directory
	}{
		{
			name: "errors of every file",
			files: map[string]string{
				"a.yaml": policyText("a") + "  egress: []\n",
				"b.yaml": policyText("b"),
				"c.yaml": "apiVersion: cilium.io/v1\n",
			},
			want: []string{"DIR/a.yaml:7: spec.egress: not supported by roost", "DIR/c.yaml:1: apiVersion"},
		},
		{
			name:  "same policy in two files",
			files: map[string]string{"a.yaml": policyText("p"), "b.yaml": policyText("p")},
			want:  []string{`DIR/b.yaml:1: policy "default/p" is already defined at DIR/a.yaml:1`},
		},
		{
			name:  "directory named like a policy",
			files: map[string]string{"a.yaml": policyText("a"), "dir.yaml": "dir"},
			want:  []string{"policy file DIR/dir.yaml is not a regular file"},
		},
		{
			name:  "dangling link",
			files: map[string]string{"gone.yaml": "-> nowhere.yaml"},
			want:  []string{"read policy file: open DIR/gone.yaml"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tt.files)
			pols, err := LoadPolicyDir(dir)
			if err == nil {
				t.Fatalf("LoadPolicyDir = %q, want an error", ids(dir, pols))
			}
			if pols != nil {
				t.Errorf("LoadPolicyDir returned policies with an error: %q", ids(dir, pols))
			}
			for _, w := range tt.want {
				w = strings.ReplaceAll(w, "DIR", dir)
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%s\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadPolicyDirMissing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "policies")
	_, err := LoadPolicyDir(dir)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), dir) {
		t.Errorf("LoadPolicyDir of a missing directory = %v, want a not-exist error naming it", err)
	}
}

func TestIsPolicyFile(t *testing.T) {
	for name, want := range map[string]bool{
		"a.yaml": true, "a.yml": true, "a.YAML": false, "a.yaml~": false, "a.json": false,
		".a.yaml": false, "..data": false, "yaml": false,
	} {
		if got := IsPolicyFile(name); got != want {
			t.Errorf("IsPolicyFile(%q) = %v, want %v", name, got, want)
		}
	}
}
