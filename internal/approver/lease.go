package approver

import (
	"context"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/tlsboot/tlsboot/approval"
)

// seenLog records, by object name, when the approver saw one heartbeat
// field change (a Lease's renewTime, a Node's Ready lastHeartbeatTime), by
// the approver's own clock, as kube-controller-manager's node-lifecycle
// controller records its own probe time whenever renewTime changes: the
// node's clock, which stamps the field, may be minutes off and never
// decides (approval.Heartbeats).
//
// A change is a new value of the field: not a new resourceVersion (a node
// that stops renewing must go stale even if its labels or holder change),
// and never the informer's periodic resync, which delivers the same value.
//
// It fails closed when its watch may have missed changes: until the
// informer has synced, and after a watch error until the informer has
// listed again (reflectors always list after an error) and delivered the
// object anew, its observation of that object is unknown (zero).
type seenLog struct {
	clock  clock.PassiveClock
	synced cache.InformerSynced
	// listedRV is the informer's last synced resourceVersion.
	listedRV func() string

	mu sync.Mutex // guards the fields below
	// entries by object name.
	entries map[string]seenEntry
	// epoch counts watch errors; an entry delivered in an earlier epoch is
	// unknown until delivered again.
	epoch uint64
	// brokenRV is listedRV at the last watch error, while no list has
	// followed it; "" when the watch is whole.
	brokenRV string
	broken   bool
}

type seenEntry struct {
	stamp time.Time
	obs   approval.Observation
	epoch uint64
}

func newSeenLog(clk clock.PassiveClock, inf cache.SharedIndexInformer) *seenLog {
	return &seenLog{clock: clk, synced: inf.HasSynced, listedRV: inf.LastSyncResourceVersion, entries: map[string]seenEntry{}}
}

// saw records that the informer delivered name with the heartbeat stamp;
// initial: in the informer's first list, so a value of unknown age. It
// reports whether that is a change the approver saw.
func (l *seenLog) saw(name string, stamp time.Time, initial bool) (changed bool) {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[name]
	switch {
	case !ok:
		// Listed at start: seen since now, not seen changing. Created (or
		// first listed after a broken watch) while watching: a change.
		changed = !initial
		e.obs = approval.Observation{At: now, Changed: changed}
	case !e.stamp.Equal(stamp):
		changed = true
		e.obs = approval.Observation{At: now, Changed: true}
	}
	e.stamp, e.epoch = stamp, l.epoch
	l.entries[name] = e
	return changed
}

func (l *seenLog) forget(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.entries, name)
}

// watchBroke: the informer's watch failed; it lists again after a backoff.
func (l *seenLog) watchBroke() {
	rv := l.listedRV()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.epoch++
	l.broken, l.brokenRV = true, rv
}

// whole reports whether the watch has synced and has not failed since its
// last list.
func (l *seenLog) whole() bool {
	if !l.synced() {
		return false
	}
	rv := l.listedRV()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.broken && rv != l.brokenRV {
		l.broken = false // listed again
	}
	return !l.broken
}

// observation is what the approver saw of name's heartbeat; zero when it
// cannot tell.
func (l *seenLog) observation(name string) approval.Observation {
	if !l.whole() {
		return approval.Observation{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[name]
	if !ok || e.epoch != l.epoch {
		return approval.Observation{}
	}
	return e.obs
}

// handler feeds the log from an informer: stamp reads the heartbeat of an
// object (ok false for another type); changed is called with the name of an
// object whose heartbeat changed.
func (l *seenLog) handler(stamp func(obj any) (name string, t time.Time, ok bool), changed func(name string)) cache.ResourceEventHandler {
	saw := func(obj any, initial bool) {
		if name, t, ok := stamp(obj); ok && l.saw(name, t, initial) {
			changed(name)
		}
	}
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc:    saw,
		UpdateFunc: func(_, obj any) { saw(obj, false) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if name, _, ok := stamp(obj); ok {
				l.forget(name)
			}
		},
	}
}

// watchErrors makes inf report its watch errors to l, logged as client-go
// does by default.
func (l *seenLog) watchErrors(inf cache.SharedIndexInformer) error {
	return inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		l.watchBroke()
		cache.DefaultWatchErrorHandler(ctx, r, err)
	})
}

// leaseStamp is a node Lease's renewTime (zero without one).
func leaseStamp(obj any) (string, time.Time, bool) {
	l, ok := obj.(*coordinationv1.Lease)
	if !ok {
		return "", time.Time{}, false
	}
	if l.Spec.RenewTime == nil {
		return l.Name, time.Time{}, true
	}
	return l.Name, l.Spec.RenewTime.Time, true
}

// readyStamp is a Node's Ready condition's lastHeartbeatTime (zero without one).
func readyStamp(obj any) (string, time.Time, bool) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return "", time.Time{}, false
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return n.Name, c.LastHeartbeatTime.Time, true
		}
	}
	return n.Name, time.Time{}, true
}

// heartbeats is what the approver saw of node name's heartbeats; nil when
// its Lease watch cannot tell (a Lease missing from the cache may then
// exist).
func (c *Controller) heartbeats(name string) *approval.Heartbeats {
	if !c.leaseSeen.whole() {
		return nil
	}
	return &approval.Heartbeats{Lease: c.leaseSeen.observation(name), Ready: c.readySeen.observation(name)}
}
