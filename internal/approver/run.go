package approver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

// LeaderElection configures the leader Lease. Only the holder decides CSRs.
type LeaderElection struct {
	Namespace, Name string
	// LeaseDuration, RenewDeadline and RetryPeriod are client-go's; zero
	// values mean 15s, 10s and 2s, as in kube-controller-manager.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// ErrLostLeadership is returned by Run when another replica took the Lease:
// the process should exit and start afresh, as kube-controller-manager does.
var ErrLostLeadership = errors.New("lost the leader lease")

// Run starts the informers, waits for their caches, then decides CSRs until
// ctx ends: at once when le is nil, otherwise only while holding the Lease.
// It returns when every worker has stopped. Call it once.
func (c *Controller) Run(ctx context.Context, le *LeaderElection) error {
	logger := klog.FromContext(ctx)
	defer c.queue.ShutDown()
	stopRecorder := c.startRecorder(ctx)
	defer stopRecorder()
	if err := c.watchServiceCIDRs(ctx); err != nil {
		return err
	}
	for _, start := range c.starts {
		start(ctx.Done())
	}
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("waiting for informer caches: %w", context.Cause(ctx))
	}
	defer c.startServingNames(ctx)() // the reserved names (apiserver_sans.go)
	c.ready.Store(true)
	logger.Info("Caches synced", "signers", c.opts.Signers, "workers", c.opts.Workers, "dry_run", c.opts.DryRun)
	if le == nil {
		c.work(ctx)
		return nil
	}
	return c.lead(ctx, le)
}

// startRecorder starts the Event writer unless a recorder was given. On
// shutdown the queued Events are still written, for up to eventsTimeout.
func (c *Controller) startRecorder(ctx context.Context) (stop func()) {
	if c.opts.Recorder != nil {
		c.recorder = c.opts.Recorder
		return func() {}
	}
	w := newEventWriter(klog.FromContext(ctx), c.opts.EventClient, c.opts.Identity, c.opts.Clock)
	w.dropped = c.opts.Hooks.EventDropped
	writeCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.start(writeCtx)
	c.recorder = w
	return func() {
		timer := time.AfterFunc(eventsTimeout, cancel)
		defer timer.Stop()
		w.stop()
		cancel()
	}
}

// lead runs the workers while this replica holds the Lease.
func (c *Controller) lead(ctx context.Context, le *LeaderElection) error {
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, le.Namespace, le.Name,
		c.opts.Client.CoreV1(), c.opts.Client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: c.opts.Identity})
	if err != nil {
		return fmt.Errorf("leader lease %s/%s: %w", le.Namespace, le.Name, err)
	}
	workers := &leaderWork{}
	elector, err := leaderelection.NewLeaderElector(c.electorConfig(ctx, le, lock, workers))
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	elector.Run(ctx)
	// client-go does not wait for OnStartedLeading to return; we do, so
	// that no worker acts after Run returns.
	c.queue.ShutDown()
	workers.stopAndWait()
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("%w %s/%s: exiting so that a fresh process competes for it", ErrLostLeadership, le.Namespace, le.Name)
}

func (c *Controller) electorConfig(ctx context.Context, le *LeaderElection, lock resourcelock.Interface, workers *leaderWork) leaderelection.LeaderElectionConfig {
	logger := klog.FromContext(ctx)
	return leaderelection.LeaderElectionConfig{
		Lock:          lock,
		Name:          le.Name,
		LeaseDuration: orDefault(le.LeaseDuration, 15*time.Second),
		RenewDeadline: orDefault(le.RenewDeadline, 10*time.Second),
		RetryPeriod:   orDefault(le.RetryPeriod, 2*time.Second),
		// Release on shutdown so that the other replica takes over at once.
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				workers.run(func() {
					logger.Info("Became the leader: deciding certificate signing requests", "lease", le.Namespace+"/"+le.Name, "identity", c.opts.Identity)
					c.callLeading(true)
					c.work(ctx)
				})
			},
			OnStoppedLeading: func() { c.callLeading(false) },
			OnNewLeader: func(id string) {
				if id != c.opts.Identity {
					logger.Info("Another replica leads", "leader", id)
				}
			},
		},
	}
}

// leaderWork runs the leader's work in client-go's OnStartedLeading
// goroutine, and lets lead wait for it, or keep it from starting at all if
// the elector already returned.
type leaderWork struct {
	mu      sync.Mutex // guards stopped and the Add of wg
	stopped bool
	wg      sync.WaitGroup
}

func (w *leaderWork) run(f func()) {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	w.wg.Add(1)
	w.mu.Unlock()
	defer w.wg.Done()
	f()
}

func (w *leaderWork) stopAndWait() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.wg.Wait()
}

func (c *Controller) callLeading(leading bool) {
	if c.opts.Hooks.Leading != nil {
		c.opts.Hooks.Leading(leading)
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// work runs the workers until ctx ends, then waits for them.
func (c *Controller) work(ctx context.Context) {
	go func() {
		<-ctx.Done()
		c.queue.ShutDown()
	}()
	var wg sync.WaitGroup
	for range c.opts.Workers {
		wg.Go(func() {
			wait.UntilWithContext(ctx, func(ctx context.Context) {
				for c.processNext(ctx) {
				}
			}, time.Second)
		})
	}
	wg.Wait()
}
