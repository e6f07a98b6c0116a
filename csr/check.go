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
// also be safe to hold (see *CertificateError): a leaf, not a CA; with
// exactly the extended key usages r asks for; and, when roots is not nil,
// chaining to roots (the cluster CA of the kubeconfig) for those usages at
// now, with the other certificates of certPEM as intermediates. Signers may
// rewrite a request, so this is the last line of defence before a
// certificate is stored and served.
func Check(certPEM []byte, key crypto.Signer, r Request, now time.Time, roots *x509.CertPool) (*x509.Certificate, error) {
	chain, err := certificates(certPEM)
	if err != nil {
		return nil, err
	}
	cert := chain[0]
	if !publicKeyEqual(cert.PublicKey, key.Public()) {
		return nil, errors.New("issued certificate is for a different public key than the one requested")
	}
	if diffs := compareNames(cert.Subject, cert.DNSNames, cert.IPAddresses, r); len(diffs) > 0 {
		parts := make([]string, len(diffs))
		for i, d := range diffs {
			parts[i] = fmt.Sprintf("%s %s, requested %s", d.field, d.got, d.want)
		}
		return nil, fmt.Errorf("issued certificate has %s", strings.Join(parts, "; "))
	}
	if err := checkLeaf(cert); err != nil {
		return nil, err
	}
	want := extKeyUsages(r.Usages)
	if err := checkUsages(cert, want); err != nil {
		return nil, err
	}
	switch {
	case now.Before(cert.NotBefore):
		return nil, fmt.Errorf("issued certificate is not valid until %s (now %s)", cert.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case now.After(cert.NotAfter):
		return nil, fmt.Errorf("issued certificate expired at %s (now %s)", cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if roots != nil {
		if err := checkChain(chain, roots, want, now); err != nil {
			return nil, err
		}
	}
	return cert, nil
}

// Problem says what is wrong with an issued certificate that must not be
// stored whatever its names say.
type Problem string

// The problems of a *CertificateError.
const (
	// ProblemCA: the signer returned a CA certificate (basicConstraints
	// CA:TRUE, or the keyCertSign or cRLSign key usage). A node holding
	// it could issue certificates.
	ProblemCA Problem = "a CA certificate"
	// ProblemUsages: its extended key usages are not the ones requested
	// (for example server auth on a client certificate, any usage, or
	// none, which means any).
	ProblemUsages Problem = "a certificate for other usages"
	// ProblemChain: it does not chain to the cluster CA of the
	// kubeconfig for the requested usages.
	ProblemChain Problem = "a certificate that does not chain to the cluster CA"
)

// CertificateError reports an issued certificate that matches the request's
// key and names but is not safe to store. Callers find it with errors.As.
type CertificateError struct {
	Problem Problem
	Detail  string // what exactly, one line
}

func (e *CertificateError) Error() string {
	return fmt.Sprintf("the signer returned %s (%s)", e.Problem, e.Detail)
}

// checkLeaf refuses CA certificates.
func checkLeaf(cert *x509.Certificate) error {
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
	if len(what) > 0 {
		return &CertificateError{Problem: ProblemCA, Detail: strings.Join(what, ", ")}
	}
	return nil
}

// checkUsages requires the certificate's extended key usages to be exactly
// want. No extension at all means any usage, so it matches only a request
// for no extended usage.
func checkUsages(cert *x509.Certificate, want []x509.ExtKeyUsage) error {
	got := slices.Clone(cert.ExtKeyUsage)
	slices.Sort(got)
	got = slices.Compact(got)
	if slices.Equal(got, want) && len(cert.UnknownExtKeyUsage) == 0 {
		return nil
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
	return &CertificateError{Problem: ProblemUsages, Detail: fmt.Sprintf("extended key usages %s, requested %s",
		strings.Join(gotNames, ", "), strings.Join(wantNames, ", "))}
}

// checkChain verifies the leaf up to roots for want at now.
func checkChain(chain []*x509.Certificate, roots *x509.CertPool, want []x509.ExtKeyUsage, now time.Time) error {
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
	if err != nil {
		return &CertificateError{Problem: ProblemChain, Detail: oneLine(err.Error())}
	}
	return nil
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

// certificates parses the CERTIFICATE blocks of data, leaf first.
func certificates(data []byte) ([]*x509.Certificate, error) {
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
			if len(chain) == 0 {
				return nil, fmt.Errorf("parsing issued certificate: %w", err)
			}
			return nil, fmt.Errorf("parsing certificate %d of the issued chain: %w", len(chain)+1, err)
		}
		chain = append(chain, cert)
	}
	if len(chain) == 0 {
		return nil, errors.New("issued certificate: no PEM CERTIFICATE block found")
	}
	return chain, nil
}
