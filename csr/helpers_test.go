package csr

import (
	"crypto"
	"crypto/x509/pkix"
	"net"
	"testing"
	"time"

	"github.com/tlsboot/tlsboot/internal/testpki"
)

// testNow is the fixed "now" of certificate tests.
var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// certSpec describes a certificate for issue; zero fields take defaults.
type certSpec struct {
	key       crypto.PublicKey
	subject   pkix.Name
	dns       []string
	ips       []net.IP
	notBefore time.Time
	notAfter  time.Time
}

// issue signs a certificate as a CA would and returns it PEM-encoded,
// followed by the CA certificate as a chain would be.
func issue(t *testing.T, s certSpec) []byte {
	t.Helper()
	if s.notBefore.IsZero() {
		s.notBefore = testNow.Add(-time.Hour)
	}
	if s.notAfter.IsZero() {
		s.notAfter = testNow.Add(24 * time.Hour)
	}
	ca := testpki.NewCA(t)
	is := ca.Issue(t, testpki.Spec{Key: s.key, Subject: s.subject, DNSNames: s.dns, IPs: s.ips, NotBefore: s.notBefore, NotAfter: s.notAfter})
	return append(is.CertPEM, ca.PEM()...)
}
