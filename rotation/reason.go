package rotation

import (
	"errors"

	"github.com/tlsboot/tlsboot/csr"
)

// Reason says why a certificate is being renewed. The values are stable:
// they are metric labels.
type Reason string

// Reasons for a renewal.
const (
	ReasonMissing      Reason = "missing"          // no usable certificate in the store
	ReasonExpired      Reason = "expired"          // NotAfter has passed
	ReasonNotYetValid  Reason = "not_yet_valid"    // NotBefore is in the future (clock went back)
	ReasonUnauthorized Reason = "unauthorized"     // the API server rejected it (401)
	ReasonDue          Reason = "due"              // the rotation deadline came
	ReasonTemplate     Reason = "template_changed" // it no longer has the wanted subject or SANs
	ReasonForced       Reason = "forced"           // Trigger, e.g. SIGHUP
	ReasonResume       Reason = "resume"           // an unfinished renewal was found at start
)

// unusable reports reasons for which the current certificate cannot
// authenticate its own renewal.
func (r Reason) unusable() bool {
	switch r {
	case ReasonMissing, ReasonExpired, ReasonNotYetValid, ReasonUnauthorized:
		return true
	}
	return false
}

// Failure classifies why a renewal attempt failed. The values are stable:
// they are metric labels.
type Failure string

// Failures of a renewal attempt, each read from the typed error that
// package csr defines for it (see classify).
const (
	FailUnreachable   Failure = "unreachable"              // no answer from the API server, or its certificate failed TLS verification
	FailUnauthorized  Failure = "unauthorized"             // 401
	FailForbidden     Failure = "forbidden"                // 403
	FailDenied        Failure = "denied"                   // the CSR was denied
	FailFailed        Failure = "failed"                   // the CSR failed (signer error)
	FailDeleted       Failure = "deleted"                  // the CSR was deleted or replaced while waiting
	FailConflict      Failure = "conflict"                 // a CSR of our name asks for something else
	FailTimeout       Failure = "timeout"                  // not issued within WaitTimeout
	FailTemplate      Failure = "template_mismatch"        // the issued certificate is not what was asked, or unsafe
	FailIdentity      Failure = "identity_rejected"        // the API server rejects the issued certificate, or takes it for someone else
	FailNoCredentials Failure = "no_bootstrap_credentials" // recovery needed, none available
	FailStore         Failure = "store"                    // reading or writing the certificate store failed
	FailOther         Failure = "other"                    // anything else (a request the server found invalid, a bad kubeconfig)
)

// ErrNoCredentials is wrapped by a Recover function that has no
// credentials to recover with (no bootstrap kubeconfig).
var ErrNoCredentials = errors.New("no bootstrap credentials")

// storeError marks errors of the Store.
type storeError struct{ err error }

func (e storeError) Error() string { return e.err.Error() }
func (e storeError) Unwrap() error { return e.err }

// classify maps the error of a renewal attempt, or of Verify, to its
// Failure. It reads only the typed errors of package csr (which csrwait
// and bootstrap return, wrapped or not), ErrNoCredentials and the Store's
// failures; an error that is none of them is FailOther.
func classify(err error) Failure {
	var (
		outcome  *csr.OutcomeError
		cert     *csr.CertificateError
		identity *csr.IdentityError
		conflict *csr.ConflictError
		server   *csr.ServerError
		timeout  *csr.TimeoutError
		store    storeError
	)
	switch {
	case errors.Is(err, ErrNoCredentials):
		return FailNoCredentials
	case errors.As(err, &store):
		return FailStore
	case errors.As(err, &cert):
		return FailTemplate
	case errors.As(err, &identity):
		return FailIdentity
	case errors.As(err, &conflict):
		return FailConflict
	case errors.As(err, &outcome):
		return outcomeFailure(outcome.Kind)
	case errors.As(err, &timeout):
		return FailTimeout
	case errors.As(err, &server):
		return serverFailure(server.Kind)
	}
	return FailOther
}

func outcomeFailure(kind error) Failure {
	switch {
	case errors.Is(kind, csr.ErrDenied):
		return FailDenied
	case errors.Is(kind, csr.ErrFailed):
		return FailFailed
	}
	return FailDeleted // csr.ErrDeleted, csr.ErrReplaced
}

func serverFailure(kind error) Failure {
	switch {
	case errors.Is(kind, csr.ErrUnauthorized):
		return FailUnauthorized
	case errors.Is(kind, csr.ErrForbidden):
		return FailForbidden
	}
	// csr.ErrUnreachable, and csr.ErrTLS: the labels predate a TLS kind,
	// and a server that cannot be verified is one that cannot be reached.
	return FailUnreachable
}
