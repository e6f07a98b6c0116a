// Package csrwait submits a certificate signing request or re-attaches to
// one, and waits for its certificate: the part of requesting a certificate
// that talks to the API server. What is asked for, and the checks of what
// comes back, are package csr's, and so are the errors returned here:
// *csr.OutcomeError (denied, failed, deleted, replaced), *csr.ConflictError,
// *csr.ServerError (unauthorized, forbidden, TLS, unreachable) and
// *csr.TimeoutError.
//
// It watches instead of polling: a list then a watch on just that name,
// through an informer, so that a dropped watch connection is resumed (with a
// fresh list if the resource version has expired) and no change is missed.
package csrwait

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
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
// first CSR of that name that Wait sees. It is safe for concurrent use, and
// every goroutine it starts has ended when it returns.
//
// It returns:
//   - a *csr.OutcomeError when the CSR is denied (csr.ErrDenied), failed
//     (csr.ErrFailed), deleted (csr.ErrDeleted, also when no such CSR exists
//     when Wait starts), or deleted and replaced by another of the same name
//     (csr.ErrReplaced). A deletion gives the same error whichever way Wait
//     learns of it;
//   - a *csr.ServerError when listing or watching the CSR is refused for a
//     reason waiting cannot fix: csr.ErrUnauthorized, csr.ErrForbidden or
//     csr.ErrTLS. An unreachable server is retried with backoff until ctx
//     ends;
//   - a *csr.TimeoutError when ctx's deadline passes first;
//   - ctx.Err(), wrapped with what it was waiting for, when ctx is cancelled.
//
// An approved CSR without a certificate is still pending: the signer has
// yet to sign it. A CSR with a certificate is done even if the event does
// not show the Approved condition.
func Wait(ctx context.Context, client kubernetes.Interface, name string, uid types.UID, opts Options) ([]byte, error) {
	return newWaiter(name, uid, "", opts).wait(ctx, client)
}

// ForCSR waits for the certificate of obj, a CSR just created or re-attached
// (as Submit returns it): at once when obj is already decided, else
// watching from obj's resource version (see Options.ResourceVersion). It
// returns what Wait returns.
func ForCSR(ctx context.Context, client kubernetes.Interface, obj *certificatesv1.CertificateSigningRequest, opts Options) ([]byte, error) {
	if cert, err := csr.Outcome(obj); err != nil || len(cert) > 0 {
		return cert, err
	}
	opts.ResourceVersion = obj.ResourceVersion
	w := newWaiter(obj.Name, obj.UID, obj.Spec.SignerName, opts)
	w.approved = csr.Approved(obj)
	return w.wait(ctx, client)
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

// waiter holds the state of one wait; it is used by one goroutine.
type waiter struct {
	name     string
	uid      types.UID
	opts     Options
	start    time.Time // on the real clock, which deadlines use
	signer   string    // the CSR's signer, once known, for the timeout error
	approved bool      // seen an Approved condition, for the timeout error
	seen     bool      // seen the CSR at all
}

func newWaiter(name string, uid types.UID, signer string, opts Options) *waiter {
	return &waiter{name: name, uid: uid, signer: signer, opts: opts, start: time.Now(), seen: opts.ResourceVersion != ""}
}

func (w *waiter) wait(ctx context.Context, client kubernetes.Interface) ([]byte, error) {
	if w.opts.ResourceVersion != "" {
		cert, err := w.fromVersion(ctx, client)
		if !errors.Is(err, errWatchEnded) {
			return cert, err
		}
		if ctx.Err() != nil {
			return nil, w.ended(ctx)
		}
		klog.FromContext(ctx).V(2).Info("Watch of the certificate signing request ended, listing it again", "csr", w.name)
	}
	return w.listWatch(ctx, client)
}

// fromVersion waits on one watch that starts after opts.ResourceVersion.
func (w *waiter) fromVersion(ctx context.Context, client kubernetes.Interface) ([]byte, error) {
	watcher, err := client.CertificatesV1().CertificateSigningRequests().Watch(ctx, metav1.ListOptions{
		FieldSelector:       fields.OneTermEqualSelector("metadata.name", w.name).String(),
		ResourceVersion:     w.opts.ResourceVersion,
		AllowWatchBookmarks: true,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, w.ended(ctx)
		}
		// List and watch will tell a refusal from a hiccup.
		return nil, errWatchEnded
	}
	defer watcher.Stop()
	return w.run(ctx, watcher.ResultChan(), nil)
}

// update is what the waiter learns, in the order it happened.
type update struct {
	ev     watch.Event // a change of the CSR
	synced bool        // the first list is in: what it held came before
	err    error       // the wait must end with this error
}

// listWatch lists and watches the CSR with an informer until an outcome.
//
// The informer's handlers and the "synced" mark go through one unbuffered
// channel. The informer reports itself synced only after its handlers have
// run for everything in the first list, so the mark arrives after those
// events: a CSR that is absent at the mark is absent, not merely late. That
// makes a deletion look the same whether it happened before the list or
// during the watch.
func (w *waiter) listWatch(ctx context.Context, client kubernetes.Interface) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// Cancel, then wait: nothing touches client after we return.
	defer wg.Wait()
	defer cancel()

	updates := make(chan update)
	send := func(u update) {
		select {
		case updates <- u:
		case <-ctx.Done():
		}
	}
	logger := klog.FromContext(ctx)
	_, informer := cache.NewInformerWithOptions(cache.InformerOptions{
		Logger:        &logger,
		ListerWatcher: listWatch(client, w.name, send),
		ObjectType:    &certificatesv1.CertificateSigningRequest{},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { send(event(watch.Added, obj)) },
			UpdateFunc: func(_, obj any) { send(event(watch.Modified, obj)) },
			DeleteFunc: func(obj any) {
				if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = tomb.Obj
				}
				send(event(watch.Deleted, obj))
			},
		},
	})
	wg.Add(2)
	go func() {
		defer wg.Done()
		informer.RunWithContext(ctx)
	}()
	go func() {
		defer wg.Done()
		select {
		case <-informer.HasSyncedChecker().Done():
			send(update{synced: true})
		case <-ctx.Done():
		}
	}()
	return w.run(ctx, nil, updates)
}

func event(t watch.EventType, obj any) update {
	o, _ := obj.(runtime.Object)
	return update{ev: watch.Event{Type: t, Object: o}}
}

// listWatch lists and watches the CSR called name and nothing else. A
// refusal that retrying cannot fix is sent to fail as a *csr.ServerError;
// the informer retries everything else.
func listWatch(client kubernetes.Interface, name string, fail func(update)) cache.ListerWatcher {
	selector := fields.OneTermEqualSelector("metadata.name", name).String()
	csrs := client.CertificatesV1().CertificateSigningRequests()
	server := serverURL(client)
	check := func(ctx context.Context, err error, op string) error {
		if err == nil || ctx.Err() != nil {
			return err
		}
		var se *csr.ServerError
		if errors.As(csr.ClassifyServerError(err, server, op, name), &se) && !errors.Is(se.Kind, csr.ErrUnreachable) {
			fail(update{err: se})
		}
		return err
	}
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = selector
			list, err := csrs.List(ctx, o)
			return list, check(ctx, err, "listing certificate signing request")
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			wi, err := csrs.Watch(ctx, o)
			return wi, check(ctx, err, "watching certificate signing request")
		},
	}
	// Passing the client lets the reflector know whether it can use
	// streaming lists (fake clientsets cannot).
	return cache.ToListWatcherWithWatchListSemantics(lw, client)
}

// run waits on events (a single watch: its end is errWatchEnded) or on
// updates (list and watch); the other is nil.
func (w *waiter) run(ctx context.Context, events <-chan watch.Event, updates <-chan update) ([]byte, error) {
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
			return nil, w.ended(ctx)
		case ev, ok := <-events:
			if !ok || ev.Type == watch.Error {
				return nil, errWatchEnded
			}
			cert, done, err := w.handle(ev)
			if done || err != nil {
				return cert, err
			}
		case u := <-updates:
			switch {
			case u.err != nil:
				return nil, u.err
			case u.synced && !w.seen:
				return nil, w.deleted()
			case u.synced:
				continue
			}
			cert, done, err := w.handle(u.ev)
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

// ended is the error for a ctx that ended before an outcome.
func (w *waiter) ended(ctx context.Context) error {
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("waiting for certificate signing request %s %s: %w", w.name, w.state(), ctx.Err())
	}
	waited := time.Since(w.start)
	if deadline, ok := ctx.Deadline(); ok {
		// The deadline, not the moment we noticed it: the message then
		// shows the caller's round timeout. A deadline that had passed
		// before the wait began means no wait at all.
		waited = max(deadline.Sub(w.start), 0)
	}
	if waited >= time.Second {
		waited = waited.Round(time.Second)
	} else {
		waited = waited.Round(time.Millisecond)
	}
	return &csr.TimeoutError{CSR: w.name, Signer: w.signer, Waited: waited, Approved: w.approved}
}

// deleted is the one error for a CSR that is gone, however we learnt it.
func (w *waiter) deleted() error {
	return &csr.OutcomeError{Name: w.name, Kind: csr.ErrDeleted}
}

// state describes what the CSR was waiting for, for the error of a
// cancelled wait.
func (w *waiter) state() string {
	switch {
	case !w.seen:
		return "to appear"
	case w.approved:
		return "to be signed (approved, no certificate yet)"
	}
	return "to be approved"
}

// handle applies one event and reports the certificate and done when it is
// issued, or an error when it never will be.
func (w *waiter) handle(ev watch.Event) (cert []byte, done bool, err error) {
	obj, ok := ev.Object.(*certificatesv1.CertificateSigningRequest)
	if !ok || obj.Name != w.name {
		// The informer only sends CSRs; the name check guards against a
		// server (or fake) that ignores the field selector.
		return nil, false, nil
	}
	if ev.Type == watch.Deleted {
		return nil, true, w.deleted()
	}
	if w.uid == "" {
		w.uid = obj.UID
	}
	if obj.UID != w.uid {
		// Deleted and recreated while the watch was down: the informer
		// shows that as an update to a new object of the same name.
		return nil, true, &csr.OutcomeError{
			Name: w.name, Kind: csr.ErrReplaced,
			Message: fmt.Sprintf("another request of that name (uid %s) took the place of uid %s", obj.UID, w.uid),
		}
	}
	w.seen = true
	w.signer = obj.Spec.SignerName
	w.approved = w.approved || csr.Approved(obj)
	cert, err = csr.Outcome(obj)
	if err != nil {
		return nil, true, err
	}
	return cert, len(cert) > 0, nil
}
