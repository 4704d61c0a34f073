package endpoints

import (
	"context"
	"fmt"
	"sync"

	"k8s.io/client-go/tools/cache"

	"github.com/roost-net/roost/internal/k8swatch"
)

// storeWatch is a watch of one informer whose state is computed from the
// informer's store: WatchPods, WatchNamespaces and WatchNodes.
type storeWatch[S any] struct {
	// what names the watch in errors ("watch nodes"); rbac says what access
	// it needs.
	what, rbac string
	// transform strips objects before the informer stores them.
	transform cache.TransformFunc
	// changed reports whether an update from oldObj to newObj can change
	// the state; adds and deletes always can.
	changed func(oldObj, newObj any) bool
	// state returns the state of the objects in the store.
	state func(objs []any) S
	// equal reports whether two states are the same.
	equal func(a, b S) bool
}

// run runs inf until ctx is done, reporting through fn as WatchNamespaces
// documents.
func (w storeWatch[S]) run(ctx context.Context, inf cache.SharedIndexInformer, fn func(S)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	guard := k8swatch.NewSyncGuard(cancel)
	dirty := newWakeup()
	if err := inf.SetWatchErrorHandlerWithContext(guard.WatchError); err != nil {
		return fmt.Errorf("%s: %w", w.what, err)
	}
	if err := inf.SetTransform(w.transform); err != nil {
		return fmt.Errorf("%s: %w", w.what, err)
	}
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { dirty.poke() },
		UpdateFunc: func(oldObj, newObj any) {
			if w.changed(oldObj, newObj) {
				dirty.poke()
			}
		},
		DeleteFunc: func(any) { dirty.poke() },
	})
	if err != nil {
		return fmt.Errorf("%s: %w", w.what, err)
	}

	var wg sync.WaitGroup
	wg.Go(func() { inf.RunWithContext(ctx) })
	defer func() {
		cancel()
		wg.Wait()
	}()

	if !cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		return guard.Err(ctx, w.what, w.rbac)
	}
	guard.Synced()

	var last S
	for first := true; ; first = false {
		s := w.state(inf.GetStore().List())
		if first || !w.equal(s, last) {
			last = s
			fn(s)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-dirty:
		}
	}
}

// wakeup holds one token when something may have changed: pokes coalesce
// until the token is taken.
type wakeup chan struct{}

func newWakeup() wakeup { return make(wakeup, 1) }

// poke notes that something may have changed.
func (w wakeup) poke() {
	select {
	case w <- struct{}{}:
	default:
	}
}
