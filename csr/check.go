package csr

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
)

// Check verifies that certPEM, as issued for r, is usable with key at now and
// returns its leaf: the first certificate of the chain. The leaf must carry
// key's public key, r's common name and organisations, r's DNS names and IP
// addresses if r has any (compared as sets), and be valid at now. It must
// also be safe to hold: a leaf, not a CA; with exactly the extended key
// usages r asks for; and, when roots is not nil, chaining to roots for
// those usages at now, with the other certificates of certPEM as
// intermediates. roots is the caller's opt-in (tlsboot's --client-ca-file,
// --serving-ca-file): the CA that verifies the API server is often not the
// one that signs, so it must not be used here by default. Signers may
// rewrite a request, so this is the node's own line of defence before a
// certificate is stored and served; for a client certificate the API
// server has the last word (package identity).
//
// Every failure is a *CertificateError, its Problem saying which check
// failed; its CSR is empty (see CheckIssued). Check is pure and safe for
// concurrent use.
func Check(certPEM []byte, key crypto.Signer, r Request, now time.Time, roots *x509.CertPool) (*x509.Certificate, error) {
	return CheckIssued("", certPEM, key, r, now, roots)
}

// CheckIssued is Check for a certificate that the CSR name has just
// issued: its *CertificateError names that CSR, and says to delete it.
func CheckIssued(name string, certPEM []byte, key crypto.Signer, r Request, now time.Time, roots *x509.CertPool) (*x509.Certificate, error) {
	cert, problem, detail := check(certPEM, key, r, now, roots)
	if problem != "" {
		return nil, &CertificateError{CSR: name, Problem: problem, Detail: detail}
	}
	return cert, nil
}

// check runs the checks of Check in order and returns the leaf, or the
// first problem and what exactly it is.
func check(certPEM []byte, key crypto.Signer, r Request, now time.Time, roots *x509.CertPool) (*x509.Certificate, Problem, string) {
	chain, err := ParseCertificatesPEM(certPEM)
	if err != nil {
		return nil, ProblemParse, err.Error()
	}
	cert := chain[0]
	if !publicKeyEqual(cert.PublicKey, key.Public()) {
		return nil, ProblemKey, "not the public key of the request"
	}
	if diffs := compareNames(cert.Subject, cert.DNSNames, cert.IPAddresses, r); len(diffs) > 0 {
		parts := make([]string, len(diffs))
		for i, d := range diffs {
			parts[i] = fmt.Sprintf("%s %s, requested %s", d.field, d.got, d.want)
		}
		return nil, ProblemNames, strings.Join(parts, "; ")
	}
	if what := caMarks(cert); len(what) > 0 {
		return nil, ProblemCA, strings.Join(what, ", ")
	}
	want := extKeyUsages(r.Usages)
	if detail := usagesDiff(cert, want); detail != "" {
		return nil, ProblemUsages, detail
	}
	switch {
	case now.Before(cert.NotBefore):
		return nil, ProblemValidity, fmt.Sprintf("not valid until %s, now %s", cert.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case now.After(cert.NotAfter):
		return nil, ProblemValidity, fmt.Sprintf("expired at %s, now %s", cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if roots != nil {
		if err := verifyChain(chain, roots, want, now); err != nil {
			return nil, ProblemChain, err.Error()
		}
	}
	return cert, "", ""
}

// caMarks lists what makes cert a CA certificate; nothing for a leaf.
func caMarks(cert *x509.Certificate) []string {
	var what []string
	if cert.BasicConstraintsValid && cert.IsCA {
		what = append(what, "basicConstraints CA:TRUE")
	}
	if cert.KeyUsage&x509.KeyUsageCertSign != 0 {
		what = append(what, "key usage keyCertSign")
	}
	if cert.KeyUsage&x509.KeyUsageCRLSign != 0 {
		what = append(what, "key usage cRLSign")
	}
	return what
}

// usagesDiff says how the certificate's extended key usages differ from
// want, "" when they are exactly want. No extension at all means any
// usage, so it matches only a request for no extended usage.
func usagesDiff(cert *x509.Certificate, want []x509.ExtKeyUsage) string {
	got := slices.Clone(cert.ExtKeyUsage)
	slices.Sort(got)
	got = slices.Compact(got)
	if slices.Equal(got, want) && len(cert.UnknownExtKeyUsage) == 0 {
		return ""
	}
	gotNames := make([]string, 0, len(got)+len(cert.UnknownExtKeyUsage))
	for _, u := range got {
		gotNames = append(gotNames, extKeyUsageName(u))
	}
	for _, oid := range cert.UnknownExtKeyUsage {
		gotNames = append(gotNames, oid.String())
	}
	if len(gotNames) == 0 {
		gotNames = append(gotNames, "none (any usage)")
	}
	wantNames := make([]string, 0, len(want))
	for _, u := range want {
		wantNames = append(wantNames, extKeyUsageName(u))
	}
	return fmt.Sprintf("extended key usages %s, requested %s", strings.Join(gotNames, ", "), strings.Join(wantNames, ", "))
}

// verifyChain verifies the leaf up to roots for want at now.
func verifyChain(chain []*x509.Certificate, roots *x509.CertPool, want []x509.ExtKeyUsage, now time.Time) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	usages := want
	if len(usages) == 0 {
		usages = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	}
	// now is inside the leaf's window (checked before); kube-controller-
	// manager backdates NotBefore by 5 minutes, so a node clock a little
	// behind the signer's still verifies.
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: usages})
	return err
}

// extKeyUsages maps the extended usages among r's usages to x509's, sorted.
func extKeyUsages(usages []certificatesv1.KeyUsage) []x509.ExtKeyUsage {
	var out []x509.ExtKeyUsage
	for _, u := range usages {
		if e, ok := extUsages[u]; ok {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// extUsages are the certificates.k8s.io usages that are extended key
// usages, as the Kubernetes signers translate them.
var extUsages = map[certificatesv1.KeyUsage]x509.ExtKeyUsage{
	certificatesv1.UsageAny:             x509.ExtKeyUsageAny,
	certificatesv1.UsageServerAuth:      x509.ExtKeyUsageServerAuth,
	certificatesv1.UsageClientAuth:      x509.ExtKeyUsageClientAuth,
	certificatesv1.UsageCodeSigning:     x509.ExtKeyUsageCodeSigning,
	certificatesv1.UsageEmailProtection: x509.ExtKeyUsageEmailProtection,
	certificatesv1.UsageSMIME:           x509.ExtKeyUsageEmailProtection,
	certificatesv1.UsageIPsecEndSystem:  x509.ExtKeyUsageIPSECEndSystem,
	certificatesv1.UsageIPsecTunnel:     x509.ExtKeyUsageIPSECTunnel,
	certificatesv1.UsageIPsecUser:       x509.ExtKeyUsageIPSECUser,
	certificatesv1.UsageTimestamping:    x509.ExtKeyUsageTimeStamping,
	certificatesv1.UsageOCSPSigning:     x509.ExtKeyUsageOCSPSigning,
	certificatesv1.UsageMicrosoftSGC:    x509.ExtKeyUsageMicrosoftServerGatedCrypto,
	certificatesv1.UsageNetscapeSGC:     x509.ExtKeyUsageNetscapeServerGatedCrypto,
}

func extKeyUsageName(u x509.ExtKeyUsage) string {
	for k, v := range extUsages {
		if v == u && k != certificatesv1.UsageSMIME {
			return string(k)
		}
	}
	return fmt.Sprintf("extended usage %d", u)
}

// ParseCertificatesPEM parses every CERTIFICATE block of data, in order
// (leaf first in a chain), skipping blocks of other types (a private key
// sharing the file). It fails when a certificate does not parse or there is
// none; errors never contain key material.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d of the chain: %w", len(chain)+1, err)
		}
		chain = append(chain, cert)
	}
	if len(chain) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return chain, nil
}
