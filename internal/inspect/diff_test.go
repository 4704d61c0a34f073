package inspect

import "testing"

func TestDiff(t *testing.T) {
	tests := []struct {
		name, a, b, want string
	}{
		{"equal", "x\ny\n", "x\ny\n", ""},
		{"changed middle", "a\nb\nc\nd\ne\nf\n", "a\nb\nc\nX\ne\nf\n",
			"--- old\n+++ new\n b\n c\n-d\n+X\n e\n f\n"},
		{"added at end", "a\n", "a\nb\n", "--- old\n+++ new\n a\n+b\n"},
		{"from empty", "", "a\n", "--- old\n+++ new\n+a\n"},
		{"removed first", "a\nb\n", "b\n", "--- old\n+++ new\n-a\n b\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Diff("old", "new", tt.a, tt.b); got != tt.want {
				t.Errorf("Diff =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}
