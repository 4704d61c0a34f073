package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/bpf"
)

// unpinned are the maps of the collection that are never pinned: they
// belong to one loaded collection (see the package doc).
var unpinned = []string{"flow_cache", ".bss", ".data", ".rodata"}

// isPinned reports whether the map named name is pinned.
func isPinned(name string) bool { return !slices.Contains(unpinned, name) }

// feature is a kernel feature the programs need, named for the error that
// says it is missing.
type feature struct {
	name  string
	check func() error
}

// kernelFeatures are the features checkKernel probes.
var kernelFeatures = []feature{
	{"tc (SCHED_CLS) programs", func() error { return features.HaveProgramType(ebpf.SchedCLS) }},
	{"SYSCALL programs (Linux 5.14)", func() error { return features.HaveProgramType(ebpf.Syscall) }},
	{"eBPF instruction set v3 (Linux 5.1)", features.HaveV3ISA},
	{"ring buffer maps (Linux 5.8)", func() error { return features.HaveMapType(ebpf.RingBuf) }},
	{"LPM trie maps (Linux 4.11)", func() error { return features.HaveMapType(ebpf.LPMTrie) }},
	{"LRU hash maps (Linux 4.10)", func() error { return features.HaveMapType(ebpf.LRUHash) }},
	{"per-CPU array maps (Linux 4.6)", func() error { return features.HaveMapType(ebpf.PerCPUArray) }},
}

// checkKernel removes the memlock limit (kernels before 5.11 charge BPF
// memory to it) and probes every kernel feature the programs need.
func checkKernel() error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("remove memlock limit: %w", err)
	}
	return checkFeatures(kernelFeatures)
}

// checkFeatures probes fs and returns an error naming each one missing
// (wrapping ErrKernelFeature) or that could not be probed.
func checkFeatures(fs []feature) error {
	var errs []error
	for _, f := range fs {
		err := f.check()
		switch {
		case err == nil:
		case errors.Is(err, ebpf.ErrNotSupported):
			errs = append(errs, fmt.Errorf("%w: %s: %w", ErrKernelFeature, f.name, err))
		default:
			errs = append(errs, fmt.Errorf("probe kernel for %s (roost-loader needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, or CAP_SYS_ADMIN): %w", f.name, err))
		}
	}
	return errors.Join(errs...)
}

// loadObjects loads the collection that newSpec returns (Options.Spec) into
// objs with every map but the unpinned ones pinned by name under dir/maps:
// existing pins are adopted, missing ones created. Pins of maps the
// collection does not have are removed.
func loadObjects(objs *bpf.PolicyObjects, newSpec func() (*ebpf.CollectionSpec, error), dir string, log logrus.FieldLogger) error {
	spec, err := newSpec()
	if err != nil {
		return fmt.Errorf("load bpf collection spec: %w", err)
	}
	if spec == nil {
		return errors.New("load bpf collection spec: Options.Spec returned no spec")
	}
	mapsDir := filepath.Join(dir, "maps")
	for name, m := range spec.Maps {
		if !isPinned(name) {
			continue
		}
		m.Pinning = ebpf.PinByName
		if err := checkPinned(m, filepath.Join(mapsDir, m.Name)); err != nil {
			return err
		}
	}
	err = spec.LoadAndAssign(objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: mapsDir}})
	var ve *ebpf.VerifierError
	switch {
	case err == nil:
	case errors.As(err, &ve):
		return &verifierError{err: err, ve: ve}
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("load bpf programs: %w: %w", ErrKernelFeature, err)
	default:
		return fmt.Errorf("load bpf programs: %w", err)
	}
	return removeStalePins(spec, mapsDir, log)
}

// checkPinned returns an error naming the pin and what to do when the map
// pinned at path cannot serve as m (its layout changed).
func checkPinned(m *ebpf.MapSpec, path string) error {
	pinned, err := ebpf.LoadPinnedMap(path, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("adopt pinned map %s: %w", path, err)
	}
	defer pinned.Close()
	if err := m.Compatible(pinned); err != nil {
		return fmt.Errorf("adopt pinned map %q at %s: it was made by a roost with another layout (%w). "+
			"The attached programs keep enforcing with it. To start this map empty, remove the pin (rm %s) "+
			"and start the loader again: it refills endpoints, ipcache, policy and verdicts before it moves the "+
			"links to the new programs, but conntrack, fragments, counters and drops start over, so replies to "+
			"connections endpoints opened before may be dropped", m.Name, path, err, path)
	}
	return nil
}

// removeStalePins removes the map pins in mapsDir that the collection does
// not pin: maps of another roost version, or maps that are never pinned.
func removeStalePins(spec *ebpf.CollectionSpec, mapsDir string, log logrus.FieldLogger) error {
	entries, err := os.ReadDir(mapsDir)
	if err != nil {
		return fmt.Errorf("list pinned maps: %w", err)
	}
	for _, e := range entries {
		if m, ok := spec.Maps[e.Name()]; ok && isPinned(e.Name()) && m.Name == e.Name() {
			continue
		}
		path := filepath.Join(mapsDir, e.Name())
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("remove stale map pin: %w", err)
		}
		log.WithField(fieldPin, path).Info("removed stale map pin")
	}
	return nil
}

// verifierError is a program the verifier rejected; its message holds the
// whole verifier log.
type verifierError struct {
	err error
	ve  *ebpf.VerifierError
}

func (e *verifierError) Error() string {
	return fmt.Sprintf("load bpf programs: %v\nfull verifier log:\n%+v", e.err, e.ve)
}

func (e *verifierError) Unwrap() error { return e.err }

// probeAttach decides between TCX and clsact.
func (l *Loader) probeAttach() error {
	if l.opts.Attach == AttachClsact {
		return nil
	}
	// Interface 0 does not exist: the kernel refuses it with ENODEV when it
	// knows TCX, and cilium/ebpf then reports ErrNotSupported if it does not.
	lk, err := link.AttachTCX(link.TCXOptions{Interface: 0, Program: l.objs.ToEndpoint, Attach: ebpf.AttachTCXEgress})
	if err == nil {
		lk.Close()
		return errors.New("probe tcx: attaching to interface 0 succeeded")
	}
	if errors.Is(err, ebpf.ErrNotSupported) {
		if l.opts.Attach == AttachTCX {
			return fmt.Errorf("%w: TCX links (Linux 6.6): %w", ErrKernelFeature, err)
		}
		return nil
	}
	l.useTCX = true
	return nil
}
