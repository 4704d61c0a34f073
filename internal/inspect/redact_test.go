package inspect

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/birdconf"
)

func TestRedactBirdConfig(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{
			name: "several peers",
			in: "protocol bgp bgp_tor_a {\n\tneighbor 10.0.1.1 as 65000;\n\tpassword \"s3cret\";\n}\n" +
				"protocol bgp bgp_tor_b {\n\tneighbor fe80::1%eth1 as 65000;\n\tpassword \"p#a;s{s}'w/*o*/rd\";\n}\n",
			want: "protocol bgp bgp_tor_a {\n\tneighbor 10.0.1.1 as 65000;\n\tpassword \"<redacted>\";\n}\n" +
				"protocol bgp bgp_tor_b {\n\tneighbor fe80::1%eth1 as 65000;\n\tpassword \"<redacted>\";\n}\n",
		},
		{
			name: "at end of input without newline",
			in:   "\tpassword \"x\";",
			want: "\tpassword \"<redacted>\";",
		},
		{
			name: "no semicolon, end of line",
			in:   "password \"x\"\nhold time 9;\n",
			want: "password \"<redacted>\"\nhold time 9;\n",
		},
		{
			name: "tabs and spaces around",
			in:   "\t\tpassword\t\t\"a b\tc\" ;\t# md5\n",
			want: "\t\tpassword\t\t\"<redacted>\" ;\t# md5\n",
		},
		{
			name: "empty password",
			in:   "password \"\";\n",
			want: "password \"<redacted>\";\n",
		},
		{
			name: "two on one line",
			in:   "password \"a\"; password \"b\";\n",
			want: "password \"<redacted>\"; password \"<redacted>\";\n",
		},
		{
			name: "unterminated string is redacted to the end of the line",
			in:   "password \"half;\nhold time 9;\n",
			want: "password \"<redacted>\nhold time 9;\n",
		},
		{
			name: "upper case keyword",
			in:   "PASSWORD \"x\";\n",
			want: "PASSWORD \"<redacted>\";\n",
		},
		{
			name: "already redacted is unchanged",
			in:   "password \"<redacted>\";\n",
			want: "password \"<redacted>\";\n",
		},
		{
			name: "no password",
			in:   "router id 10.0.1.2;\n# no password here\ndescription \"password\";\n",
			want: "router id 10.0.1.2;\n# no password here\ndescription \"password\";\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			got := string(RedactBirdConfig(in))
			if got != tt.want {
				t.Errorf("RedactBirdConfig(%q) =\n%q\nwant\n%q", tt.in, got, tt.want)
			}
			if string(in) != tt.in {
				t.Error("input modified")
			}
			if again := string(RedactBirdConfig([]byte(got))); again != got {
				t.Errorf("not idempotent: %q", again)
			}
		})
	}
}

// TestRedactBirdConfigRendered redacts what birdconf renders: no secret is
// left, and two renders differing only in their passwords redact to the same
// bytes (what roostctl config --diff relies on).
func TestRedactBirdConfigRendered(t *testing.T) {
	render := func(pw1, pw2 string) []byte {
		t.Helper()
		conf, err := birdconf.Render(birdconf.Input{
			RouterID: netip.MustParseAddr("10.0.1.2"), ASN: 4200000101,
			Peers: []birdconf.Peer{
				{Name: "tor-a", Address: netip.MustParseAddr("10.0.1.1"), ASN: 4200000000, Password: pw1},
				{Name: "tor-b", Address: netip.MustParseAddr("fe80::1%eth1"), ASN: 4200000000, Password: pw2},
				{Name: "tor-c", Address: netip.MustParseAddr("10.0.3.1"), ASN: 4200000000},
			},
			Prefixes: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")},
		})
		if err != nil {
			t.Fatal(err)
		}
		return conf
	}
	secret1, secret2 := "s3cret password ", "p#a;s{s}'w/*o*/rd"
	got := RedactBirdConfig(render(secret1, secret2))
	if bytes.Contains(got, []byte(secret1)) || bytes.Contains(got, []byte(secret2)) {
		t.Errorf("secret left in\n%s", got)
	}
	if n := bytes.Count(got, []byte(`password "`+agentapi.Redacted+`";`)); n != 2 {
		t.Errorf("%d redacted passwords, want 2:\n%s", n, got)
	}
	if other := RedactBirdConfig(render("other", "x")); !bytes.Equal(got, other) {
		t.Errorf("renders with other passwords redact differently:\n%s", Diff("a", "b", string(got), string(other)))
	}
}
