package monitoring

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/roost-net/roost/internal/testenv"
)

const (
	monitoringDir = "../../compose/monitoring"
	rulesFile     = "roost.rules.yml"
	rulesTestFile = "roost.rules.test.yml"
	dashboardFile = "grafana-dashboard.json"
	docsFile      = "../../docs/monitoring.md"
	runbookBase   = "https://github.com/roost-net/roost/blob/main/docs/monitoring.md#"
)

// metrics are the series the rules and the dashboard may read, each with its
// labels besides the target's (targetLabels): what roost-agent
// (internal/agent/metrics.go) and roost-loader (internal/policyd/server.go,
// internal/servicesd/metrics.go) export, and Prometheus' up. Hard-coded on purpose: a metric renamed in the
// code or misspelt in a rule or panel must fail a test, not leave an alert
// that never fires.
var metrics = map[string][]string{
	// roost-agent
	"roost_agent_ready":                   nil,
	"roost_bird_up":                       nil,
	"roost_bgp_session_established":       {"peer", "neighbor"},
	"roost_bgp_session_state":             {"peer", "neighbor", "state"},
	"roost_bgp_exported_prefixes":         {"peer", "neighbor", "family"},
	"roost_desired_prefixes":              {"family"},
	"roost_announced_prefixes":            {"family"},
	"roost_applies_total":                 {"result"},
	"roost_apply_failures":                nil,
	"roost_apply_duration_seconds_bucket": {"le"},
	"roost_apply_duration_seconds_sum":    nil,
	"roost_apply_duration_seconds_count":  nil,
	"roost_last_apply_duration_seconds":   nil,
	"roost_bird_rollbacks_total":          nil,
	"roost_bird_external_reconfigs_total": nil,
	"roost_blackhole_sync_failures":       nil,
	// roost-loader
	"roost_policy_packets_total":  {"reason", "verdict"},
	"roost_policy_bytes_total":    {"reason", "verdict"},
	"roost_policy_apply_failures": nil,
	"roost_policy_ready":          nil,
	"roost_policy_endpoints":      {"local", "enforced"},
	// roost-loader's global view (internal/policyd/server.go)
	"roost_globalview_connected":        nil,
	"roost_globalview_endpoints":        {"origin"},
	"roost_globalview_conflicts":        nil,
	"roost_globalview_view_age_seconds": nil,
	"roost_globalview_revision":         nil,
	"roost_globalview_publisher_leader": nil,
	// roost-loader's load balancers (socketLB, xdpLB)
	"roost_socket_lb_operations_total":           {"reason"},
	"roost_socket_lb_frontend_connections_total": {"frontend"},
	"roost_uplink_lb_packets_total":              {"reason"},
	"roost_uplink_lb_frontend_packets_total":     {"frontend", "kind"},
	"roost_uplink_lb_frontend_bytes_total":       {"frontend", "kind"},
	"roost_uplink_lb_frontend_connections_total": {"frontend", "kind"},
	"roost_uplink_lb_flows":                      nil,
	// Prometheus, one per scrape target
	"up": nil,
}

// targetLabels are the labels Prometheus gives every series of a target.
var targetLabels = []string{"instance", "job"}

// histogramSuffixes are the series names a histogram's name stands for in
// the code.
var histogramSuffixes = []string{"_bucket", "_sum", "_count"}

// TestPromtool checks the rules with promtool and runs their unit tests.
func TestPromtool(t *testing.T) {
	promtool := testenv.Binary(t, "promtool")
	for _, args := range [][]string{{"check", "rules", rulesFile}, {"test", "rules", rulesTestFile}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			cmd := exec.Command(promtool, args...)
			cmd.Dir = monitoringDir
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
}

// TestDashboardQueriesParse has promtool parse every query of the dashboard,
// as recording rules, with Grafana's variables filled in.
func TestDashboardQueriesParse(t *testing.T) {
	promtool := testenv.Binary(t, "promtool")
	d := readDashboard(t)
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for _, q := range d.queries() {
		expr, err := expandVariables(q.expr, d.variables())
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard_query_%d", len(rules)), Expr: expr})
	}
	file := map[string]any{"groups": []map[string]any{{"name": "dashboard", "rules": rules}}}
	b, err := yaml.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules (the dashboard's queries): %v\n%s", err, out)
	}
}

// TestRules checks what promtool does not: each alert's labels,
// annotations and runbook link, and that every rule reads only known
// metrics and labels.
func TestRules(t *testing.T) {
	rf := readRules(t)
	seen := map[string]bool{}
	for _, g := range rf.Groups {
		if len(g.Rules) == 0 {
			t.Errorf("group %s has no rules", g.Name)
		}
		for _, r := range g.Rules {
			where := fmt.Sprintf("group %s, alert %s", g.Name, r.Alert)
			if r.Alert == "" {
				t.Errorf("group %s: a rule that is not an alert (record %q): the dashboard and alerts read the daemons' metrics directly", g.Name, r.Record)
				continue
			}
			if seen[r.Alert] {
				t.Errorf("%s: alert name used twice", where)
			}
			seen[r.Alert] = true
			if !regexp.MustCompile(`^Roost[A-Z][A-Za-z0-9]*$`).MatchString(r.Alert) {
				t.Errorf("%s: want a name like RoostSomethingWrong", where)
			}
			if s := r.Labels["severity"]; s != "page" && s != "ticket" {
				t.Errorf("%s: severity %q, want page or ticket", where, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", where, a)
				}
			}
			if got, want := r.Annotations["runbook_url"], runbookBase+anchor(r.Alert); got != want {
				t.Errorf("%s: runbook_url %q, want %q", where, got, want)
			}
			for _, err := range checkExpr(r.Expr) {
				t.Errorf("%s: expr: %v", where, err)
			}
			// Queries in annotation templates are format strings; check
			// their metric names at least.
			for a, v := range r.Annotations {
				for _, m := range regexp.MustCompile(`\broost_[a-z0-9_]+`).FindAllString(v, -1) {
					if _, ok := metrics[m]; !ok {
						t.Errorf("%s: annotation %s: unknown metric %s", where, a, m)
					}
				}
			}
		}
	}
	if len(seen) == 0 {
		t.Fatal("no alerts")
	}
}

// TestRulesTested checks that the unit tests show every alert firing and,
// somewhere, not firing.
func TestRulesTested(t *testing.T) {
	alerts := readRules(t).alerts()
	b, err := os.ReadFile(filepath.Join(monitoringDir, rulesTestFile))
	if err != nil {
		t.Fatal(err)
	}
	var tf struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			Name          string `yaml:"name"`
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &tf); err != nil {
		t.Fatalf("%s: %v", rulesTestFile, err)
	}
	if !slices.Equal(tf.RuleFiles, []string{rulesFile}) {
		t.Errorf("%s: rule_files %q, want [%s]", rulesTestFile, tf.RuleFiles, rulesFile)
	}
	firing, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tf.Tests {
		for _, a := range tc.AlertRuleTest {
			if !slices.Contains(alerts, a.Alertname) {
				t.Errorf("%s, test %q: no alert %s in %s", rulesTestFile, tc.Name, a.Alertname, rulesFile)
			}
			if len(a.ExpAlerts) > 0 {
				firing[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	for _, a := range alerts {
		if !firing[a] {
			t.Errorf("%s: no test where %s fires", rulesTestFile, a)
		}
		if !quiet[a] {
			t.Errorf("%s: no test where %s does not fire", rulesTestFile, a)
		}
	}
}

// TestDashboard checks the Grafana dashboard: valid JSON, panels with unique
// ids inside the 24-column grid, queries of known metrics and labels only,
// and every metric of both daemons shown somewhere.
func TestDashboard(t *testing.T) {
	d := readDashboard(t)
	if d.Title == "" || d.UID == "" {
		t.Errorf("title %q, uid %q: want both", d.Title, d.UID)
	}
	panels := d.allPanels()
	if len(panels) == 0 {
		t.Fatal("no panels")
	}
	ids := map[int]string{}
	for _, p := range panels {
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if p.ID <= 0 {
			t.Errorf("%s: id must be positive", where)
		}
		if other, ok := ids[p.ID]; ok {
			t.Errorf("%s: id also used by %q", where, other)
		}
		ids[p.ID] = p.Title
		if p.Title == "" || p.Type == "" {
			t.Errorf("%s: no title or type", where)
		}
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 || g.Y < 0 {
			t.Errorf("%s: gridPos %+v outside Grafana's 24 columns", where, g)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no queries", where)
		}
		refs := map[string]bool{}
		for _, q := range p.Targets {
			if q.RefID == "" || refs[q.RefID] {
				t.Errorf("%s: refId %q empty or used twice", where, q.RefID)
			}
			refs[q.RefID] = true
			if strings.TrimSpace(q.Expr) == "" {
				t.Errorf("%s, query %s: no expr", where, q.RefID)
			}
		}
	}
	vars := d.variables()
	shown := map[string]bool{}
	for _, q := range d.queries() {
		expr, err := expandVariables(q.expr, vars)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		for _, err := range checkExpr(expr) {
			t.Errorf("%s: %v", q.where, err)
		}
		sels, _, _ := selectors(expr)
		for _, s := range sels {
			shown[s.metric] = true
		}
	}
	for m := range metrics {
		if !shown[m] && !strings.HasSuffix(m, "_sum") && !strings.HasSuffix(m, "_count") {
			t.Errorf("metric %s is on no panel", m)
		}
	}
}

// TestDocs checks docs/monitoring.md: a section per alert (the runbook_url
// anchor) saying what it means, its likely causes and what to do; no
// section for an alert that does not exist; and only roostctl commands that
// exist.
func TestDocs(t *testing.T) {
	b, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	sections := sectionsByAnchor(doc)
	alerts := readRules(t).alerts()
	for _, a := range alerts {
		body, ok := sections[anchor(a)]
		if !ok {
			t.Errorf("%s: no section %q for alert %s (its runbook_url)", docsFile, "### "+a, a)
			continue
		}
		for _, part := range []string{"**Meaning.**", "**Likely causes.**", "**What to do.**"} {
			if !strings.Contains(body, part) {
				t.Errorf("%s, section %s: no %s", docsFile, a, part)
			}
		}
	}
	for _, m := range regexp.MustCompile(`(?m)^### (Roost\w*)\s*$`).FindAllStringSubmatch(doc, -1) {
		if !slices.Contains(alerts, m[1]) {
			t.Errorf("%s: section %s, but %s has no such alert", docsFile, m[1], rulesFile)
		}
	}

	cmds := roostctlCommands(t)
	for _, code := range codeOf(doc) {
		for _, sub := range roostctlSubcommands(code) {
			if !slices.Contains(cmds, sub) {
				t.Errorf("%s: `roostctl %s`: no such command (cmd/roostctl has %s)", docsFile, sub, strings.Join(cmds, ", "))
			}
		}
	}
}

// TestMetricsExported checks that the daemons' code still names every metric
// the rules and the dashboard read.
func TestMetricsExported(t *testing.T) {
	code := map[string]bool{}
	lit := regexp.MustCompile(`"(roost_[a-z0-9_]+)"`)
	err := filepath.WalkDir("..", func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range lit.FindAllSubmatch(b, -1) {
			code[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for m := range metrics {
		if m == "up" {
			continue
		}
		name := m
		for _, s := range histogramSuffixes {
			if base, ok := strings.CutSuffix(m, s); ok && code[base] {
				name = base
			}
		}
		if !code[name] {
			t.Errorf("metric %s: no Go code under internal/ names it", m)
		}
	}
}

// ruleFile is the part of a Prometheus rule file the tests read.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []struct {
			Alert         string            `yaml:"alert"`
			Record        string            `yaml:"record"`
			Expr          string            `yaml:"expr"`
			For           string            `yaml:"for"`
			KeepFiringFor string            `yaml:"keep_firing_for"`
			Labels        map[string]string `yaml:"labels"`
			Annotations   map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func (rf ruleFile) alerts() []string {
	var out []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r.Alert)
			}
		}
	}
	return out
}

func readRules(t *testing.T) ruleFile {
	t.Helper()
	f, err := os.Open(filepath.Join(monitoringDir, rulesFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	var rf ruleFile
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	return rf
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos struct {
		H int `json:"h"`
		W int `json:"w"`
		X int `json:"x"`
		Y int `json:"y"`
	} `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(monitoringDir, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// allPanels returns the panels, with those of collapsed rows.
func (d dashboard) allPanels() []panel {
	var out []panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// variables returns the values Grafana's variables stand for when a query is
// checked: the dashboard's own (any value) and Grafana's intervals.
func (d dashboard) variables() map[string]string {
	vars := map[string]string{"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
	for _, v := range d.Templating.List {
		if v.Type != "datasource" {
			vars[v.Name] = ".*"
		}
	}
	return vars
}

// query is one PromQL query of the dashboard.
type query struct {
	where string
	expr  string
}

// queries returns the dashboard's PromQL: its panels' and the metric of each
// label_values variable.
func (d dashboard) queries() []query {
	var out []query
	for _, p := range d.allPanels() {
		for _, q := range p.Targets {
			out = append(out, query{fmt.Sprintf("panel %d %q, query %s", p.ID, p.Title, q.RefID), q.Expr})
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		where := "variable " + v.Name
		var q string
		if json.Unmarshal(v.Query, &q) != nil {
			var obj struct {
				Query string `json:"query"`
			}
			_ = json.Unmarshal(v.Query, &obj)
			q = obj.Query
		}
		m := labelValues.FindStringSubmatch(strings.TrimSpace(q))
		if m == nil {
			out = append(out, query{where, q}) // not label_values(...): fails as PromQL if it is not
			continue
		}
		out = append(out, query{where, m[1]}, query{where, fmt.Sprintf("count by (%s) (%s)", m[2], m[1])})
	}
	return out
}

// expandVariables replaces Grafana's $var and ${var} in a query.
func expandVariables(expr string, vars map[string]string) (string, error) {
	var errs []string
	out := regexp.MustCompile(`\$\{?(\w+)\}?`).ReplaceAllStringFunc(expr, func(s string) string {
		name := strings.Trim(s, "${}")
		v, ok := vars[name]
		if !ok {
			errs = append(errs, "unknown variable "+s)
		}
		return v
	})
	if errs != nil {
		return "", fmt.Errorf("%s", strings.Join(errs, ", "))
	}
	return out, nil
}

// checkExpr returns what is wrong with the metrics and labels a PromQL
// expression reads.
func checkExpr(expr string) []error {
	sels, grouping, err := selectors(expr)
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, s := range sels {
		own, ok := metrics[s.metric]
		if !ok {
			errs = append(errs, fmt.Errorf("unknown metric %s", s.metric))
			continue
		}
		for _, l := range s.labels {
			if !slices.Contains(own, l) && !slices.Contains(targetLabels, l) {
				errs = append(errs, fmt.Errorf("%s has no label %s", s.metric, l))
			}
		}
	}
	all := slices.Clone(targetLabels)
	for _, ls := range metrics {
		all = append(all, ls...)
	}
	for _, l := range grouping {
		if !slices.Contains(all, l) {
			errs = append(errs, fmt.Errorf("no metric has the label %s", l))
		}
	}
	if len(sels) == 0 {
		errs = append(errs, fmt.Errorf("reads no metric"))
	}
	return errs
}

// selector is a metric an expression reads, with the label names of its
// matchers.
type selector struct {
	metric string
	labels []string
}

var (
	// promqlKeywords are the identifiers that are neither metrics nor
	// functions.
	promqlKeywords = []string{"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
	// labelListKeywords are followed by a list of labels in parentheses.
	labelListKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right"}
)

// selectors returns the metric selectors of a PromQL expression and the
// labels of its by, without, on, ignoring and group_* clauses. It knows just
// enough PromQL to find them in a valid expression (promtool checks that it
// is): strings, label matchers, ranges, label lists and calls.
func selectors(expr string) (sels []selector, grouping []string, err error) {
	toks, err := lex(expr)
	if err != nil {
		return nil, nil, err
	}
	at := func(i int) token {
		if i < len(toks) {
			return toks[i]
		}
		return token{}
	}
	for i := 0; i < len(toks); i++ {
		t, next := toks[i], at(i+1)
		switch {
		case t.is('['):
			for i < len(toks) && !toks[i].is(']') {
				i++
			}
		case t.is('{'):
			return nil, nil, fmt.Errorf("a selector without a metric name at token %d", i)
		case t.kind != identToken:
		case slices.Contains(labelListKeywords, t.text):
			if next.is('(') {
				for i += 2; i < len(toks) && !toks[i].is(')'); i++ {
					if toks[i].kind == identToken {
						grouping = append(grouping, toks[i].text)
					}
				}
			}
		case slices.Contains(promqlKeywords, strings.ToLower(t.text)):
		case next.is('('), next.kind == identToken && (next.text == "by" || next.text == "without"):
			// a call, or an aggregation with its clause first
		default:
			s := selector{metric: t.text}
			if next.is('{') {
				for i += 2; i < len(toks) && !toks[i].is('}'); i++ {
					if toks[i].kind == identToken {
						s.labels = append(s.labels, toks[i].text)
					}
				}
			}
			sels = append(sels, s)
		}
	}
	return sels, grouping, nil
}

type tokenKind int

const (
	punctToken tokenKind = iota + 1
	identToken
	stringToken
	numberToken
)

type token struct {
	kind tokenKind
	text string
}

func (t token) is(c byte) bool { return t.kind == punctToken && t.text == string(c) }

// lex splits a PromQL expression into identifiers, strings, numbers (and
// durations) and single punctuation characters.
func lex(s string) ([]token, error) {
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for ; j < len(s) && s[j] != c; j++ {
				if s[j] == '\\' && c != '`' {
					j++
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string at byte %d", i)
			}
			out = append(out, token{stringToken, s[i+1 : j]})
			i = j + 1
		case isIdent(c, true):
			j := i
			for j < len(s) && isIdent(s[j], false) {
				j++
			}
			out = append(out, token{identToken, s[i:j]})
			i = j
		case c >= '0' && c <= '9' || c == '.':
			j := i
			for j < len(s) && (isIdent(s[j], false) || s[j] == '.') {
				j++
			}
			out = append(out, token{numberToken, s[i:j]})
			i = j
		default:
			out = append(out, token{punctToken, string(c)})
			i++
		}
	}
	return out, nil
}

// anchor returns the anchor GitHub gives a Markdown heading.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

// sectionsByAnchor returns the text under each heading of a Markdown
// document, by the heading's anchor (GitHub numbers repeated ones).
func sectionsByAnchor(doc string) map[string]string {
	out := map[string]string{}
	key, inCode := "", false
	for line := range strings.Lines(doc) {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if !inCode && strings.HasPrefix(line, "#") {
			heading := strings.TrimLeft(line, "#")
			key = anchor(heading)
			for n := 1; ; n++ {
				if _, dup := out[key]; !dup {
					break
				}
				key = fmt.Sprintf("%s-%d", anchor(heading), n)
			}
			out[key] = ""
			continue
		}
		if key != "" {
			out[key] += line
		}
	}
	return out
}

// codeOf returns the code of a Markdown document: its fenced blocks and
// inline code spans.
func codeOf(doc string) []string {
	var out []string
	fenced := regexp.MustCompile("(?ms)^```[^\n]*\n(.*?)^```")
	for _, m := range fenced.FindAllStringSubmatch(doc, -1) {
		out = append(out, m[1])
	}
	prose := fenced.ReplaceAllString(doc, "")
	for _, m := range regexp.MustCompile("`([^`\n]+)`").FindAllStringSubmatch(prose, -1) {
		out = append(out, m[1])
	}
	return out
}

// roostctlSubcommands returns the subcommand of each roostctl command line
// in code, after the global flags. An upper-case word (COMMAND) is a
// placeholder.
func roostctlSubcommands(code string) []string {
	valueFlags := []string{"--agent", "--loader", "--bird-socket", "-o", "--output", "--timeout"}
	var out []string
	for _, m := range regexp.MustCompile(`(?:^|\s)roostctl((?:[ \t]+[^\s|;&#]+)*)`).FindAllStringSubmatch(code, -1) {
		args := strings.Fields(m[1])
		for i := 0; i < len(args); i++ {
			switch {
			case slices.Contains(valueFlags, args[i]):
				i++
				continue
			case strings.HasPrefix(args[i], "-"):
				continue
			case args[i] != strings.ToUpper(args[i]):
				out = append(out, args[i])
			}
			break
		}
	}
	return out
}

// roostctlCommands returns roostctl's subcommands, as cmd/roostctl declares
// them.
func roostctlCommands(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../cmd/roostctl/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("cmd/roostctl: %v", err)
	}
	var out []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`Use:\s*"([a-z][a-z-]*)`).FindAllSubmatch(b, -1) {
			if s := string(m[1]); s != "roostctl" {
				out = append(out, s)
			}
		}
	}
	slices.Sort(out)
	return out
}
