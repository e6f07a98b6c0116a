package discovery

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Pin is the pin of a CA: "sha256:" followed by the lower-case hex SHA-256
// of the certificate's DER SubjectPublicKeyInfo, kubeadm's
// --discovery-token-ca-cert-hash format. It pins the key, not the
// certificate, so a CA re-issued with the same key keeps its pin.
type Pin string

// ErrMalformedPin is the kind of ParsePin's errors.
var ErrMalformedPin = errors.New("malformed CA pin")

// ParsePin parses "sha256:<64 hex digits>", the format and hex digits in
// either case as kubeadm accepts them, and returns it in lower case.
func ParsePin(s string) (Pin, error) {
	format, value, ok := strings.Cut(s, ":")
	if !ok || !strings.EqualFold(format, "sha256") {
		return "", fmt.Errorf("%w %q: expected sha256:<64 hex digits>, the hash 'tlsboot token create --print-join-command' prints", ErrMalformedPin, s)
	}
	if len(value) != 2*sha256.Size {
		return "", fmt.Errorf("%w %q: the hash has %d hex digits, want %d", ErrMalformedPin, s, len(value), 2*sha256.Size)
	}
	if _, err := hex.DecodeString(value); err != nil {
		return "", fmt.Errorf("%w %q: the hash is not hexadecimal", ErrMalformedPin, s)
	}
	return Pin("sha256:" + strings.ToLower(value)), nil
}

// PinOf returns the pin of cert's public key.
func PinOf(cert *x509.Certificate) Pin {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return Pin("sha256:" + hex.EncodeToString(sum[:]))
}
