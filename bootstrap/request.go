package bootstrap

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/csrwait"
	"github.com/tlsboot/tlsboot/identity"
)

// waitTimeoutCause is the cause of the request's context when WaitTimeout
// has passed on the injected clock.
var waitTimeoutCause = fmt.Errorf("wait timeout: %w", context.DeadlineExceeded)

// ErrWaitTimeout is wrapped by Run's error when Options.WaitTimeout ran out
// before the CSR could even be created: the API server stayed unreachable,
// or kept failing, the whole time. That error also wraps the last failure
// (a *csr.ServerError when the server could not be reached). Running out
// of time while waiting for a CSR that exists is a *csr.TimeoutError
// instead.
var ErrWaitTimeout = errors.New("gave up when the wait timeout (Options.WaitTimeout) ran out")

// issued is what request got: a certificate checked against the request
// and confirmed by the API server.
type issued struct {
	certPEM    []byte
	name       string        // the CSR
	reattached bool          // the CSR existed before this run
	took       time.Duration // from submitting the CSR to its certificate
}

// request creates (or re-attaches to) the node's CSR for key, retrying
// while the server is unreachable, then waits for the certificate, checks
// it and has the API server confirm it, all within opts.WaitTimeout on
// s.clock.
func (s *server) request(ctx context.Context, key crypto.Signer, keyPEM []byte, opts Options) (issued, error) {
	logger := klog.FromContext(ctx)
	ctx, stop := withClockTimeout(ctx, s.clock, opts.WaitTimeout, waitTimeoutCause)
	defer stop()
	req := csr.NodeClient(opts.NodeName, key.Public())
	req.Expiration = opts.Expiration
	name, err := req.Name(key.Public())
	if err != nil {
		return issued{}, err
	}

	submitted := s.clock.Now()
	obj, created, err := s.submit(ctx, name, req, key)
	if err != nil {
		return issued{}, s.explain(err)
	}
	logger.Info("Certificate signing request submitted", "csr", name, "reattached", !created, "signer", req.SignerName)

	// A re-attached CSR may be decided already; a new one is watched from
	// the version Create returned, which saves a list round trip.
	certPEM, err := csrwait.ForCSR(ctx, s.client, obj, csrwait.Options{
		ProgressInterval: opts.ProgressInterval,
		Progress:         csrwait.LogProgress(logger),
		Clock:            s.clock,
	})
	if err != nil {
		if errors.Is(context.Cause(ctx), waitTimeoutCause) {
			return issued{}, &csr.TimeoutError{CSR: name, Signer: req.SignerName, Waited: opts.WaitTimeout}
		}
		return issued{}, s.explain(err)
	}
	took := s.clock.Since(submitted)
	// The key and names must match, and the certificate must be one a
	// node may hold: not a CA, no other usages (and from ClientCAFile's
	// CA, when asked). Then the API server must take it for the node.
	if _, err := csr.CheckIssued(name, certPEM, key, req, s.clock.Now(), s.roots); err != nil {
		return issued{}, err
	}
	if err := s.confirm(ctx, name, opts.NodeName, certPEM, keyPEM); err != nil {
		return issued{}, err
	}
	return issued{certPEM: certPEM, name: name, reattached: !created, took: took}, nil
}

// confirm asks the API server whether certPEM with keyPEM authenticates as
// system:node:<node> in system:nodes (identity.Confirm), retrying with
// backoff while the server does not answer, until it does or ctx ends. The
// certificate is only in memory meanwhile: an unconfirmed one is never
// stored, and a server that stays silent until WaitTimeout leaves the
// pending key, so that the next run re-attaches to the issued CSR and
// confirms again.
func (s *server) confirm(ctx context.Context, name, node string, certPEM, keyPEM []byte) error {
	client, err := s.newClient(identity.Config(s.cluster, certPEM, keyPEM))
	if err != nil {
		return fmt.Errorf("certificate signing request %s: a client for the issued certificate: %w", name, err)
	}
	logger := klog.FromContext(ctx)
	backoff := retryBackoff
	var last error // the last failure that was not ctx ending
	for {
		err := identity.Confirm(ctx, client, s.host, name, csr.NodeCommonPrefix+node, csr.NodesGroup)
		var se *csr.ServerError
		switch {
		case err == nil:
			logger.V(1).Info("The API server confirmed the issued certificate", "csr", name, "user", csr.NodeCommonPrefix+node)
			return nil
		case ctx.Err() != nil && last != nil && errors.Is(context.Cause(ctx), waitTimeoutCause):
			return fmt.Errorf("%w: certificate signing request %s was issued, but confirming its certificate with the API server kept failing (%w); run again to re-attach to it", ErrWaitTimeout, name, last)
		case ctx.Err() != nil:
			return fmt.Errorf("certificate signing request %s: confirming the issued certificate: %w", name, context.Cause(ctx))
		case !s.permanent(ctx, err):
			last = err
		case errors.As(err, &se) && se.Hint == "":
			return s.explain(err) // the bootstrap kubeconfig's server or CA
		default:
			return err
		}
		delay := RetryDelay(&backoff, 0, rand.Float64())
		logger.Info("Confirming the issued certificate with the API server failed, retrying", "csr", name, "retry_in", delay.Round(time.Millisecond).String(), "err", err)
		sleep(ctx, s.clock, delay)
	}
}

// submit calls csrwait.Submit until it succeeds, fails for good (see
// permanent), or ctx ends, waiting on s.clock between tries as RetryDelay
// says. created is false when an existing CSR was re-attached.
func (s *server) submit(ctx context.Context, name string, req csr.Request, key crypto.Signer) (*certificatesv1.CertificateSigningRequest, bool, error) {
	logger := klog.FromContext(ctx)
	backoff := retryBackoff
	var last error // the last failure that was not ctx ending
	for {
		obj, created, err := csrwait.Submit(ctx, s.client, name, req, key)
		switch {
		case err == nil:
			return obj, created, nil
		case ctx.Err() != nil:
		case s.permanent(ctx, err):
			return nil, false, err
		default:
			last = err
			var after time.Duration
			if secs, ok := apierrors.SuggestsClientDelay(err); ok && secs > 0 {
				after = time.Duration(secs) * time.Second
			}
			delay := RetryDelay(&backoff, after, rand.Float64())
			logger.Info("Creating the certificate signing request failed, retrying", "csr", name, "retry_in", delay.Round(time.Millisecond).String(), "err", err)
			if sleep(ctx, s.clock, delay) {
				continue
			}
		}
		if last != nil && errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
			return nil, false, fmt.Errorf("%w: %w", ErrWaitTimeout, last)
		}
		return nil, false, fmt.Errorf("creating certificate signing request %s: %w", name, context.Cause(ctx))
	}
}

// sleep waits d on c and reports whether it did (false: ctx ended first).
func sleep(ctx context.Context, c clock.Clock, d time.Duration) bool {
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// withClockTimeout is context.WithTimeout on c: the returned context ends
// with cause once d has passed on c. stop releases the timer and its
// goroutine, and returns only once that goroutine has.
func withClockTimeout(ctx context.Context, c clock.Clock, d time.Duration, cause error) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	t := c.NewTimer(d)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-t.C():
			cancel(cause)
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		t.Stop()
		cancel(context.Canceled)
		<-done
	}
}
