package fieldcheck

import (
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	var v struct {
		A int `yaml:"a"`
	}
	if err := Decode(strings.NewReader("a: 1\n"), &v); err != nil || v.A != 1 {
		t.Errorf("Decode = %v, %+v", err, v)
	}
	if err := Decode(strings.NewReader(""), &v); err != nil {
		t.Errorf("empty: %v", err)
	}
	if err := Decode(strings.NewReader("b: 1\n"), &v); err == nil || !strings.Contains(err.Error(), "field b not found") {
		t.Errorf("unknown field: %v", err)
	}
}

func TestCombine(t *testing.T) {
	var conv, valid Problems
	conv.Add("asn", "%d is out of range", 0)
	valid.Add("asn", "must be set")
	valid.Add("peers", "at least one")
	err := Combine(conv, valid)
	if err == nil || err.Error() != "asn: 0 is out of range\npeers: at least one" {
		t.Errorf("Combine = %v", err)
	}
	if Combine(nil, nil) != nil {
		t.Error("no problems, an error")
	}
}

func TestListen(t *testing.T) {
	for s, ok := range map[string]bool{
		"127.0.0.1:9479": true, ":9479": true, "[::1]:80": true,
		"localhost:80": false, "127.0.0.1": false, "127.0.0.1:x": false, "127.0.0.1:70000": false,
	} {
		if err := Listen(s); (err == nil) != ok {
			t.Errorf("Listen(%q) = %v", s, err)
		}
	}
}
