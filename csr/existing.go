package csr

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Object returns the certificates.k8s.io/v1 object that asks for r under
// name, its x509 request signed by key. An empty name lets the API server
// choose one (generateName "csr-"). It returns an error, naming what is
// wrong, when r is not valid (see Validate).
func (r Request) Object(name string, key crypto.Signer) (*certificatesv1.CertificateSigningRequest, error) {
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("invalid certificate signing request: %w", err)
	}
	req, err := r.PEM(key)
	if err != nil {
		return nil, err
	}
	obj := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:           req,
			SignerName:        r.SignerName,
			Usages:            r.Usages,
			ExpirationSeconds: r.expirationSeconds(),
		},
	}
	if name == "" {
		obj.GenerateName = "csr-"
	}
	return obj, nil
}

// Reattach reports whether existing, a CSR found under the name r asked
// for with the public key pub, can be waited on instead of creating one:
// nil if it asks for the same signer, public key, subject, usages and SANs
// and is not decided against; a *ConflictError listing what differs
// otherwise; the *OutcomeError of Outcome if it was denied or failed.
func Reattach(existing *certificatesv1.CertificateSigningRequest, r Request, pub crypto.PublicKey) error {
	if diffs := compare(existing, r, pub); len(diffs) > 0 {
		return &ConflictError{Name: existing.Name, Diffs: diffs}
	}
	_, err := Outcome(existing)
	return err
}

// compare lists how an existing CSR differs from what r asks for with pub.
// Each entry says what it is and what we want, and never includes keys.
func compare(existing *certificatesv1.CertificateSigningRequest, r Request, pub crypto.PublicKey) []string {
	var diffs []string
	if s := existing.Spec.SignerName; s != r.SignerName {
		diffs = append(diffs, fmt.Sprintf("signer is %q, want %q", s, r.SignerName))
	}
	if !sameSet(existing.Spec.Usages, r.Usages) {
		diffs = append(diffs, fmt.Sprintf("usages are %v, want %v", existing.Spec.Usages, r.Usages))
	}
	req, err := parseRequest(existing.Spec.Request)
	if err != nil {
		return append(diffs, err.Error())
	}
	if !publicKeyEqual(req.PublicKey, pub) {
		diffs = append(diffs, "it was made with a different private key")
	}
	for _, d := range compareNames(req.Subject, req.DNSNames, req.IPAddresses, r) {
		diffs = append(diffs, fmt.Sprintf("%s is %s, want %s", d.field, d.got, d.want))
	}
	return diffs
}

// nameDiff is one difference in subject or SANs, with both sides formatted.
type nameDiff struct{ field, got, want string }

// compareNames lists differences in subject and SANs between what was
// requested or issued and r; SANs are compared only when r has some.
func compareNames(subject pkix.Name, dns []string, ips []net.IP, r Request) []nameDiff {
	var diffs []nameDiff
	add := func(field string, got, want any) {
		diffs = append(diffs, nameDiff{field, fmt.Sprintf("%q", got), fmt.Sprintf("%q", want)})
	}
	if subject.CommonName != r.Subject.CommonName {
		add("CN", subject.CommonName, r.Subject.CommonName)
	}
	if !sameSet(subject.Organization, r.Subject.Organization) {
		add("O", subject.Organization, r.Subject.Organization)
	}
	if len(r.DNSNames) == 0 && len(r.IPAddresses) == 0 {
		return diffs
	}
	if !sameSet(dns, r.DNSNames) {
		add("DNS names", dns, r.DNSNames)
	}
	if got, want := ipStrings(ips), ipStrings(r.IPAddresses); !sameSet(got, want) {
		add("IP addresses", got, want)
	}
	return diffs
}

func parseRequest(data []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("its spec.request is not a PEM CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("its spec.request does not parse: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("its spec.request has a bad signature: %w", err)
	}
	return req, nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// sameSet reports whether a and b hold the same elements, ignoring order
// and repetition.
func sameSet[T ~string](a, b []T) bool {
	return slices.Equal(setOf(a), setOf(b))
}

func setOf[T ~string](s []T) []T {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

func ipStrings(ips []net.IP) []string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return s
}
