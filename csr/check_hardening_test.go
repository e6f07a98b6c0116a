package csr

import (
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tlsboot/tlsboot/internal/testpki"
)

// TestCheckRefusesUnsafeCertificates: a certificate that carries the
// requested key and names is still refused, with a *CertificateError,
// when it is a CA, has other extended key usages than requested, or does
// not chain to the cluster CA.
func TestCheckRefusesUnsafeCertificates(t *testing.T) {
	key := mustParseKey(t, fixtureECKey)
	client := NodeClient("node-a", key.Public())
	serving := NodeServing("node-a", key.Public(), []string{"node-a"}, []net.IP{net.ParseIP("10.0.0.1")})
	cluster, foreign := testpki.NewCA(t), testpki.NewCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(cluster.Cert)
	base := func(r Request) testpki.Spec {
		return testpki.Spec{Key: key.Public(), Subject: r.Subject, DNSNames: r.DNSNames, IPs: r.IPAddresses,
			NotBefore: testNow.Add(-5 * time.Minute), NotAfter: testNow.Add(time.Hour)}
	}
	tests := []struct {
		name    string
		req     Request
		ca      *testpki.CA
		edit    func(*testpki.Spec)
		roots   *x509.CertPool
		want    Problem // "" means accepted
		wantMsg string
	}{
		{name: "client ok", req: client, ca: cluster, roots: roots},
		{name: "serving ok", req: serving, ca: cluster, roots: roots},
		{name: "client ok without a CA to check against", req: client, ca: foreign},
		{name: "signed just now, backdated 5m", req: client, ca: cluster, roots: roots,
			edit: func(s *testpki.Spec) { s.NotBefore = testNow.Add(-5 * time.Minute) }},
		{name: "CA:TRUE", req: client, ca: cluster, roots: roots, edit: func(s *testpki.Spec) { s.IsCA = true },
			want: ProblemCA, wantMsg: "basicConstraints CA:TRUE"},
		{name: "keyCertSign", req: client, ca: cluster, roots: roots,
			edit: func(s *testpki.Spec) { s.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign },
			want: ProblemCA, wantMsg: "keyCertSign"},
		{name: "cRLSign", req: client, ca: cluster, roots: roots,
			edit: func(s *testpki.Spec) { s.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign },
			want: ProblemCA, wantMsg: "cRLSign"},
		{name: "client certificate that also serves", req: client, ca: cluster, roots: roots,
			edit: func(s *testpki.Spec) {
				s.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
			},
			want: ProblemUsages, wantMsg: "extended key usages server auth, client auth, requested client auth"},
		{name: "serving request, client certificate", req: serving, ca: cluster, roots: roots,
			edit: func(s *testpki.Spec) { s.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} },
			want: ProblemUsages, wantMsg: "requested server auth"},
		{name: "any usage", req: client, ca: cluster, roots: roots,
			edit: func(s *testpki.Spec) { s.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny} },
			want: ProblemUsages, wantMsg: "extended key usages any"},
		{name: "no extended usage means any", req: client, ca: cluster, roots: roots,
			edit: func(s *testpki.Spec) { s.ExtKeyUsage = []x509.ExtKeyUsage{} },
			want: ProblemUsages, wantMsg: "none (any usage)"},
		{name: "foreign CA", req: client, ca: foreign, roots: roots,
			want: ProblemChain, wantMsg: "unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := base(tt.req)
			if tt.edit != nil {
				tt.edit(&spec)
			}
			data := append(tt.ca.Issue(t, spec).CertPEM, tt.ca.PEM()...)
			_, err := Check(data, key, tt.req, testNow, tt.roots)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Check() error = %v", err)
				}
				return
			}
			var ce *CertificateError
			if !errors.As(err, &ce) || ce.Problem != tt.want {
				t.Fatalf("Check() error = %v, want a *CertificateError with problem %q", err, tt.want)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.wantMsg) || strings.Contains(msg, "\n") {
				t.Errorf("Check() error %q does not contain %q on one line", msg, tt.wantMsg)
			}
		})
	}
}

// TestCheckChainsThroughIntermediates: the signer's chain after the leaf
// is used as intermediates, not as roots: a chain that carries its own
// root is still refused when the cluster CA is another.
func TestCheckChainsThroughIntermediates(t *testing.T) {
	key := mustParseKey(t, fixtureECKey)
	client := NodeClient("node-a", key.Public())
	cluster, foreign := testpki.NewCA(t), testpki.NewCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(cluster.Cert)
	is := foreign.Issue(t, testpki.Spec{Key: key.Public(), Subject: client.Subject, NotBefore: testNow.Add(-time.Hour)})
	_, err := Check(append(is.CertPEM, foreign.PEM()...), key, client, testNow, roots)
	var ce *CertificateError
	if !errors.As(err, &ce) || ce.Problem != ProblemChain {
		t.Fatalf("Check() error = %v, want ProblemChain", err)
	}
}
