package bootstrap

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/csrwait"
	"github.com/tlsboot/tlsboot/internal/atomicfile"
	"github.com/tlsboot/tlsboot/kubeconfig"
)

// retryBackoff paces retries of a CSR create while the server is
// unreachable: quick at first (a restarting apiserver is back in seconds),
// then at most every 30s so that a long outage costs the server nothing.
var retryBackoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: 30 * time.Second}

// server is the API server as the bootstrap credentials reach it.
type server struct {
	cfg    *rest.Config
	client kubernetes.Interface // authenticates with the bootstrap credentials
	roots  *x509.CertPool       // the cluster CA of the kubeconfig; nil if it names none

	firstUnauthorized time.Time // when a 401 was first seen that readiness could not explain
}

func newServer(cfg *rest.Config) (*server, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.UserAgent == "" {
		cfg.UserAgent = "tlsboot"
	}
	// Read the CA file once, with the size limit, and hand client-go the
	// bytes: it would read the file itself, whatever its size.
	roots, err := kubeconfig.CAPool(cfg)
	if err != nil {
		return nil, err
	}
	if len(cfg.CAData) == 0 && cfg.CAFile != "" {
		if cfg.CAData, err = atomicfile.ReadFile(cfg.CAFile); err != nil {
			return nil, err
		}
		cfg.CAFile = ""
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &server{cfg: cfg, client: client, roots: roots}, nil
}

// UnsafeCertificateError reports an issued certificate that matches the
// request's key and names but that a node must not hold (see
// csr.CertificateError). It was not stored; the temporary key is kept.
type UnsafeCertificateError struct {
	CSR string
	Err *csr.CertificateError
}

func (e *UnsafeCertificateError) Error() string {
	return fmt.Sprintf("certificate signing request %s: %v, not stored: check the signer of %s, then delete the CSR with 'kubectl delete csr %s' and run again",
		e.CSR, e.Err, e.CSR, e.CSR)
}

func (e *UnsafeCertificateError) Unwrap() error { return e.Err }

// waitForServer polls /healthz with jitter until it answers, for at most
// d. A server that stays silent is not an error (the CSR create is tried
// anyway, and retried), but an answer that can never become a success —
// a TLS verification failure, rejected credentials — ends the run at once.
func (s *server) waitForServer(ctx context.Context, d time.Duration) error {
	logger := klog.FromContext(ctx)
	waitCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var last error
	for {
		rctx, rcancel := context.WithTimeout(waitCtx, 5*time.Second)
		_, err := s.client.Discovery().RESTClient().Get().AbsPath("/healthz").DoRaw(rctx)
		rcancel()
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
		select {
		case <-waitCtx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			logger.Info("API server did not answer in time, trying anyway", "waited", d, "err", last)
			return nil
		case <-time.After(wait.Jitter(2*time.Second, 0.2)):
		}
	}
}

// request creates (or re-attaches to) the node's CSR, retrying while the
// server is unreachable, then waits for the certificate and checks it.
func (s *server) request(ctx context.Context, req csr.Request, key crypto.Signer, opts Options, res *Result) ([]byte, error) {
	logger := klog.FromContext(ctx)
	ctx, cancel := context.WithTimeout(ctx, opts.WaitTimeout)
	defer cancel()
	name, err := req.Name(key.Public())
	if err != nil {
		return nil, err
	}
	res.CSRName = name

	submitted := time.Now()
	obj, created, err := s.submit(ctx, name, req, key)
	if err != nil {
		return nil, err
	}
	res.Reattached = !created
	logger.Info("Certificate signing request submitted", "csr", name, "reattached", res.Reattached, "signer", req.SignerName)

	// A re-attached CSR may be decided already; a new one is watched from
	// the version Create returned, which saves a list round trip.
	certPEM, err := csrwait.ForCSR(ctx, s.client, obj, csrwait.Options{
		ProgressInterval: opts.ProgressInterval,
		Progress:         csrwait.LogProgress(logger),
	})
	if err != nil {
		if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
			return nil, fmt.Errorf("certificate signing request %s was not issued within %v: approve it with 'kubectl certificate approve %s', check that kube-controller-manager signs %s, or raise --wait-timeout", name, opts.WaitTimeout, name, req.SignerName)
		}
		return nil, err
	}
	res.Issuance = time.Since(submitted)
	if _, err := csr.Check(certPEM, key, req, opts.Now(), s.roots); err != nil {
		var unsafe *csr.CertificateError
		if errors.As(err, &unsafe) {
			// The key and names match, but the certificate is not one a
			// node may hold: a CA, other usages, or another CA's.
			return nil, &UnsafeCertificateError{CSR: name, Err: unsafe}
		}
		return nil, fmt.Errorf("certificate signing request %s: the signer returned an unusable certificate, not stored: %w; check the signer, then delete the CSR with 'kubectl delete csr %s' and run again", name, err, name)
	}
	return certPEM, nil
}

// submit calls csrwait.Submit until it succeeds, fails for good, or ctx ends.
// created is false when an existing CSR was re-attached.
func (s *server) submit(ctx context.Context, name string, req csr.Request, key crypto.Signer) (obj *certificatesv1.CertificateSigningRequest, created bool, err error) {
	logger := klog.FromContext(ctx)
	backoff := retryBackoff
	for {
		obj, created, err = csrwait.Submit(ctx, s.client, name, req, key)
		var outcome *csr.OutcomeError
		var conflict *csr.ConflictError
		switch {
		case err == nil:
			return obj, created, nil
		case s.permanent(ctx, err) || errors.As(err, &outcome) || errors.As(err, &conflict):
			return nil, false, err
		}
		delay := backoff.Step()
		logger.Info("Creating the certificate signing request failed, retrying", "csr", name, "retryIn", delay.Round(time.Millisecond).String(), "err", err)
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
				return nil, false, fmt.Errorf("creating certificate signing request %s: gave up when --wait-timeout ran out: %w", name, err)
			}
			return nil, false, ctx.Err()
		case <-time.After(delay):
		}
	}
}

// permanent reports errors that retrying cannot fix: rejected credentials,
// missing permissions, invalid requests, failed TLS verification.
//
// A 401 is permanent only once the server is ready: an API server that has
// just started rejects bootstrap tokens until its caches hold their Secrets,
// and a node must ride that out, not give up. When the server will not say
// (anonymous requests refused, as also happens while its RBAC cache is
// still empty), the 401 is believed after unauthorizedGrace.
func (s *server) permanent(ctx context.Context, err error) bool {
	if !apierrors.IsUnauthorized(err) {
		return apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || tlsVerification(err)
	}
	rerr := s.readyz(ctx)
	switch {
	case rerr == nil:
		return true
	case apierrors.IsUnauthorized(rerr) || apierrors.IsForbidden(rerr):
		if s.firstUnauthorized.IsZero() {
			s.firstUnauthorized = time.Now()
		}
		return time.Since(s.firstUnauthorized) >= unauthorizedGrace
	default: // not ready yet, or unreachable again
		return false
	}
}

// readyz asks /readyz without credentials: a token the server rejects
// would get a 401 there too. Only a 401 needs this, so the anonymous
// client is made here rather than up front.
func (s *server) readyz(ctx context.Context) error {
	anon, err := kubernetes.NewForConfig(rest.AnonymousClientConfig(s.cfg))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = anon.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	return err
}

// unauthorizedGrace is how long a 401 is retried when the server cannot
// tell whether it is ready: long enough for an API server to warm up.
const unauthorizedGrace = 15 * time.Second

func tlsVerification(err error) bool {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	return errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verify)
}

// explain turns errors from the server into one line that says what to do.
func explain(err error, cfg *rest.Config, bootstrapPath string) error {
	var verify *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	switch {
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("the API server at %s rejected the bootstrap credentials in %s (401 Unauthorized): the bootstrap token is invalid or expired; create a new one (for example 'kubeadm token create') and put it in that file", cfg.Host, bootstrapPath)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("the bootstrap credentials in %s may not do this (403 Forbidden: %s): bind the token's group to the system:node-bootstrapper ClusterRole", bootstrapPath, apiMessage(err))
	case errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &verify):
		return fmt.Errorf("TLS verification of the API server %s failed (%s): check the certificate-authority of the cluster in %s", cfg.Host, tlsCause(err), bootstrapPath)
	}
	return err
}

func apiMessage(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return status.Status().Message
	}
	return err.Error()
}

func tlsCause(err error) string {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	switch {
	case errors.As(err, &unknownCA):
		return "its certificate is signed by an unknown authority"
	case errors.As(err, &hostname):
		return hostname.Error()
	}
	var verify *tls.CertificateVerificationError
	if errors.As(err, &verify) {
		return verify.Err.Error()
	}
	return err.Error()
}

// validNodeName accepts what the API server accepts as a Node name.
func validNodeName(name string) error {
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return fmt.Errorf("node name %q is not valid: %s", name, errs[0])
	}
	return nil
}
