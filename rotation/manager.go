package rotation

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/connrotation"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/tlsboot/tlsboot/csr"
)

// Defaults of Options.
const (
	DefaultWaitTimeout    = csr.DefaultWaitTimeout
	DefaultInitialBackoff = 5 * time.Second
	DefaultMaxBackoff     = 5 * time.Minute
	// DefaultMaxSleep bounds one sleep of the loop. Timers run on the
	// monotonic clock, which stops while the machine is suspended and
	// ignores steps of the wall clock, but certificate validity is wall
	// clock time: waking up now and then to look at the wall clock is
	// what makes a resumed laptop or a corrected clock notice an expired
	// certificate. Every 10 minutes costs nothing measurable.
	DefaultMaxSleep = 10 * time.Minute
)

// Hooks report what a Manager does, for metrics. Each is optional, called
// on the Manager's goroutine, and must not block.
type Hooks struct {
	// Current is called with the certificate in use whenever it changes;
	// nil when there is none.
	Current func(name string, cert *x509.Certificate)
	// Rotated is called after a new certificate was stored, with the time
	// from CSR submission to issuance.
	Rotated func(name string, reason Reason, issuance time.Duration)
	// Failed is called after each failed renewal attempt, with the error
	// and its Failure.
	Failed func(name string, failure Failure, err error)
	// Recovering is called with true when the Manager starts relying on
	// Options.Recover (bootstrap credentials) and false once it has a
	// certificate of its own again.
	Recovering func(name string, on bool)
	// TemplateMismatch is called, before Failed, when an issued
	// certificate (of a renewal or of Recover) is unusable: a
	// *csr.CertificateError.
	TemplateMismatch func(name string)
}

// Options configures a Manager. Fields marked required must be set; the
// zero value of the others takes the documented default.
type Options struct {
	// Name of the certificate, "client" or "serving": logs and hooks (required).
	Name string
	// Store holds the certificate and the pending key (required).
	Store Store
	// KeyType of new keys. Default ecdsa-p256.
	KeyType csr.KeyType
	// ReuseKey renews with the current key instead of a new one. The CSR
	// then gets a server-generated name: a deterministic one would find
	// the CSR that issued the current certificate.
	ReuseKey bool
	// Template returns the request for a key (required).
	Template func(pub crypto.PublicKey) csr.Request
	// Roots, if set, returns the CAs that an issued certificate must
	// chain to (nil: no such check), read at every renewal: an opt-in
	// check for operators who know their signer's CA (tlsboot's
	// --client-ca-file, --serving-ca-file). An issued certificate that
	// does not match the request, is a CA, has other extended key usages
	// than Template asks for, or does not chain to Roots is never stored:
	// the attempt fails with a *csr.CertificateError naming the CSR
	// (FailTemplate), and the pending key is dropped.
	Roots func() (*x509.CertPool, error)
	// Confirm, if set, asks the API server whether it accepts an issued
	// certificate, certPEM with its key keyPEM, issued by the CSR csrName:
	// it runs after the offline checks (Template, Roots) and before the
	// certificate is stored. A manager of a client certificate should set
	// it (identity.ConfirmNode for a node's): only the API server knows
	// which CAs it trusts for client certificates. An error fails the
	// attempt and nothing is stored. A *csr.IdentityError (the server
	// rejects the certificate, or authenticates it as someone else) also
	// drops the pending key, so that the next attempt asks with a new key
	// under a new CSR (FailIdentity); any other error (an unreachable
	// server) keeps it, so that the next attempt re-attaches to the issued
	// CSR and confirms again. It is called on the Manager's goroutine and
	// must return when ctx ends.
	Confirm func(ctx context.Context, csrName string, certPEM, keyPEM []byte) error
	// Client returns a client that authenticates with the node's current
	// client certificate (required). Its errors count as FailOther.
	Client func(ctx context.Context) (kubernetes.Interface, error)
	// Recover, if set, obtains and stores a certificate without the
	// current one (the client certificate's bootstrap) when that is
	// missing, expired, not yet valid or rejected. It returns the time
	// from CSR submission to issuance, or an error wrapping
	// ErrNoCredentials when it has nothing to recover with. Its other
	// errors are classified like a renewal's: wrap (%w) the typed errors
	// of package csr so that the Failure is the right one.
	Recover func(ctx context.Context) (time.Duration, error)
	// Verify, if set, asks the API server whether it accepts the current
	// certificate; it runs once at start, when that is valid. An error
	// wrapping a *csr.ServerError of kind csr.ErrUnauthorized (401)
	// triggers recovery; other errors are logged and ignored.
	Verify func(ctx context.Context) error
	// Usable, if set, is an extra offline check of a valid current
	// certificate (for example that the kubeconfig uses it); an error
	// makes it count as missing.
	Usable func() error
	// Policy says when a certificate is due.
	Policy Policy
	// WaitTimeout bounds the wait for issuance. Default 1h.
	WaitTimeout time.Duration
	// InitialBackoff and MaxBackoff pace retries after failures, doubling
	// from one to the other. Defaults 5s and 5m.
	InitialBackoff, MaxBackoff time.Duration
	// MaxSleep bounds one sleep. Default DefaultMaxSleep.
	MaxSleep time.Duration
	// Clock is the time source. Default the real clock.
	Clock clock.WithTicker
	// Rand returns a number in [0, 1) for jitter. Default math/rand/v2.
	Rand func() float64
	// Hooks report progress.
	Hooks Hooks
}

// Validate reports the first missing required option or negative
// duration, as a one-line error.
func (o Options) Validate() error {
	switch {
	case o.Name == "":
		return errors.New("rotation: options: name is empty")
	case o.Store == nil:
		return errors.New("rotation: options: store is nil")
	case o.Template == nil || o.Client == nil:
		return errors.New("rotation: options: template and client are required")
	case o.InitialBackoff < 0 || o.MaxBackoff < 0 || o.WaitTimeout < 0 || o.MaxSleep < 0:
		return errors.New("rotation: options: durations must not be negative")
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.KeyType == "" {
		o.KeyType = csr.DefaultKeyType
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = DefaultWaitTimeout
	}
	if o.InitialBackoff == 0 {
		o.InitialBackoff = DefaultInitialBackoff
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxSleep == 0 {
		o.MaxSleep = DefaultMaxSleep
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
}

// Status is a snapshot of a Manager, for readiness reports.
type Status struct {
	// Certificate in use; nil when there is none.
	Certificate *x509.Certificate
	// Schedule of Certificate.
	Schedule Schedule
	// LastError is the error of the last attempt, nil after a success.
	LastError error
	// Recovering is true while the Manager relies on Recover.
	Recovering bool
}

// Manager keeps one certificate valid. Create it with New and call Run
// once. Trigger, Status, Current, GetClientCertificate, GetCertificate and
// RESTConfig are safe for concurrent use, before, during and after Run,
// and never wait for the loop.
type Manager struct {
	opts Options
	// forced is set by Trigger and cleared by the loop when it acts on it;
	// wake (capacity 1) interrupts the loop's sleep. Trigger only ever
	// sends to wake without blocking and the loop only receives, so no
	// interleaving of Triggers, wake-ups and shutdown can block anyone.
	forced atomic.Bool
	wake   chan struct{}
	// afterWake, if set (tests only), runs in sleep right after a Trigger
	// woke it: the window in which issue 9's hang happened.
	afterWake func()

	// current is the certificate in memory (see Current); written only by
	// the loop, and by New before the loop exists.
	current atomic.Pointer[tls.Certificate]
	// conns tracks the connections of RESTConfig clients, to close them
	// when current changes.
	conns *connrotation.ConnectionTracker

	// Loop state, touched only by Run's goroutine.
	known        certInfo // the certificate the schedule was computed for
	storeErr     string   // the last error of Store.Current that was logged
	unauthorized bool     // the server rejected the current certificate
	started      bool     // the first evaluation is done
	retry        Reason   // the reason of a failed attempt, to retry

	mu     sync.Mutex // guards status
	status Status
}

// certInfo is what the loop remembers about the certificate in use.
type certInfo struct {
	serial   string    // "none" when the store is empty, "" before the first look
	issuedAt time.Time // zero: unknown
	r        float64   // jitter sample, drawn once per certificate
	schedule Schedule
}

// New returns a Manager for opts, or the error of opts.Validate. It reads
// the store once, so that Current has the stored certificate before Run
// starts; a store that cannot be read is not an error here (Run obtains a
// certificate).
func New(opts Options) (*Manager, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	m := &Manager{opts: opts, wake: make(chan struct{}, 1), conns: connrotation.NewConnectionTracker()}
	// Read the store now, so that Current, and the clients of RESTConfig,
	// have the certificate before Run starts. A failure is Run's to
	// report.
	if cur, err := opts.Store.Current(); err == nil {
		m.setCurrent(context.Background(), cur)
	}
	return m, nil
}

// Trigger asks for a renewal now, as SIGHUP does. It never blocks, may be
// called before, during or after Run, and is idempotent: Triggers that
// arrive before the loop acts on the first one ask for one renewal. A
// renewal already in progress is not restarted; a Trigger during it asks
// for another one after it.
func (m *Manager) Trigger() {
	m.forced.Store(true)
	select {
	case m.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// Status returns a snapshot of the Manager's state, as the loop last saw
// it.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status
}

func (m *Manager) update(f func(*Status)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(&m.status)
}

// Run keeps the certificate valid until ctx ends, then returns nil; call it
// once. It sleeps until the next deadline (at most MaxSleep), renews, and
// after a failure retries with capped exponential backoff. A certificate
// that has already expired when Run starts is recovered only after
// Policy.RecoverDelay (a Trigger ends that wait), so that a fleet powered
// on together does not re-bootstrap in the same second. Failures are
// reported through Hooks and Status, never returned. When ctx ends, the
// request in progress is abandoned (its pending key stays, so the next
// start re-attaches to its CSR), and a certificate already being stored is
// stored first; nothing else delays the return.
func (m *Manager) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithValues("certificate", m.opts.Name)
	ctx = klog.NewContext(ctx, logger)
	m.verify(ctx)
	m.spreadRecovery(ctx)
	failures := 0
	for ctx.Err() == nil {
		reason, wait := m.next(ctx)
		if reason == "" {
			m.sleep(ctx, wait)
			continue
		}
		err := m.renew(ctx, reason)
		if ctx.Err() != nil {
			break
		}
		m.update(func(s *Status) { s.LastError = err })
		if err == nil {
			failures, m.retry = 0, ""
			continue
		}
		// A forced or resumed renewal that failed is still wanted; the
		// other reasons are found again by looking at the certificate.
		failures, m.retry = failures+1, reason
		m.failed(ctx, err, failures)
	}
	logger.V(1).Info("Certificate manager stopped")
	return nil
}

// failed reports a failed attempt and waits before the next one.
func (m *Manager) failed(ctx context.Context, err error, failures int) {
	f := classify(err)
	if f == FailTemplate && m.opts.Hooks.TemplateMismatch != nil {
		m.opts.Hooks.TemplateMismatch(m.opts.Name)
	}
	if m.opts.Hooks.Failed != nil {
		m.opts.Hooks.Failed(m.opts.Name, f, err)
	}
	d := m.backoff(failures)
	klog.FromContext(ctx).Info("Certificate renewal failed, will retry", "failure", f, "attempt", failures,
		"retry_in", d.Round(time.Millisecond).String(), "err", err)
	m.sleep(ctx, d)
}

// backoff returns the wait after the n-th consecutive failure: doubling
// from InitialBackoff, capped at MaxBackoff, with ±10% jitter so that
// nodes failing together do not retry together.
func (m *Manager) backoff(n int) time.Duration {
	d := m.opts.InitialBackoff
	for i := 1; i < n && d < m.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, m.opts.MaxBackoff)
	return time.Duration(float64(d) * (0.9 + 0.2*m.opts.Rand()))
}

// spreadRecovery waits Policy.RecoverDelay before the first evaluation
// when the stored certificate has already expired and Recover would
// replace it: a Manager that starts that way is most likely one of a
// fleet powered on together after an outage longer than the lifetime, and
// every node re-bootstrapping in the same second is a storm the API server
// answers with 429s (bench/storm). A Trigger or the end of ctx ends the
// wait; a missing certificate (a new node) is not delayed.
func (m *Manager) spreadRecovery(ctx context.Context) {
	if m.opts.Recover == nil {
		return
	}
	cur, err := m.opts.Store.Current()
	if err != nil || cur.Leaf == nil || !m.opts.Clock.Now().After(cur.Leaf.NotAfter) {
		return
	}
	d := m.opts.Policy.RecoverDelay(m.opts.Rand())
	if d <= 0 {
		return
	}
	klog.FromContext(ctx).Info("The certificate expired while the node was down; waiting a random delay before re-bootstrapping, so that nodes that come back together do not all ask at once",
		"not_after", cur.Leaf.NotAfter.UTC().Format(time.RFC3339), "wait", d.Round(time.Millisecond).String())
	m.sleep(ctx, d)
}

// sleep waits for d, a Trigger or the end of ctx. The Trigger's request
// stays in m.forced for next to see; sleep never sends anything.
func (m *Manager) sleep(ctx context.Context, d time.Duration) {
	t := m.opts.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C():
	case <-m.wake:
		if m.afterWake != nil {
			m.afterWake()
		}
	}
}

// verify asks the server, once, whether it accepts the current
// certificate. Only a clear 401 matters; an unreachable server is not a
// reason to replace a certificate.
func (m *Manager) verify(ctx context.Context) {
	if m.opts.Verify == nil {
		return
	}
	if cur, err := m.opts.Store.Current(); err != nil || !valid(cur.Leaf, m.opts.Clock.Now()) {
		return
	}
	err := m.opts.Verify(ctx)
	if err != nil && classify(err) == FailUnauthorized {
		klog.FromContext(ctx).Info("The API server rejects the current certificate", "err", err)
		m.unauthorized = true
	} else if err != nil {
		klog.FromContext(ctx).V(1).Info("Could not verify the current certificate with the API server", "err", err)
	}
}

func valid(c *x509.Certificate, now time.Time) bool {
	return c != nil && !now.Before(c.NotBefore) && !now.After(c.NotAfter)
}
