package k8swatch

import (
	"context"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
)

// SyncGuard watches an informer until its first sync: it keeps the last list
// or watch error, and ends the watch (through cancel) on the errors retrying
// cannot heal, Forbidden and Unauthorized, so that a missing RBAC rule is an
// error instead of an endless wait. Its methods are safe for concurrent use.
type SyncGuard struct {
	cancel context.CancelFunc

	mu      sync.Mutex
	synced  bool
	lastErr error // last list/watch error before the first sync
	fatal   error // the error that ended the watch before the first sync
}

// NewSyncGuard returns a guard that calls cancel to end the watch.
func NewSyncGuard(cancel context.CancelFunc) *SyncGuard { return &SyncGuard{cancel: cancel} }

// WatchError is the informer's watch error handler
// (SetWatchErrorHandlerWithContext). Before the first sync it notes the
// error for Err and ends the watch on Forbidden and Unauthorized; every other
// error gets client-go's default handling (logged through klog, retried).
func (g *SyncGuard) WatchError(ctx context.Context, r *cache.Reflector, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.synced {
		g.lastErr = err
		if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
			// Err returns this error; it is not logged here too.
			if g.fatal == nil {
				g.fatal = err
				g.cancel()
			}
			return
		}
	}
	cache.DefaultWatchErrorHandler(ctx, r, err)
}

// Synced records that the informer has synced.
func (g *SyncGuard) Synced() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.synced = true
}

// Err says why the informer did not sync before ctx ended. what names the
// watch ("watch node n1"); rbac says what access the caller needs.
func (g *SyncGuard) Err(ctx context.Context, what, rbac string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fatal != nil {
		return fmt.Errorf("%s: %w (check the credentials and RBAC: %s)", what, g.fatal, rbac)
	}
	if g.lastErr != nil {
		return fmt.Errorf("%s: stopped before the first list succeeded (last error: %v): %w", what, g.lastErr, ctx.Err())
	}
	return fmt.Errorf("%s: stopped before the first list completed: %w", what, ctx.Err())
}
