package bootstrap

import (
	"context"
	"crypto/x509"
	"errors"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/identity"
	"github.com/tlsboot/tlsboot/internal/atomicfile"
	"github.com/tlsboot/tlsboot/kubeconfig"
)

// Pacing of the calls to the server. The jitter keeps a fleet of nodes
// that restarted together from calling in step.
const (
	// healthzInterval is the time between /healthz probes while waiting
	// for the server (jittered by 20%).
	healthzInterval = 2 * time.Second
	// probeTimeout bounds one /healthz or /readyz request.
	probeTimeout = 5 * time.Second
	// unauthorizedGrace is how long a 401 is retried when the server cannot
	// tell whether it is ready: long enough for an API server to warm up.
	unauthorizedGrace = 15 * time.Second
)

// retryBackoff paces retries of a CSR create while the server is
// unreachable: quick at first (a restarting apiserver is back in seconds),
// then at most every 30s so that a long outage costs the server nothing.
var retryBackoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: 30 * time.Second}

// server is the API server as the bootstrap credentials reach it. It is
// used by one Run, from one goroutine at a time.
type server struct {
	host            string
	bootstrapPath   string                                           // the bootstrap kubeconfig, for messages
	cluster         *rest.Config                                     // the bootstrap config, for clients of issued certificates (identity.Config)
	newClient       func(*rest.Config) (kubernetes.Interface, error) // Options.NewClient
	client          kubernetes.Interface                             // authenticates with the bootstrap credentials
	roots           *x509.CertPool                                   // Options.ClientCAFile's CAs; nil when it is not set
	clock           clock.WithTicker
	healthz, readyz func(context.Context) error

	firstUnauthorized time.Time // when a 401 was first seen that readiness could not explain
}

// newServer makes the clients of opts.NewClient for cfg: one with the
// bootstrap credentials, and (on first use) an anonymous one for /readyz.
func newServer(cfg *rest.Config, opts Options) (*server, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.UserAgent == "" {
		cfg.UserAgent = "tlsboot"
	}
	// Read the CA file once, with the size limit, and hand client-go the
	// bytes: it would read the file itself, whatever its size.
	if _, err := kubeconfig.CAPool(cfg); err != nil {
		return nil, err
	}
	var roots *x509.CertPool
	var err error
	if opts.ClientCAFile != "" {
		if roots, err = csr.LoadRoots(opts.ClientCAFile); err != nil {
			return nil, err
		}
	}
	if len(cfg.CAData) == 0 && cfg.CAFile != "" {
		if cfg.CAData, err = atomicfile.ReadFile(cfg.CAFile); err != nil {
			return nil, err
		}
		cfg.CAFile = ""
	}
	client, err := opts.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	s := &server{host: cfg.Host, bootstrapPath: opts.BootstrapKubeconfigPath, cluster: cfg, newClient: opts.NewClient, client: client, roots: roots, clock: opts.Clock}
	s.healthz = func(ctx context.Context) error { return probe(ctx, client, "/healthz") }
	// /readyz is asked without credentials: a token the server rejects
	// would get a 401 there too. Only a 401 needs it, so the anonymous
	// client is made on first use.
	s.readyz = func(ctx context.Context) error {
		anon, err := opts.NewClient(rest.AnonymousClientConfig(cfg))
		if err != nil {
			return err
		}
		return probe(ctx, anon, "/readyz")
	}
	return s, nil
}

// probe GETs path with a bound of probeTimeout. A client without a REST
// client (client-go's fake clientset) has no server to probe: it answers.
func probe(ctx context.Context, client kubernetes.Interface, path string) error {
	rc := client.Discovery().RESTClient()
	if rc == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	_, err := rc.Get().AbsPath(path).DoRaw(ctx)
	return err
}

// waitForServer polls /healthz with jitter until it answers, for at most
// d on s.clock. A server that stays silent is not an error (the CSR create
// is tried anyway, and retried), but an answer that can never become a
// success — a TLS verification failure, rejected credentials — ends the
// wait at once with that error. It returns ctx's error if ctx ends first.
func (s *server) waitForServer(ctx context.Context, d time.Duration) error {
	logger := klog.FromContext(ctx)
	deadline := s.clock.NewTimer(d)
	defer deadline.Stop()
	var last error
	for {
		err := csr.ClassifyServerError(s.healthz(ctx), s.host, "waiting for the API server", "")
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case s.permanent(ctx, err):
			return err
		case last == nil || last.Error() != err.Error():
			logger.Info("Waiting for the API server", "err", err)
		}
		last = err
		next := s.clock.NewTimer(wait.Jitter(healthzInterval, 0.2))
		select {
		case <-ctx.Done():
			next.Stop()
			return ctx.Err()
		case <-deadline.C():
			next.Stop()
			logger.Info("API server did not answer in time, trying anyway", "waited", d.String(), "err", last)
			return nil
		case <-next.C():
		}
	}
}

// permanent reports errors that retrying cannot fix: rejected credentials,
// missing permissions, invalid requests, failed TLS verification, a CSR
// that ended or conflicts, a certificate that must not be stored (or
// cannot be confirmed by an API server without SelfSubjectReviews).
//
// A 401 is permanent only once the server is ready: an API server that has
// just started rejects bootstrap tokens until its caches hold their Secrets,
// and a node must ride that out, not give up. When the server will not say
// (anonymous requests refused, as also happens while its RBAC cache is
// still empty), the 401 is believed after unauthorizedGrace on s.clock.
func (s *server) permanent(ctx context.Context, err error) bool {
	var outcome *csr.OutcomeError
	var conflict *csr.ConflictError
	var cert *csr.CertificateError
	var id *csr.IdentityError
	var notServed *identity.NotServedError
	switch {
	case errors.As(err, &outcome) || errors.As(err, &conflict) || errors.As(err, &cert) || errors.As(err, &id) || errors.As(err, &notServed):
		return true
	case errors.Is(err, csr.ErrForbidden) || errors.Is(err, csr.ErrTLS):
		return true
	case errors.Is(err, csr.ErrUnauthorized):
		return s.unauthorizedIsFinal(ctx)
	case errors.Is(err, csr.ErrUnreachable):
		return false
	}
	// What is left is an API status about the request itself, or a
	// context error. An invalid request stays invalid.
	return apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)
}

// explain completes a *csr.ServerError with what only bootstrap knows: the
// bootstrap kubeconfig the server, CA and credentials came from, and what
// to do about a bootstrap token the server rejects. Other errors are
// returned as they are.
func (s *server) explain(err error) error {
	var se *csr.ServerError
	if !errors.As(err, &se) {
		return err
	}
	se.Kubeconfig = s.bootstrapPath
	switch {
	case errors.Is(se.Kind, csr.ErrUnauthorized):
		se.Hint = "the bootstrap token is invalid or expired; create a new one (for example 'kubeadm token create') and put it in that file"
	case errors.Is(se.Kind, csr.ErrForbidden):
		se.Hint = "bind the token's group to the system:node-bootstrapper ClusterRole"
	}
	return err
}

// unauthorizedIsFinal decides a 401 by the server's readiness.
func (s *server) unauthorizedIsFinal(ctx context.Context) bool {
	rerr := s.readyz(ctx)
	switch {
	case rerr == nil:
		return true
	case apierrors.IsUnauthorized(rerr) || apierrors.IsForbidden(rerr):
		if s.firstUnauthorized.IsZero() {
			s.firstUnauthorized = s.clock.Now()
		}
		return s.clock.Since(s.firstUnauthorized) >= unauthorizedGrace
	default: // not ready yet, or unreachable again
		return false
	}
}
