package loader

import (
	"errors"
	"fmt"
	"maps"
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

// derivedMaps are the maps Apply fills entirely from the policy and the
// endpoints, and whose entries point into each other (policy entries name
// verdict tables and counter slots). When a build changes the layout of one
// of them, all of them start anew together: the old build's programs keep
// the old set, consistent, until Apply has filled the new one and moved
// their links.
var derivedMaps = []string{
	"endpoints", "ipcache_host4", "ipcache_host6", "ipcache_lpm4", "ipcache_lpm6",
	"policy", "verdicts", "policy_counters",
}

// restartableMaps hold only statistics and events: when a build changes
// their layout they start over, empty.
var restartableMaps = []string{"counters", "drops"}

// replacedSuffix marks a map pin moved aside for a map of a new layout; it
// is removed with the stale pins once the new maps are loaded, and moved
// back if loading fails.
const replacedSuffix = "_replaced" // bpffs refuses dots in names

// loadObjects loads the collection that newSpec returns (Options.Spec) into
// objs with every map but the unpinned ones pinned by name under dir/maps:
// existing pins are adopted, missing ones created. Pins of maps the
// collection does not have are removed.
//
// A pinned map whose layout differs from the collection's (a build that
// changed it) is replaced when the datapath's state does not depend on it:
// the derived maps all together, a restartable map alone. A stateful map
// (conntrack, fragments) of another layout is an error wrapping
// ebpf.ErrMapIncompatible, and then nothing is changed.
func loadObjects(objs *bpf.PolicyObjects, newSpec func() (*ebpf.CollectionSpec, error), dir string, log logrus.FieldLogger) error {
	spec, err := newSpec()
	if err != nil {
		return fmt.Errorf("load bpf collection spec: %w", err)
	}
	if spec == nil {
		return errors.New("load bpf collection spec: Options.Spec returned no spec")
	}
	mapsDir := filepath.Join(dir, "maps")
	incompatible := map[string]error{}
	for _, name := range slices.Sorted(maps.Keys(spec.Maps)) {
		m := spec.Maps[name]
		if !isPinned(name) {
			continue
		}
		m.Pinning = ebpf.PinByName
		if err := checkPinned(m, filepath.Join(mapsDir, m.Name)); err != nil {
			if !errors.Is(err, ebpf.ErrMapIncompatible) || !replaceable(m.Name) {
				return err
			}
			incompatible[m.Name] = err
		}
	}
	replace := replacements(incompatible, spec)
	restore, err := moveAside(mapsDir, replace, log, incompatible)
	if err != nil {
		return err
	}
	err = spec.LoadAndAssign(objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: mapsDir}})
	var ve *ebpf.VerifierError
	switch {
	case err == nil:
	case errors.As(err, &ve):
		err = &verifierError{err: err, ve: ve}
	case errors.Is(err, ebpf.ErrNotSupported):
		err = fmt.Errorf("load bpf programs: %w: %w", ErrKernelFeature, err)
	default:
		err = fmt.Errorf("load bpf programs: %w", err)
	}
	if err != nil {
		return errors.Join(err, restore())
	}
	return removeStalePins(spec, mapsDir, log)
}

// replaceable reports whether a pinned map of another layout may be
// replaced by an empty one.
func replaceable(name string) bool {
	return slices.Contains(derivedMaps, name) || slices.Contains(restartableMaps, name)
}

// replacements returns the maps to start anew, given the incompatible ones:
// those, and every derived map when one of them is.
func replacements(incompatible map[string]error, spec *ebpf.CollectionSpec) []string {
	var names []string
	for _, name := range slices.Sorted(maps.Keys(incompatible)) {
		if slices.Contains(restartableMaps, name) {
			names = append(names, name)
		}
	}
	for name := range incompatible {
		if slices.Contains(derivedMaps, name) {
			for _, d := range derivedMaps {
				if _, ok := spec.Maps[d]; ok {
					names = append(names, d)
				}
			}
			break
		}
	}
	return names
}

// moveAside renames the pins of names to <name>_replaced, so that loading
// creates those maps anew, and returns a function that moves them back.
func moveAside(mapsDir string, names []string, log logrus.FieldLogger, why map[string]error) (restore func() error, err error) {
	var moved []string
	restore = func() error {
		var errs []error
		for _, name := range moved {
			path := filepath.Join(mapsDir, name)
			os.Remove(path) // a map the failed load pinned
			if err := os.Rename(path+replacedSuffix, path); err != nil {
				errs = append(errs, fmt.Errorf("restore map pin %s: %w", path, err))
			}
		}
		return errors.Join(errs...)
	}
	for _, name := range names {
		path := filepath.Join(mapsDir, name)
		if err := os.Rename(path, path+replacedSuffix); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, errors.Join(fmt.Errorf("move map pin %s aside: %w", path, err), restore())
		}
		moved = append(moved, name)
		entry := log.WithField(fieldPin, path)
		var le *layoutError
		if errors.As(why[name], &le) {
			entry = entry.WithError(le.err)
		} else {
			entry = entry.WithField(fieldReason, "another derived map's layout changed")
		}
		entry.Warn("map layout changed: starting the map anew; the attached programs keep the old one until their links move")
	}
	return restore, nil
}

// checkPinned returns an error naming the pin and what to do when the map
// pinned at path cannot serve as m (its layout changed); it wraps
// ebpf.ErrMapIncompatible then.
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
		if !errors.Is(err, ebpf.ErrMapIncompatible) {
			err = fmt.Errorf("%w: %w", ebpf.ErrMapIncompatible, err)
		}
		return &layoutError{name: m.Name, path: path, err: err}
	}
	return nil
}

// layoutError is a pinned map of another layout than this build's.
type layoutError struct {
	name, path string
	err        error // wraps ebpf.ErrMapIncompatible: what differs
}

func (e *layoutError) Error() string {
	return fmt.Sprintf("adopt pinned map %q at %s: it was made by a roost with another layout (%v). "+
		"The attached programs keep enforcing with it, and this loader changed nothing. To start this map "+
		"empty, remove the pin (rm %s) and start the loader again: replies to connections endpoints opened "+
		"before, and later fragments of datagrams in flight, may then be dropped", e.name, e.path, e.err, e.path)
}

func (e *layoutError) Unwrap() error { return e.err }

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
