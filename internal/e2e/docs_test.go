package e2e

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// docBlock is one fenced code block of a Markdown document with the
// marker comment on the line before it.
type docBlock struct {
	line   int    // of the opening fence
	lang   string // the fence's info string
	name   string // <!-- doc-test: NAME -->: a test runs it
	notRun string // <!-- not run by a test: WHY -->
	body   string
}

var (
	docTestMark = regexp.MustCompile(`^<!-- doc-test: ([a-z0-9.-]+) -->$`)
	notRunMark  = regexp.MustCompile(`^<!-- not run by a test: (.+) -->$`)
)

// readDocBlocks parses the fenced code blocks of the Markdown file path.
func readDocBlocks(t *testing.T, path string) []docBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		blocks []docBlock
		prev   string
		cur    *docBlock
		body   []string
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur != nil && strings.HasPrefix(line, "```"):
			cur.body = strings.Join(body, "\n") + "\n"
			blocks = append(blocks, *cur)
			cur, body = nil, nil
		case cur != nil:
			body = append(body, line)
		case strings.HasPrefix(line, "```"):
			cur = &docBlock{line: n, lang: strings.TrimPrefix(line, "```")}
			if m := docTestMark.FindStringSubmatch(prev); m != nil {
				cur.name = m[1]
			} else if m := notRunMark.FindStringSubmatch(prev); m != nil {
				cur.notRun = m[1]
			}
		}
		if strings.TrimSpace(line) != "" {
			prev = strings.TrimSpace(line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("%s:%d: code block not closed", path, cur.line)
	}
	return blocks
}

// deployDocBlocks are the blocks of docs/deploy.md that
// TestPrivilegedDeployDocs runs, in the order it runs them.
var deployDocBlocks = []string{
	"daemon.json", "images-build",
	"bpffs", "compose-files", "compose-check", "compose-up", "compose-look", "compose-down", "compose-remove",
	"salt-files", "salt-pillar", "salt-test", "salt-apply", "salt-look", "salt-clean",
}

// TestDeployDocBlocksMarked: every shell block of docs/deploy.md is either
// run by TestPrivilegedDeployDocs (<!-- doc-test: NAME -->) or says why it
// is not (<!-- not run by a test: WHY -->), every name is one the test
// runs, and the test finds every block it runs.
func TestDeployDocBlocksMarked(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	blocks := readDocBlocks(t, filepath.Join(repo, "docs", "deploy.md"))
	seen := map[string]int{}
	for _, b := range blocks {
		switch {
		case b.name != "":
			seen[b.name]++
		case b.lang == "sh" && b.notRun == "":
			t.Errorf("docs/deploy.md:%d: a shell block neither marked <!-- doc-test: NAME --> nor <!-- not run by a test: WHY -->", b.line)
		}
	}
	for name, n := range seen {
		if n > 1 {
			t.Errorf("docs/deploy.md: %d blocks named %s", n, name)
		}
	}
	for _, name := range deployDocBlocks {
		if seen[name] != 1 {
			t.Errorf("docs/deploy.md has no block <!-- doc-test: %s -->, which TestPrivilegedDeployDocs runs", name)
		}
		delete(seen, name)
	}
	for name := range seen {
		t.Errorf("docs/deploy.md: block %s is marked doc-test, but TestPrivilegedDeployDocs does not run it", name)
	}
}
