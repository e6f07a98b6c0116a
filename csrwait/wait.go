// Package csrwait waits for one CertificateSigningRequest, identified by name
// and UID, to be issued, and reports why when it never will be: denied,
// failed, deleted or replaced, as the typed errors of package csr.
//
// It watches instead of polling: a list then a watch on just that name,
// through an informer, so that a dropped watch connection is resumed (with a
// fresh list if the resource version has expired) and no change is missed.
package csrwait

import (
	"context"
	"errors"
	"fmt"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/tlsboot/tlsboot/csr"
)

// DefaultProgressInterval is how often Progress is called while pending when
// Options.ProgressInterval is zero.
const DefaultProgressInterval = 30 * time.Second

// Options tunes Wait. The zero value is ready to use.
type Options struct {
	// Progress, if set, is called when the wait starts (waited is zero) and
	// then every ProgressInterval while the CSR is still pending, with the
	// CSR's name and how long Wait has waited, so that a command can tell
	// its user what to do, such as "kubectl certificate approve NAME". It
	// runs on Wait's goroutine: a slow Progress delays Wait.
	Progress func(name string, waited time.Duration)

	// ProgressInterval is the time between Progress calls; zero means
	// DefaultProgressInterval.
	ProgressInterval time.Duration

	// Clock drives the progress ticker; nil means the real clock.
	Clock clock.WithTicker

	// ResourceVersion, if set, is a version of the CSR the caller has seen
	// (as Create or Get returned it). Wait then first watches for changes
	// after it: one request instead of a list and a watch, so issuance is
	// seen sooner. If that watch cannot start or ends before an outcome,
	// Wait carries on with list and watch, which survive any disconnect.
	ResourceVersion string
}

// errWatchEnded ends a wait on a single watch that closed or failed; the
// caller falls back to list and watch.
var errWatchEnded = errors.New("watch ended")

// Wait waits until the CSR name with UID uid has a certificate and returns it
// (PEM, as the signer wrote it, possibly a chain). An empty uid accepts the
// first CSR of that name that Wait sees.
//
// It returns an *csr.OutcomeError when the CSR is denied (csr.ErrDenied),
// failed (csr.ErrFailed), deleted, or deleted and replaced by another of the
// same name (csr.ErrDeleted; Reason csr.ReasonReplaced for the latter),
// including when no such CSR exists when Wait starts. When ctx ends first it
// returns ctx.Err() wrapped with what it was waiting for.
//
// An approved CSR without a certificate is still pending: the signer has
// yet to sign it. A CSR with a certificate is done even if the event does
// not show the Approved condition.
func Wait(ctx context.Context, client kubernetes.Interface, name string, uid types.UID, opts Options) ([]byte, error) {
	if opts.ResourceVersion != "" {
		cert, err := waitFromVersion(ctx, client, name, uid, opts)
		if !errors.Is(err, errWatchEnded) {
			return cert, err
		}
		klog.FromContext(ctx).V(2).Info("Watch of the certificate signing request ended, listing it again", "csr", name)
	}
	return waitListWatch(ctx, client, name, uid, opts)
}

// ForCSR waits for the certificate of obj, a CSR just created or re-attached
// (as csr.Submit returns it): at once when obj is already decided, else
// watching from obj's resource version (see Options.ResourceVersion).
func ForCSR(ctx context.Context, client kubernetes.Interface, obj *certificatesv1.CertificateSigningRequest, opts Options) ([]byte, error) {
	if cert, err := csr.Outcome(obj); err != nil || len(cert) > 0 {
		return cert, err
	}
	opts.ResourceVersion = obj.ResourceVersion
	return Wait(ctx, client, obj.Name, obj.UID, opts)
}

// LogProgress returns an Options.Progress that tells, through logger, what
// is awaited and how an operator can unblock it.
func LogProgress(logger klog.Logger) func(name string, waited time.Duration) {
	return func(name string, waited time.Duration) {
		logger.Info("Waiting for the certificate signing request to be approved and signed",
			"csr", name, "waited", waited.Round(time.Second).String(),
			"hint", "an operator can approve it with: kubectl certificate approve "+name)
	}
}

// waitFromVersion waits on one watch that starts after opts.ResourceVersion.
func waitFromVersion(ctx context.Context, client kubernetes.Interface, name string, uid types.UID, opts Options) ([]byte, error) {
	w, err := client.CertificatesV1().CertificateSigningRequests().Watch(ctx, metav1.ListOptions{
		FieldSelector:       fields.OneTermEqualSelector("metadata.name", name).String(),
		ResourceVersion:     opts.ResourceVersion,
		AllowWatchBookmarks: true,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("waiting for certificate signing request %s: %w", name, ctx.Err())
		}
		return nil, errWatchEnded
	}
	defer w.Stop()
	wt := &waiter{name: name, uid: uid, opts: opts, seen: true}
	return wt.run(ctx, w.ResultChan(), nil)
}

// waitListWatch lists and watches the CSR with an informer until an outcome.
func waitListWatch(ctx context.Context, client kubernetes.Interface, name string, uid types.UID, opts Options) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	indexer, informer, events, done := watchtools.NewIndexerInformerWatcherWithLogger(
		klog.FromContext(ctx), listWatch(client, name), &certificatesv1.CertificateSigningRequest{})
	// Stop the informer, then wait for it so nothing touches client after
	// we return.
	defer func() { <-done }()
	defer events.Stop()

	// Once the first list is in, a CSR missing from the cache was deleted
	// before we started; its events alone cannot tell us, since the
	// informer hands them to us asynchronously and there may be none.
	missing := make(chan bool, 1)
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
			_, exists, err := indexer.GetByKey(name)
			missing <- err == nil && !exists
		}
	}()

	w := &waiter{name: name, uid: uid, opts: opts}
	return w.run(ctx, events.ResultChan(), missing)
}

// listWatch lists and watches the CSR called name and nothing else.
func listWatch(client kubernetes.Interface, name string) cache.ListerWatcher {
	selector := fields.OneTermEqualSelector("metadata.name", name).String()
	csrs := client.CertificatesV1().CertificateSigningRequests()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = selector
			return csrs.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return csrs.Watch(ctx, o)
		},
	}
	// Passing the client lets the reflector know whether it can use
	// streaming lists (fake clientsets cannot).
	return cache.ToListWatcherWithWatchListSemantics(lw, client)
}

// waiter holds the state of one Wait call; it is used by one goroutine.
type waiter struct {
	name     string
	uid      types.UID
	opts     Options
	approved bool // seen an Approved condition, for the timeout message
	seen     bool // seen the CSR at all
}

func (w *waiter) run(ctx context.Context, events <-chan watch.Event, missing <-chan bool) ([]byte, error) {
	clk := w.opts.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	interval := w.opts.ProgressInterval
	if interval <= 0 {
		interval = DefaultProgressInterval
	}
	start := clk.Now()
	// The ticker exists before the first Progress call, so a test that
	// sees that call can step a fake clock and know the tick will fire.
	ticker := clk.NewTicker(interval)
	defer ticker.Stop()
	w.progress(0)

	logger := klog.FromContext(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for certificate signing request %s %s: %w", w.name, w.state(), ctx.Err())
		case gone := <-missing:
			if gone {
				return nil, &csr.OutcomeError{Name: w.name, Kind: csr.ErrDeleted, Message: "it does not exist"}
			}
		case ev, ok := <-events:
			if !ok || ev.Type == watch.Error {
				return nil, errWatchEnded
			}
			cert, done, err := w.handle(ev)
			if done || err != nil {
				return cert, err
			}
		case <-ticker.C():
			logger.V(4).Info("Still waiting for certificate signing request", "csr", w.name, "approved", w.approved)
			w.progress(clk.Since(start))
		}
	}
}

func (w *waiter) progress(waited time.Duration) {
	if w.opts.Progress != nil {
		w.opts.Progress(w.name, waited)
	}
}

// state describes what the CSR was waiting for, for the timeout error.
func (w *waiter) state() string {
	switch {
	case !w.seen:
		return "to appear"
	case w.approved:
		return "to be signed (approved, no certificate yet)"
	}
	return "to be approved"
}

// handle applies one informer event and reports the certificate and done
// when it is issued, or an error when it never will be.
func (w *waiter) handle(ev watch.Event) (cert []byte, done bool, err error) {
	obj, ok := ev.Object.(*certificatesv1.CertificateSigningRequest)
	if !ok || obj.Name != w.name {
		// The informer only sends CSRs; the name check guards against a
		// server (or fake) that ignores the field selector.
		return nil, false, nil
	}
	if ev.Type == watch.Deleted {
		return nil, true, &csr.OutcomeError{Name: w.name, Kind: csr.ErrDeleted}
	}
	if w.uid == "" {
		w.uid = obj.UID
	}
	if obj.UID != w.uid {
		// Deleted and recreated while the watch was down: the informer
		// shows that as an update to a new object of the same name.
		return nil, true, &csr.OutcomeError{
			Name: w.name, Kind: csr.ErrDeleted, Reason: csr.ReasonReplaced,
			Message: fmt.Sprintf("another request of that name (uid %s) took the place of uid %s", obj.UID, w.uid),
		}
	}
	w.seen = true
	w.approved = w.approved || csr.Approved(obj)
	cert, err = csr.Outcome(obj)
	if err != nil {
		return nil, true, err
	}
	return cert, len(cert) > 0, nil
}
