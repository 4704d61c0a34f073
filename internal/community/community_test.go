package community

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	good := map[string]Community{
		"65000:100":               {A: 65000, B: 100},
		"0:0":                     {},
		"65535:65535":             {A: 65535, B: 65535},
		"4200000000:1:2":          {Large: true, A: 4200000000, B: 1, C: 2},
		"4294967295:0:4294967295": {Large: true, A: 4294967295, C: 4294967295},
	}
	for s, want := range good {
		got, err := Parse(s)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", s, got, err, want)
		}
		if got.String() != s {
			t.Errorf("Parse(%q).String() = %q", s, got.String())
		}
	}
	for _, s := range []string{"", "65000", "65536:1", "1:65536", "4294967296:1:1", "1:2:3:4", "a:b", "+1:2", " 1:2", "1:-2", "0x10:1", "1::2"} {
		if c, err := Parse(s); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %+v, %v; want ErrSyntax", s, c, err)
		}
	}
}

func TestParseList(t *testing.T) {
	got, err := ParseList(" 65000:300, 4200000000:7:1 65000:300,,65000:2\n")
	if err != nil {
		t.Fatal(err)
	}
	if s := Join(got); s != "65000:2,65000:300,4200000000:7:1" {
		t.Errorf("ParseList sorted and deduplicated to %q", s)
	}
	if got, err := ParseList(""); got != nil || err != nil {
		t.Errorf("ParseList(\"\") = %v, %v", got, err)
	}
	if _, err := ParseList("65000:1, 70000:1, x"); !errors.Is(err, ErrSyntax) || err.Error() == "" {
		t.Errorf("ParseList with two bad entries: %v", err)
	}
}

func TestBird(t *testing.T) {
	if s := (Community{A: 65000, B: 1}).Bird(); s != "bgp_community.add((65000, 1));" {
		t.Error(s)
	}
	if s := (Community{Large: true, A: 1, B: 2, C: 3}).Bird(); s != "bgp_large_community.add((1, 2, 3));" {
		t.Error(s)
	}
}
