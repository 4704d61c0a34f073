package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// hook is where one program attaches on an endpoint's host-side interface.
type hook struct {
	prog   string          // program name, also the pin's file name
	tcx    ebpf.AttachType // TCX attach type
	parent uint32          // clsact parent
}

// hooks in the order they attach: from_endpoint first, so that the
// connections an endpoint opens are tracked before its ingress is
// enforced. They detach in the reverse order.
var hooks = []hook{
	{prog: "from_endpoint", tcx: ebpf.AttachTCXIngress, parent: netlink.HANDLE_MIN_INGRESS},
	{prog: "to_endpoint", tcx: ebpf.AttachTCXEgress, parent: netlink.HANDLE_MIN_EGRESS},
}

// clsact filter identity: priority 1 runs first among filters of the hook.
const (
	clsactPriority = 1
	clsactHandle   = 1
	clsactPrefix   = "roost-"
)

// program returns the loaded program of h.
func (l *Loader) program(h hook) *ebpf.Program {
	if h.prog == "to_endpoint" {
		return l.objs.ToEndpoint
	}
	return l.objs.FromEndpoint
}

// linkPin returns where the TCX link of h on ifindex is pinned.
func (l *Loader) linkPin(ifindex int, h hook) string {
	return filepath.Join(l.linksDir(), strconv.Itoa(ifindex), h.prog)
}

// attach makes both programs run on ifindex: it moves existing
// attachments (pinned TCX links, or roost's clsact filters) to this
// loader's programs, and attaches where nothing is. It returns Attached if
// it attached anything, Updated if it only moved attachments, "" if
// everything already ran this loader's programs. Runs in the namespace.
func (l *Loader) attach(ifindex int) (Action, AttachMode, error) {
	var action Action
	note := func(a Action) {
		if a == Attached || action == "" {
			action = a
		}
	}
	for _, h := range hooks {
		var (
			a   Action
			err error
		)
		if l.useTCX {
			a, err = l.attachTCX(ifindex, h)
		} else {
			a, err = l.attachClsact(ifindex, h)
		}
		if err != nil {
			return "", l.mode(), fmt.Errorf("%s: %w", h.prog, err)
		}
		note(a)
	}
	return action, l.mode(), nil
}

// attachTCX adopts the pinned TCX link of h on ifindex, updating it to
// this loader's program, or attaches a new one at the head of the chain
// and pins it. A newly attached link replaces roost's clsact filter there,
// which is deleted only after.
func (l *Loader) attachTCX(ifindex int, h hook) (Action, error) {
	prog := l.program(h)
	pin := l.linkPin(ifindex, h)
	lk, err := link.LoadPinnedLink(pin, nil)
	switch {
	case err == nil:
		info, err := lk.Info()
		if err != nil {
			lk.Close()
			return "", fmt.Errorf("pinned link %s: %w", pin, err)
		}
		if tcx := info.TCX(); tcx != nil && int(tcx.Ifindex) == ifindex && ebpf.AttachType(tcx.AttachType) == h.tcx {
			defer lk.Close()
			if cur, _ := programID(prog); info.Program == cur {
				return "", nil
			}
			if err := lk.Update(prog); err != nil {
				return "", fmt.Errorf("update pinned link %s: %w", pin, err)
			}
			return Updated, nil
		}
		// A link whose interface is gone (the kernel reports ifindex 0),
		// or that is not what the pin's name says: replace it. Holding it
		// open keeps it attached until its successor is pinned.
		l.log.WithField(fieldPin, pin).Warn("replacing a pinned link that is not attached here")
		stale := lk
		defer stale.Close()
		if err := stale.Unpin(); err != nil {
			return "", fmt.Errorf("unpin stale link: %w", err)
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return "", fmt.Errorf("load pinned link %s: %w", pin, err)
	}

	lk, err = link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: h.tcx, Anchor: link.Head()})
	if err != nil {
		return "", fmt.Errorf("attach tcx to interface %d: %w", ifindex, err)
	}
	defer lk.Close() // the pin keeps it
	if err := os.MkdirAll(filepath.Dir(pin), 0o700); err != nil {
		return "", fmt.Errorf("pin link: %w", err)
	}
	if err := lk.Pin(pin); err != nil {
		return "", fmt.Errorf("pin link: %w", err)
	}
	if err := l.deleteClsact(ifindex, h); err != nil {
		return "", err
	}
	return Attached, nil
}

// attachClsact makes roost's clsact filter of h on ifindex run this
// loader's program: an atomic filter replace when it exists, an add
// otherwise. A pinned TCX link of h there is detached only after.
func (l *Loader) attachClsact(ifindex int, h hook) (Action, error) {
	prog := l.program(h)
	lk, err := l.nl.LinkByIndex(ifindex)
	if err != nil {
		return "", fmt.Errorf("interface %d: %w", ifindex, err)
	}
	if err := l.ensureClsact(lk); err != nil {
		return "", err
	}
	existing, err := l.clsactFilters(lk, h)
	if err != nil {
		return "", err
	}
	cur, _ := programID(prog)
	action := Attached
	for _, f := range existing {
		if isOurFilter(f) {
			if ebpf.ProgramID(f.Id) == cur {
				action = ""
			} else {
				action = Updated
			}
		}
	}
	if action != "" {
		f := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: ifindex,
				Parent:    h.parent,
				Handle:    netlink.MakeHandle(0, clsactHandle),
				Protocol:  unix.ETH_P_ALL,
				Priority:  clsactPriority,
			},
			Fd:           prog.FD(),
			Name:         clsactPrefix + h.prog,
			DirectAction: true,
		}
		if err := l.nl.FilterReplace(f); err != nil {
			return "", fmt.Errorf("clsact filter on %s: %w", lk.Attrs().Name, err)
		}
	}
	// Filters of ours at another priority or handle (another version).
	for _, f := range existing {
		if !isOurFilter(f) && f.Name == clsactPrefix+h.prog {
			if err := l.nl.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
				return "", fmt.Errorf("delete old clsact filter on %s: %w", lk.Attrs().Name, err)
			}
		}
	}
	if err := l.detachTCX(ifindex, h); err != nil {
		return "", err
	}
	return action, nil
}

// isOurFilter reports whether f is the filter attachClsact writes.
func isOurFilter(f *netlink.BpfFilter) bool {
	a := f.Attrs()
	return a.Priority == clsactPriority && a.Handle == netlink.MakeHandle(0, clsactHandle) &&
		len(f.Name) > len(clsactPrefix) && f.Name[:len(clsactPrefix)] == clsactPrefix
}

// ensureClsact adds a clsact qdisc to lk unless it has one.
func (l *Loader) ensureClsact(lk netlink.Link) error {
	qs, err := l.nl.QdiscList(lk)
	if err != nil {
		return fmt.Errorf("list qdiscs of %s: %w", lk.Attrs().Name, err)
	}
	for _, q := range qs {
		if q.Type() == "clsact" {
			return nil
		}
	}
	q := &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: lk.Attrs().Index,
		Handle:    netlink.MakeHandle(0xffff, 0),
		Parent:    netlink.HANDLE_CLSACT,
	}}
	if err := l.nl.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add clsact qdisc to %s: %w", lk.Attrs().Name, err)
	}
	return nil
}

// clsactFilters returns the bpf filters named for h at h's clsact hook.
func (l *Loader) clsactFilters(lk netlink.Link, h hook) ([]*netlink.BpfFilter, error) {
	fs, err := l.nl.FilterList(lk, h.parent)
	if err != nil {
		return nil, fmt.Errorf("list filters of %s: %w", lk.Attrs().Name, err)
	}
	var out []*netlink.BpfFilter
	for _, f := range fs {
		if bf, ok := f.(*netlink.BpfFilter); ok && bf.Name == clsactPrefix+h.prog {
			out = append(out, bf)
		}
	}
	return out, nil
}

// deleteClsact deletes roost's clsact filters of h on ifindex, if any. A
// missing interface or qdisc is no error.
func (l *Loader) deleteClsact(ifindex int, h hook) error {
	lk, err := l.nl.LinkByIndex(ifindex)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return nil
		}
		return fmt.Errorf("interface %d: %w", ifindex, err)
	}
	fs, err := l.clsactFilters(lk, h)
	if err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil // no clsact qdisc
		}
		return err
	}
	for _, f := range fs {
		if err := l.nl.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("delete clsact filter on %s: %w", lk.Attrs().Name, err)
		}
		l.log.WithField(fieldInterface, lk.Attrs().Name).WithField(fieldProgram, h.prog).Info("deleted clsact filter")
	}
	return nil
}

// detachTCX detaches and unpins the pinned TCX link of h on ifindex, if
// any. A link whose interface is gone is only unpinned.
func (l *Loader) detachTCX(ifindex int, h hook) error {
	pin := l.linkPin(ifindex, h)
	lk, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		// Not a link: remove whatever is there.
		if rmErr := os.Remove(pin); rmErr != nil {
			return fmt.Errorf("remove pin %s: %w (after: %w)", pin, rmErr, err)
		}
		return nil
	}
	defer lk.Close()
	if err := lk.Detach(); err != nil && !errors.Is(err, unix.ENOLINK) && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("detach link %s: %w", pin, err)
	}
	if err := lk.Unpin(); err != nil {
		return fmt.Errorf("unpin link %s: %w", pin, err)
	}
	return nil
}

// detach removes both programs from ifindex: TCX links (then their pins)
// and clsact filters. It returns the interface's name, empty when it is
// gone. Runs in the namespace.
func (l *Loader) detach(ifindex int) (string, error) {
	name := ""
	if lk, err := l.nl.LinkByIndex(ifindex); err == nil {
		name = lk.Attrs().Name
	}
	for i := len(hooks) - 1; i >= 0; i-- {
		h := hooks[i]
		if err := l.detachTCX(ifindex, h); err != nil {
			return name, err
		}
		if err := l.deleteClsact(ifindex, h); err != nil {
			return name, err
		}
	}
	dir := filepath.Join(l.linksDir(), strconv.Itoa(ifindex))
	if err := os.RemoveAll(dir); err != nil {
		return name, fmt.Errorf("remove pins: %w", err)
	}
	return name, nil
}

// pinnedInterfaces returns the ifindexes that have a directory of link
// pins; other entries of the links directory are removed.
func (l *Loader) pinnedInterfaces() ([]uint32, error) {
	entries, err := os.ReadDir(l.linksDir())
	if err != nil {
		return nil, fmt.Errorf("list link pins: %w", err)
	}
	var out []uint32
	for _, e := range entries {
		n, err := strconv.ParseUint(e.Name(), 10, 32)
		if err == nil && e.IsDir() && n > 0 {
			out = append(out, uint32(n))
			continue
		}
		path := filepath.Join(l.linksDir(), e.Name())
		if err := os.RemoveAll(path); err != nil {
			return nil, fmt.Errorf("remove stray pin: %w", err)
		}
		l.log.WithField(fieldPin, path).Warn("removed stray pin")
	}
	return out, nil
}

// programID returns the kernel's id of prog.
func programID(prog *ebpf.Program) (ebpf.ProgramID, error) {
	info, err := prog.Info()
	if err != nil {
		return 0, fmt.Errorf("program info: %w", err)
	}
	id, ok := info.ID()
	if !ok {
		return 0, errors.New("program info: no id")
	}
	return id, nil
}
