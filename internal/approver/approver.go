// Package approver is the controller behind `tlsboot approver`: it watches
// the CertificateSigningRequests of the configured signers, asks package
// approval for a decision, and writes that decision (an Approved or Denied
// condition; an Event for a denial or a CSR left for a human) back to the API
// server.
//
// Every replica keeps warm informer caches; only the holder of the leader
// Lease runs workers (see Run). Each decision is written with the
// resourceVersion the policy saw, so a CSR is decided at most once even if a
// deposed leader still has a write in flight: the second write conflicts.
package approver

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	certinformers "k8s.io/client-go/informers/certificates/v1"
	"k8s.io/client-go/kubernetes"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/tlsboot/tlsboot/approval"
)

// Defaults and limits of Options.
const (
	DefaultWorkers     = 32
	DefaultSARCacheTTL = 5 * time.Second
	// MaxSARCacheTTL bounds how long a revoked permission may still be
	// honoured: see sar.go for why reuse is safe at all.
	MaxSARCacheTTL = time.Minute
	// DefaultResync re-reads every pending CSR this often, as a safety
	// net for events that do not trigger a retry (an RBAC change).
	DefaultResync = 10 * time.Minute
	// DefaultMaxRetryDelay caps the per-CSR backoff of a CSR that waits,
	// so that a new permission is noticed within about a minute.
	DefaultMaxRetryDelay = time.Minute
	baseRetryDelay       = 250 * time.Millisecond
)

// Hooks report what the controller does, for metrics. Every field may be
// nil. They are called from worker goroutines and must be safe for
// concurrent use.
type Hooks struct {
	// Decided is called after a decision was written (or, in dry-run mode,
	// would have been), with the CSR's age at that time.
	Decided func(signer string, d approval.Decision, age time.Duration)
	// SubjectAccessReview is called for every answer given to the policy:
	// cached reports whether the answer was reused, err whether it failed.
	SubjectAccessReview func(cached bool, err error)
	// Leading is called when this replica gains (true) or loses leadership.
	Leading func(leading bool)
	// EventDropped is called for every Event the default recorder did not
	// write: "rate_limited" (its requester had its Events for the minute)
	// or "queue_full".
	EventDropped func(reason string)
}

// Options configures a Controller.
type Options struct {
	// Client talks to the API server; its rate limits bound our rate.
	Client kubernetes.Interface
	// Policy decides. Required.
	Policy *approval.Policy
	// Signers to watch; default Policy.Signers(). CSRs of other signers
	// are never read from the API, let alone touched.
	Signers []string
	// Workers decide CSRs in parallel. Default DefaultWorkers.
	Workers int
	// DryRun logs decisions and writes nothing: no condition, no Event.
	DryRun bool
	// SARCacheTTL is how long a SubjectAccessReview answer is reused for
	// the same requester and permission; 0 means DefaultSARCacheTTL, a
	// negative value disables reuse. At most MaxSARCacheTTL.
	SARCacheTTL time.Duration
	// Resync and MaxRetryDelay default to DefaultResync and
	// DefaultMaxRetryDelay.
	Resync        time.Duration
	MaxRetryDelay time.Duration
	// Identity names this replica in Events and the leader Lease.
	// Default: the host name.
	Identity string
	// Clock defaults to the real clock.
	Clock clock.WithTicker
	// Recorder records Events; default: one writing with EventClient, which
	// records no Event for approvals (denials and CSRs left for a human only).
	// A Recorder set here receives every Event.
	Recorder EventRecorder
	// EventClient writes Events; default Client. Give it its own rate
	// limiter so that Events never delay decisions in a burst.
	EventClient kubernetes.Interface
	// Hint, if set, returns advice for an operator about a decision's
	// reason (which flag to set, what to do), or "". It is added to the
	// Event and the log line, never to the CSR's condition.
	Hint  func(reason string) string
	Hooks Hooks
	// APIServer is the API server the approver's client talks to (its
	// kubeconfig's server URL, or host:port). Its serving certificate's
	// names and addresses, and those of the certificates served at the
	// default/kubernetes EndpointSlice addresses, are never approved in a
	// serving certificate; until one of them was read, serving CSRs wait
	// (apiserver_sans.go). Empty: only the EndpointSlice addresses are read.
	APIServer string
	// ReadCertificate returns the certificate a server presents; default:
	// an unverified TLS handshake, bounded in time. For tests.
	ReadCertificate func(ctx context.Context, addr, sni string) (*x509.Certificate, error)
	// IgnoreServiceIPs stops reserving Services' externalIPs and
	// load-balancer ingress (where those are the nodes' own addresses, as
	// with k3s's ServiceLB), and stops watching Services.
	IgnoreServiceIPs bool
}

// Validate reports the first invalid option.
func (o *Options) Validate() error {
	switch {
	case o.Client == nil:
		return errors.New("approver needs a Kubernetes client")
	case o.Policy == nil:
		return errors.New("approver needs a policy")
	case o.Workers < 0:
		return fmt.Errorf("workers must be positive, got %d", o.Workers)
	case o.SARCacheTTL > MaxSARCacheTTL:
		return fmt.Errorf("SubjectAccessReview cache TTL %s is longer than the maximum %s", o.SARCacheTTL, MaxSARCacheTTL)
	}
	for _, s := range o.Signers {
		if !slices.Contains(o.Policy.Signers(), s) {
			return fmt.Errorf("signer %q is not supported: the approver handles %q", s, o.Policy.Signers())
		}
	}
	return nil
}

func (o *Options) setDefaults() {
	if len(o.Signers) == 0 {
		o.Signers = o.Policy.Signers()
	}
	if o.Workers == 0 {
		o.Workers = DefaultWorkers
	}
	if o.SARCacheTTL == 0 {
		o.SARCacheTTL = DefaultSARCacheTTL
	}
	if o.Resync == 0 {
		o.Resync = DefaultResync
	}
	if o.MaxRetryDelay == 0 {
		o.MaxRetryDelay = DefaultMaxRetryDelay
	}
	if o.Identity == "" {
		o.Identity, _ = os.Hostname()
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.EventClient == nil {
		o.EventClient = o.Client
	}
}

// key identifies a queued CSR: the signer whose informer holds it, and its name.
type key struct{ signer, name string }

// Controller approves and denies CSRs. Build it with New, then call Run once.
type Controller struct {
	opts    Options
	authz   *sarAuthorizer
	csrs    map[string]certinformers.CertificateSigningRequestInformer // by signer
	nodes   corelisters.NodeLister
	leases  coordinationlisters.LeaseNamespaceLister
	cluster *clusterView
	// budget bounds the pending request bytes cached per requester, for
	// every signer's informer (transform.go).
	budget *pendingBudget
	// notified remembers the CSRs left pending with an Event, so that
	// each gets one (see Decision.Notify).
	notified notifiedSet
	synced   []cache.InformerSynced
	starts   []func(stop <-chan struct{})
	limiter  workqueue.TypedRateLimiter[key]
	queue    workqueue.TypedRateLimitingInterface[key]
	ready    atomic.Bool // caches synced
	// recorder is set by Run before any worker starts.
	recorder EventRecorder

	// leaseSeen and readySeen: when the approver saw each node's Lease
	// and Ready heartbeat change (lease.go).
	leaseSeen, readySeen *seenLog
}

// New builds a controller; nothing runs until Run.
func New(opts Options) (*Controller, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	c := &Controller{
		opts:     opts,
		authz:    newSARAuthorizer(opts.Client.AuthorizationV1().SubjectAccessReviews(), opts.SARCacheTTL, opts.Clock, opts.Hooks.SubjectAccessReview),
		csrs:     map[string]certinformers.CertificateSigningRequestInformer{},
		cluster:  &clusterView{},
		budget:   newPendingBudget(approval.MaxPendingBytesPerRequester),
		limiter:  workqueue.NewTypedItemExponentialFailureRateLimiter[key](baseRetryDelay, opts.MaxRetryDelay),
		recorder: opts.Recorder, // nil: Run starts an eventWriter
	}
	c.queue = workqueue.NewTypedRateLimitingQueueWithConfig(c.limiter, workqueue.TypedRateLimitingQueueConfig[key]{Name: "csr-approver", Clock: opts.Clock})
	if err := c.watchCSRs(); err != nil {
		return nil, err
	}
	for _, watch := range []func() error{c.watchNodes, c.watchLeases, c.watchAPIServer, c.watchReserved} {
		if err := watch(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// watchCSRs makes one informer per signer, filtered by the API server on
// spec.signerName, indexed by the node the CSR names and by the requester
// of a bound token (see boundRequesterIndex). The cache holds the
// transformCSR form of each CSR: no metadata, no request over
// approval.MaxRequestBytes or past its requester's pending budget, and no
// request or certificate once decided.
func (c *Controller) watchCSRs() error {
	for _, signer := range c.opts.Signers {
		selector := fields.OneTermEqualSelector("spec.signerName", signer).String()
		f := informers.NewSharedInformerFactoryWithOptions(c.opts.Client, c.opts.Resync,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = selector }))
		// Registered first, so that the typed informer below is this one.
		f.InformerFor(&certificatesv1.CertificateSigningRequest{}, func(client kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
			return newCSRInformer(client, selector, resync, c.budget.transformCSR)
		})
		inf := f.Certificates().V1().CertificateSigningRequests()
		if err := c.budget.attach(inf.Informer()); err != nil {
			return fmt.Errorf("watching certificate signing requests: %w", err)
		}
		if err := inf.Informer().AddIndexers(cache.Indexers{nodeIndex: indexByNode, boundRequesterIndex: indexByBoundRequester}); err != nil {
			return fmt.Errorf("indexing certificate signing requests: %w", err)
		}
		if _, err := inf.Informer().AddEventHandler(c.csrHandler(signer)); err != nil {
			return fmt.Errorf("watching certificate signing requests: %w", err)
		}
		c.csrs[signer] = inf
		c.synced = append(c.synced, inf.Informer().HasSynced)
		c.starts = append(c.starts, f.Start)
	}
	return nil
}

func (c *Controller) csrHandler(signer string) cache.ResourceEventHandler {
	add := func(obj any) {
		csr, ok := obj.(*certificatesv1.CertificateSigningRequest)
		switch {
		case !ok:
		case approval.Decided(csr):
			c.notified.forget(csr.UID)
		default:
			c.queue.Add(key{signer, csr.Name})
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    add,
		UpdateFunc: func(_, obj any) { add(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if csr, ok := obj.(*certificatesv1.CertificateSigningRequest); ok {
				c.notified.forget(csr.UID)
			}
		},
	}
}

// Ready reports nil once the caches have synced: the replica can decide,
// or take over at once when it becomes the leader.
func (c *Controller) Ready() error {
	if !c.ready.Load() {
		return errors.New("informer caches have not synced yet")
	}
	return nil
}

// Pending counts the CSRs without a decision, by signer, from the cache.
func (c *Controller) Pending() map[string]int {
	n := make(map[string]int, len(c.csrs))
	for signer, inf := range c.csrs {
		n[signer] = 0
		for _, obj := range inf.Informer().GetStore().List() {
			if csr, ok := obj.(*certificatesv1.CertificateSigningRequest); ok && !approval.Decided(csr) {
				n[signer]++
			}
		}
	}
	return n
}
