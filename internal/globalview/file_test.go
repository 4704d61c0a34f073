package globalview

import (
	"strings"
	"testing"
	"time"

	"github.com/roost-net/roost/internal/fieldcheck"
)

func TestFileApply(t *testing.T) {
	var f File
	if err := fieldcheck.Decode(strings.NewReader(`
endpoints: ["https://10.0.0.5:2379"]
dialTimeout: 2s
prefix: /x/
`), &f); err != nil {
		t.Fatal(err)
	}
	c, ps := f.Apply(Default(), "globalView.etcd")
	if len(ps) > 0 {
		t.Fatal(ps.Err())
	}
	if c.DialTimeout != 2*time.Second || c.RequestTimeout != 5*time.Second || c.Prefix != "/x/" || len(c.Endpoints) != 1 {
		t.Errorf("applied: %+v", c)
	}
	if err := c.Problems("globalView.etcd").Err(); err != nil {
		t.Errorf("valid config refused: %v", err)
	}

	_, ps = File{RequestTimeout: "soon"}.Apply(Default(), "etcd")
	if got := ps.Err(); got == nil || !strings.Contains(got.Error(), `etcd.requestTimeout: "soon" is not a duration`) {
		t.Errorf("bad duration: %v", got)
	}
	if err := fieldcheck.Decode(strings.NewReader("endpoint: [x]\n"), &f); err == nil {
		t.Error("unknown field accepted")
	}
}
