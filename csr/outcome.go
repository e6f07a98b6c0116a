package csr

import (
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
)

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
