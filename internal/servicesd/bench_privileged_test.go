package servicesd

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/internal/socklb"
	"github.com/roost-net/roost/internal/testenv"
)

// BenchmarkPrivilegedChangeToServed measures a change of one service's
// backend in a services file of 10,000 services until the socket load
// balancer's maps serve it: reading and checking the whole file, working
// out the frontends, and syncing the one that changed (Reconcile, on a
// real socklb.LB; the file watcher's debounce is not counted).
func BenchmarkPrivilegedChangeToServed(b *testing.B) {
	testenv.Privileged(b)
	lb, err := socklb.Load()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { lb.Close() })
	path := filepath.Join(b.TempDir(), "services.yaml")
	log := logrus.New()
	log.SetOutput(io.Discard)
	d := New(Options{File: path, Node: "node1", Datapath: lb, Log: log})
	const n = 10000
	write := func(backend int) {
		var sb strings.Builder
		sb.WriteString("services:\n")
		for i := range n {
			be := 10
			if i == 0 {
				be = backend
			}
			fmt.Fprintf(&sb, "  - name: s%d\n    clusterIPs: [10.%d.%d.%d]\n    ports: [{port: 80}]\n    backends: [{ip: 10.244.1.%d, node: node1}]\n",
				i, 96+i/65536, i/256%256, i%256, be)
		}
		if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	write(10)
	if err := d.Reconcile(); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		write(11 + i%2)
		b.StartTimer()
		if err := d.Reconcile(); err != nil {
			b.Fatal(err)
		}
	}
}
