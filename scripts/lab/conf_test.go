package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roost-net/roost/internal/config"
	"github.com/roost-net/roost/internal/loaderconfig"
	"github.com/roost-net/roost/internal/syncconfig"
	"github.com/roost-net/roost/internal/testenv"
)

// golden is a daemon's config rendered for a description file, and its
// golden file.
type golden struct {
	file, kind, text string
}

// goldens renders the configs of the default lab and of three-nodes.yaml
// (one cluster, no etcd) for tor1 and node1, and roost-sync's, with the
// default state directory. Their goldens were checked against lab.sh's
// renderings: the same bytes but the "written by" line.
func goldens(t *testing.T) []golden {
	var out []golden
	for _, tc := range []struct{ name, file string }{{"lab", defaultFile}, {"three-nodes", "testdata/three-nodes.yaml"}} {
		s := parse(t, readFile(t, tc.file))
		l := &lab{spec: s, state: "/run/roost-lab"}
		at := func(name string) string { return filepath.Join("testdata", "golden", "conf-"+tc.name+"-"+name) }
		out = append(out,
			golden{at("tor1-bgpd.conf"), "bgpd", s.torBgpdConf("tor1")},
			golden{at("tor1-nft.txt"), "nft", s.torCountersRules()},
			golden{at("node1-bird.conf"), "bird", s.nodeBirdConf("node1")},
			golden{at("node1-agent.yaml"), "agent", l.agentConf("node1")},
			golden{at("node1-loader.yaml"), "loader", l.loaderConf("node1")})
		if s.Sync != nil {
			out = append(out, golden{at("sync.yaml"), "sync", s.syncConf()})
		}
	}
	return out
}

// TestConfs compares the rendered configs with testdata/golden (go test
// -update rewrites them), checks that a second rendering gives the same
// bytes, and has roost's daemons' own loaders read theirs.
func TestConfs(t *testing.T) {
	first, again := goldens(t), goldens(t)
	for i, g := range first {
		if *update {
			if err := os.WriteFile(g.file, []byte(g.text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if want := readFile(t, g.file); g.text != want {
			t.Errorf("%s: rendered\n%s\nwant (go test -update rewrites it)\n%s", g.file, g.text, want)
		}
		if again[i].text != g.text {
			t.Errorf("%s: a second rendering differs", g.file)
		}
		var err error
		switch g.kind {
		case "agent":
			_, err = config.Load(strings.NewReader(g.text), config.Default())
		case "loader":
			_, err = loaderconfig.Load(strings.NewReader(g.text), loaderconfig.Default())
		case "sync":
			_, err = syncconfig.Load(strings.NewReader(g.text))
		}
		if err != nil {
			t.Errorf("%s: refused: %v", g.file, err)
		}
	}
}

// TestBirdConf has BIRD parse the ROOST_LAB_NO_AGENT=1 configs.
func TestBirdConf(t *testing.T) {
	bird := testenv.Binary(t, "bird")
	for _, g := range goldens(t) {
		if g.kind != "bird" {
			continue
		}
		if out, err := exec.Command(bird, "-p", "-c", g.file).CombinedOutput(); err != nil {
			t.Errorf("bird -p -c %s: %v\n%s", g.file, err, out)
		}
	}
}

// TestBgpdProblems checks what of bgpd -C's output is a config problem.
func TestBgpdProblems(t *testing.T) {
	noise := `2026/12/04 14:49:55 BGP: [ZG9QC-QRCJZ] failed to mkdir "/var/tmp/frr/bgpd.14897": File exists
2026/12/04 14:49:55 BGP: [M1DC0-ZDNYJ] crashlog and per-thread log buffering unavailable!
`
	if bad := bgpdProblems(noise); len(bad) != 0 {
		t.Errorf("crash-log noise taken for problems: %q", bad)
	}
	line := "line 3: % Unknown command[4]: no such command"
	if bad := bgpdProblems(noise + line + "\n"); len(bad) != 1 || bad[0] != line {
		t.Errorf("problems %q, want [%q]", bad, line)
	}
}

// TestPrivilegedBgpdConf has FRR's bgpd check the ToRs' configs, as "up"
// does: it prints a bad line (and exits 0 all the same). It needs root:
// bgpd sets up its privileges even to check a file.
func TestPrivilegedBgpdConf(t *testing.T) {
	testenv.Privileged(t)
	testenv.Binary(t, "bgpd")
	for _, g := range goldens(t) {
		if g.kind != "bgpd" {
			continue
		}
		if err := checkBgpdConf(g.file); err != nil {
			t.Error(err)
		}
	}
	// And a bad line is caught.
	bad := filepath.Join(t.TempDir(), "bgpd.conf")
	if err := os.WriteFile(bad, []byte("router bgp 65000\n no such command\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkBgpdConf(bad); err == nil {
		t.Errorf("bgpd -C accepted %s, which has a bad line", bad)
	}
}
