package csr

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tlsboot/tlsboot/internal/testpki"
)

// FuzzCheckIssued: whatever a signer returns, CheckIssued does not panic,
// and every refusal is a *CertificateError for the CSR on one line.
func FuzzCheckIssued(f *testing.F) {
	key := mustParseKey(f, fixtureECKey)
	r := NodeClient("node-a", key.Public())
	ca := testpki.NewCA(f)
	good := ca.Issue(f, testpki.Spec{Key: key.Public(), Subject: r.Subject, NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(24 * time.Hour)})
	f.Add(append(good.CertPEM, ca.PEM()...))
	f.Add(good.CertPEM)
	f.Add(ca.PEM())
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		cert, err := CheckIssued("node-csr-x", data, key, r, testNow, nil)
		if err == nil {
			if cert == nil {
				t.Fatal("nil certificate without error")
			}
			return
		}
		var ce *CertificateError
		if !errors.As(err, &ce) || ce.CSR != "node-csr-x" || ce.Problem == "" {
			t.Fatalf("error %v is not a *CertificateError for node-csr-x", err)
		}
		if strings.ContainsAny(err.Error(), "\n\r") {
			t.Fatalf("error %q spans lines", err)
		}
	})
}

// FuzzReattach: whatever an existing CSR's spec.request holds, Reattach
// does not panic and reports a *ConflictError on one line.
func FuzzReattach(f *testing.F) {
	key := mustParseKey(f, fixtureECKey)
	r := NodeClient("node-a", key.Public())
	obj, err := r.Object("n", key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(obj.Spec.Request)
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte("junk"))
	f.Fuzz(func(t *testing.T, data []byte) {
		existing := obj.DeepCopy()
		existing.Spec.Request = data
		err := Reattach(existing, r, key.Public())
		if err == nil {
			return
		}
		var ce *ConflictError
		if !errors.As(err, &ce) || ce.Name != "n" {
			t.Fatalf("error %v is not a *ConflictError for n", err)
		}
		if strings.ContainsAny(err.Error(), "\n\r") {
			t.Fatalf("error %q spans lines", err)
		}
	})
}
