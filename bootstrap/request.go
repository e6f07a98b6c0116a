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

// issued is what request got: a certificate checked against the request.
type issued struct {
	certPEM    []byte
	name       string        // the CSR
	reattached bool          // the CSR existed before this run
	took       time.Duration // from submitting the CSR to its certificate
}

// request creates (or re-attaches to) the node's CSR for key, retrying
// while the server is unreachable, then waits for the certificate and
// checks it, all within opts.WaitTimeout on s.clock.
func (s *server) request(ctx context.Context, key crypto.Signer, opts Options) (issued, error) {
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
	// node may hold: not a CA, no other usages, from the cluster's CA.
	if _, err := csr.CheckIssued(name, certPEM, key, req, s.clock.Now(), s.roots); err != nil {
		return issued{}, err
	}
	return issued{certPEM: certPEM, name: name, reattached: !created, took: took}, nil
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
