package csr

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// ConflictError reports that a CSR of the name we wanted already exists but
// asks for something else, so we cannot wait on it.
type ConflictError struct {
	Name  string
	Diffs []string // what differs, e.g. `signer is "a", want "b"`
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("certificate signing request %s already exists and does not match this request: %s; delete it with %q and run again",
		e.Name, strings.Join(e.Diffs, ", "), "kubectl delete csr "+e.Name)
}

// Submit creates the CSR name for r, signed by key, or re-attaches to an
// existing CSR of that name left by an earlier run (ours or the kubelet's:
// names from Name are the same). An empty name lets the API server choose one,
// and then there is nothing to re-attach to.
//
// An existing CSR is used only if it has the same signer, public key,
// subject, usages and SANs; otherwise Submit returns a *ConflictError. An
// existing CSR that was denied or failed yields an *OutcomeError. The
// returned object may already hold a certificate; pass its name and UID to
// csrwait.Wait, which returns at once in that case. created reports whether
// this call created the CSR (false: re-attached).
func Submit(ctx context.Context, client kubernetes.Interface, name string, r Request, key crypto.Signer) (obj *certificatesv1.CertificateSigningRequest, created bool, err error) {
	if err := r.Validate(); err != nil {
		return nil, false, fmt.Errorf("invalid certificate signing request: %w", err)
	}
	req, err := r.PEM(key)
	if err != nil {
		return nil, false, err
	}
	obj = &certificatesv1.CertificateSigningRequest{
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
	csrs := client.CertificatesV1().CertificateSigningRequests()
	logger := klog.FromContext(ctx)
	made, err := csrs.Create(ctx, obj, metav1.CreateOptions{})
	if err == nil {
		logger.V(2).Info("Created certificate signing request", "csr", made.Name, "signer", r.SignerName)
		return made, true, nil
	}
	if name == "" || !apierrors.IsAlreadyExists(err) {
		return nil, false, fmt.Errorf("creating certificate signing request %q: %w", name, err)
	}
	existing, err := csrs.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, false, fmt.Errorf("reading existing certificate signing request %s: %w", name, err)
	}
	if diffs := compare(existing, r, key.Public()); len(diffs) > 0 {
		return nil, false, &ConflictError{Name: name, Diffs: diffs}
	}
	if _, err := Outcome(existing); err != nil {
		return nil, false, err
	}
	logger.V(2).Info("Re-attached to existing certificate signing request", "csr", name, "uid", existing.UID)
	return existing, false, nil
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
