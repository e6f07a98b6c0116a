package rotation

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

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

// Failures of a renewal attempt.
const (
	FailUnreachable   Failure = "unreachable"              // no answer from the API server
	FailUnauthorized  Failure = "unauthorized"             // 401
	FailForbidden     Failure = "forbidden"                // 403
	FailDenied        Failure = "denied"                   // the CSR was denied
	FailFailed        Failure = "failed"                   // the CSR failed (signer error)
	FailDeleted       Failure = "deleted"                  // the CSR was deleted or replaced while waiting
	FailConflict      Failure = "conflict"                 // a CSR of our name asks for something else
	FailTimeout       Failure = "timeout"                  // not issued within WaitTimeout
	FailTemplate      Failure = "template_mismatch"        // the issued certificate is not what was asked
	FailNoCredentials Failure = "no_bootstrap_credentials" // recovery needed, none available
	FailStore         Failure = "store"                    // writing the certificate store failed
	FailOther         Failure = "other"
)

// ErrNoCredentials is wrapped by a Recover function that has no
// credentials to recover with (no bootstrap kubeconfig).
var ErrNoCredentials = errors.New("no bootstrap credentials")

// MismatchError reports an issued certificate that does not satisfy the
// request. It is never stored.
type MismatchError struct {
	CSR string // the CSR that issued it
	Err error  // what differs, from csr.Check
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("certificate signing request %s: the signer returned a certificate that does not match the request, not stored: %v", e.CSR, e.Err)
}

func (e *MismatchError) Unwrap() error { return e.Err }

// storeError marks errors of the certificate store.
type storeError struct{ err error }

func (e storeError) Error() string { return e.err.Error() }
func (e storeError) Unwrap() error { return e.err }

// classify maps a renewal error to its Failure.
func classify(err error) Failure {
	var outcome *csr.OutcomeError
	var conflict *csr.ConflictError
	var mismatch *MismatchError
	var store storeError
	switch {
	case errors.Is(err, ErrNoCredentials):
		return FailNoCredentials
	case errors.As(err, &mismatch):
		return FailTemplate
	case errors.As(err, &conflict):
		return FailConflict
	case errors.As(err, &outcome):
		return outcomeFailure(outcome)
	case errors.As(err, &store):
		return FailStore
	case apierrors.IsUnauthorized(err):
		return FailUnauthorized
	case apierrors.IsForbidden(err):
		return FailForbidden
	case errors.Is(err, context.DeadlineExceeded):
		return FailTimeout
	case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err):
		return FailOther
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Code < 500 {
		return FailOther
	}
	return FailUnreachable
}

func outcomeFailure(o *csr.OutcomeError) Failure {
	switch {
	case errors.Is(o.Kind, csr.ErrDenied):
		return FailDenied
	case errors.Is(o.Kind, csr.ErrFailed):
		return FailFailed
	}
	return FailDeleted
}
