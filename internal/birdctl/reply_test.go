package birdctl

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
)

func TestReadReply(t *testing.T) {
	long := strings.Repeat("x", 60000)
	for _, tc := range []struct {
		name      string
		in        string
		want      *Reply
		wantAsync []string
		wantRest  string // bytes left unread after the reply
		wantErr   error
	}{
		{
			name: "greeting",
			in:   "0001 BIRD 2.0.12 ready.\n",
			want: &Reply{Code: 1, Text: "BIRD 2.0.12 ready.", Lines: []Line{{1, "BIRD 2.0.12 ready."}}},
		},
		{
			name: "empty final text",
			in:   "0000 \n",
			want: &Reply{Code: 0, Lines: []Line{{0, ""}}},
		},
		{
			name: "four digits alone are final",
			in:   "0000\n",
			want: &Reply{Code: 0, Lines: []Line{{0, ""}}},
		},
		{
			name: "continuations take the code before them",
			in:   "1007-Table master4:\n 10.0.0.0/24 blackhole\n \n 2001:db8::/64 blackhole\n0000 \n",
			want: &Reply{Code: 0, Lines: []Line{
				{1007, "Table master4:"}, {1007, "10.0.0.0/24 blackhole"}, {1007, ""},
				{1007, "2001:db8::/64 blackhole"}, {0, ""},
			}},
		},
		{
			name: "code changes",
			in:   "1007-10.0.0.0/24 unicast\n \tvia 10.0.0.1 on eth0\n1008-\tType: BGP univ\n1012-\tBGP.origin: IGP\n \tBGP.as_path: 65000\n1007-\n 10.1.0.0/24 blackhole\n0000 \n",
			want: &Reply{Code: 0, Lines: []Line{
				{1007, "10.0.0.0/24 unicast"}, {1007, "\tvia 10.0.0.1 on eth0"}, {1008, "\tType: BGP univ"},
				{1012, "\tBGP.origin: IGP"}, {1012, "\tBGP.as_path: 65000"}, {1007, ""},
				{1007, "10.1.0.0/24 blackhole"}, {0, ""},
			}},
		},
		{
			name:      "async lines before a reply",
			in:        "+Reconfiguring\n+Config timeout expired, starting undo\n0013 Daemon is up and running\n",
			want:      &Reply{Code: 13, Text: "Daemon is up and running", Lines: []Line{{13, "Daemon is up and running"}}},
			wantAsync: []string{"Reconfiguring", "Config timeout expired, starting undo"},
		},
		{
			name:      "async line inside a reply keeps the continuation code",
			in:        "1002-a\n+Reconfiguring\n b\n+\n c\n0000 \n",
			want:      &Reply{Code: 0, Lines: []Line{{1002, "a"}, {1002, "b"}, {1002, "c"}, {0, ""}}},
			wantAsync: []string{"Reconfiguring", ""},
		},
		{
			name:     "async lines after the final line are left for later",
			in:       "0003 Reconfigured\n+Reconfiguring\n+Reconfigured\n",
			want:     &Reply{Code: 3, Text: "Reconfigured", Lines: []Line{{3, "Reconfigured"}}},
			wantRest: "+Reconfiguring\n+Reconfigured\n",
		},
		{
			name:     "any final line ends the reply, not only 0000",
			in:       "0002-Reading configuration from /etc/bird.conf\n0022-Undo scheduled in 30 s\n0003 Reconfigured\n0000 \n",
			want:     &Reply{Code: 3, Text: "Reconfigured", Lines: []Line{{2, "Reading configuration from /etc/bird.conf"}, {22, "Undo scheduled in 30 s"}, {3, "Reconfigured"}}},
			wantRest: "0000 \n",
		},
		{
			name: "error reply",
			in:   "0002-Reading configuration from /x.conf\n8002 /x.conf:6:1 syntax error, unexpected '}'\n",
			want: &Reply{Code: 8002, Text: "/x.conf:6:1 syntax error, unexpected '}'", Lines: []Line{
				{2, "Reading configuration from /x.conf"}, {8002, "/x.conf:6:1 syntax error, unexpected '}'"},
			}},
		},
		{
			name: "line longer than the read buffer",
			in:   "1007-" + long + "\n " + long + "\n0000 \n",
			want: &Reply{Code: 0, Lines: []Line{{1007, long}, {1007, long}, {0, ""}}},
		},
		{
			name: "carriage return is text",
			in:   "0000 ok\r\n",
			want: &Reply{Code: 0, Text: "ok\r", Lines: []Line{{0, "ok\r"}}},
		},
		{name: "continuation first", in: " text\n0000 \n", wantErr: ErrProtocol},
		{name: "continuation after async only", in: "+log\n text\n0000 \n", wantErr: ErrProtocol},
		{name: "letters in code", in: "00a0 x\n", wantErr: ErrProtocol},
		{name: "bad separator", in: "0000:x\n", wantErr: ErrProtocol},
		{name: "short code", in: "000\n", wantErr: ErrProtocol},
		{name: "empty line", in: "1007-a\n\n0000 \n", wantErr: ErrProtocol},
		{name: "line too long", in: "1007-" + strings.Repeat("y", maxLineLen) + "\n0000 \n", wantErr: ErrProtocol},
		{name: "no input", in: "", wantErr: io.EOF},
		{name: "ends inside a reply", in: "1007-a\n b\n", wantErr: io.ErrUnexpectedEOF},
		{name: "ends inside a line", in: "0000 ", wantErr: io.ErrUnexpectedEOF},
		{name: "ends after async lines", in: "+log\n", wantErr: io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The framer must not depend on how the bytes arrive.
			for _, mode := range []string{"whole", "one byte at a time"} {
				var src io.Reader = strings.NewReader(tc.in)
				if mode != "whole" {
					src = iotest.OneByteReader(src)
				}
				br := bufio.NewReaderSize(src, 16)
				var async []string
				got, err := readReply(br, func(s string) { async = append(async, s) })
				if tc.wantErr != nil {
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("%s: err = %v, want %v", mode, err, tc.wantErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", mode, err)
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("%s: reply differs (-want +got):\n%s", mode, diff)
				}
				if diff := cmp.Diff(tc.wantAsync, async); diff != "" {
					t.Errorf("%s: async lines differ (-want +got):\n%s", mode, diff)
				}
				rest, _ := io.ReadAll(br)
				if string(rest) != tc.wantRest {
					t.Errorf("%s: left %q unread, want %q", mode, rest, tc.wantRest)
				}
			}
		})
	}
}

func TestErrorIs(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  *Error
		is   error
	}{
		{"network not found", &Error{Code: 8001, Text: "Network not found"}, ErrNotFound},
		{"no protocols match", &Error{Code: 8003, Text: "No protocols match"}, ErrNotFound},
		{"config error", &Error{Code: 8002, Text: "/x:1:1 syntax error"}, ErrConfig},
		{"access denied", &Error{Code: 8007, Text: "Access denied"}, ErrAccessDenied},
		{"no valid tables", &Error{Code: 9001, Text: "No valid tables"}, ErrNoTables},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all := []error{ErrNotFound, ErrConfig, ErrAccessDenied, ErrNoTables}
			for _, target := range all {
				if got, want := errors.Is(tc.err, target), target == tc.is; got != want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", tc.err, target, got, want)
				}
			}
		})
	}
	syntax := &Error{Code: 9001, Text: "syntax error, unexpected CF_SYM_UNDEFINED"}
	for _, target := range []error{ErrNotFound, ErrConfig, ErrAccessDenied, ErrNoTables} {
		if errors.Is(syntax, target) {
			t.Errorf("a syntax error matches %v", target)
		}
	}
}
