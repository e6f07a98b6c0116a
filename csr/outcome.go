package csr

import (
	"errors"
	"fmt"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
)

// Sentinels for the ways a CSR ends without a certificate. Match them with
// errors.Is; the *OutcomeError that carries them has the details.
var (
	ErrDenied  = errors.New("certificate signing request denied")
	ErrFailed  = errors.New("certificate signing request failed")
	ErrDeleted = errors.New("certificate signing request deleted")
)

// ReasonReplaced is the OutcomeError.Reason, with Kind ErrDeleted, when the
// CSR was deleted and another of the same name (a different UID) took its
// place, so that callers can tell the two apart.
const ReasonReplaced = "Replaced"

// OutcomeError reports a CSR that will never yield a certificate: denied,
// failed, or deleted (or replaced) while we waited. Reason and Message come
// from the CSR's condition when there is one.
type OutcomeError struct {
	Name    string
	Reason  string
	Message string
	Kind    error // ErrDenied, ErrFailed or ErrDeleted
}

func (e *OutcomeError) Error() string {
	var b strings.Builder
	b.WriteString("certificate signing request ")
	b.WriteString(e.Name)
	switch {
	case errors.Is(e.Kind, ErrDenied):
		b.WriteString(" was denied")
	case errors.Is(e.Kind, ErrFailed):
		b.WriteString(" failed")
	case errors.Is(e.Kind, ErrDeleted) && e.Reason == ReasonReplaced:
		b.WriteString(" was replaced")
	case errors.Is(e.Kind, ErrDeleted):
		b.WriteString(" was deleted")
	default:
		fmt.Fprintf(&b, ": %v", e.Kind)
	}
	switch reason, msg := e.Reason, oneLine(e.Message); {
	case reason != "" && msg != "":
		fmt.Fprintf(&b, " (reason %q: %s)", reason, msg)
	case reason != "":
		fmt.Fprintf(&b, " (reason %q)", reason)
	case msg != "":
		fmt.Fprintf(&b, " (%s)", msg)
	}
	if errors.Is(e.Kind, ErrDeleted) {
		b.WriteString("; run again to request a new certificate")
	} else {
		fmt.Fprintf(&b, "; delete it with %q and run again to request a new certificate", "kubectl delete csr "+e.Name)
	}
	return b.String()
}

// Unwrap returns Kind.
func (e *OutcomeError) Unwrap() error { return e.Kind }

// oneLine keeps messages written by approvers from breaking our one-line errors.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Outcome reads the state of a CSR: its certificate (PEM, possibly a chain) if
// it has been issued, an *OutcomeError if it was denied or failed, and
// neither while it is pending, including approved but not yet signed.
//
// A certificate counts as issued without an Approved condition: signers only
// sign approved requests, and an event may carry the certificate before we
// see the condition.
func Outcome(obj *certificatesv1.CertificateSigningRequest) (certPEM []byte, err error) {
	for _, c := range obj.Status.Conditions {
		// The API server forbids False for Approved and Denied; treat a
		// False Failed condition as absent.
		if c.Status == corev1.ConditionFalse {
			continue
		}
		switch c.Type {
		case certificatesv1.CertificateDenied:
			return nil, &OutcomeError{Name: obj.Name, Reason: c.Reason, Message: c.Message, Kind: ErrDenied}
		case certificatesv1.CertificateFailed:
			return nil, &OutcomeError{Name: obj.Name, Reason: c.Reason, Message: c.Message, Kind: ErrFailed}
		}
	}
	if len(obj.Status.Certificate) > 0 {
		return obj.Status.Certificate, nil
	}
	return nil, nil
}

// Approved reports whether obj has an Approved condition.
func Approved(obj *certificatesv1.CertificateSigningRequest) bool {
	for _, c := range obj.Status.Conditions {
		if c.Type == certificatesv1.CertificateApproved && c.Status != corev1.ConditionFalse {
			return true
		}
	}
	return false
}
