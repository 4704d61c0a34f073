package logflags

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

func TestLogger(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		want    string // in the log line, or in the error
		wantErr bool
	}{
		{nil, `level=warning msg=hello`, false},
		{[]string{"--log-format", "json"}, `"msg":"hello"`, false},
		{[]string{"--log-level", "error"}, ``, false},
		{[]string{"--log-level", "loud"}, `--log-level: not a valid logrus Level: "loud"`, true},
		{[]string{"--log-format", "xml"}, `--log-format "xml": want text or json`, true},
	} {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f := Register(fs)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		log, err := f.Logger(&out)
		if tt.wantErr {
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%q: error %v, want %q", tt.args, err, tt.want)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		log.WithField("k", 1).Log(logrus.WarnLevel, "hello")
		if !strings.Contains(out.String(), tt.want) || (tt.want == "" && out.Len() > 0) {
			t.Errorf("%q: logged %q, want %q", tt.args, out.String(), tt.want)
		}
	}
}
