package csr

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
)

// The well-known organisation and common name prefix of node identities.
const (
	NodesGroup       = "system:nodes"
	NodeCommonPrefix = "system:node:"
)

// NodeSigners returns the signers of node certificates, client first: the
// ones NodeClient and NodeServing ask, and the ones tlsboot's approver
// decides by default.
func NodeSigners() []string {
	return []string{certificatesv1.KubeAPIServerClientKubeletSignerName, certificatesv1.KubeletServingSignerName}
}

// The bounds of spec.expirationSeconds the API server accepts: at least ten
// minutes, and an int32 number of seconds. Every check of a requested
// lifetime in tlsboot goes through CheckExpiration.
const (
	MinExpiration = 10 * time.Minute
	MaxExpiration = time.Duration(math.MaxInt32) * time.Second
)

// DefaultWaitTimeout is how long bootstrap and rotation wait by default for
// a request to be approved and issued before they give up with a
// *TimeoutError: room for a human approver, not only for a controller.
const DefaultWaitTimeout = time.Hour

// ExpirationError reports a requested certificate lifetime outside
// [MinExpiration, MaxExpiration].
type ExpirationError struct {
	Expiration time.Duration
}

func (e *ExpirationError) Error() string {
	if e.Expiration > MaxExpiration {
		return fmt.Sprintf("expiration %v is too long: the API server accepts at most %v", e.Expiration, MaxExpiration)
	}
	return fmt.Sprintf("expiration %v is too short: the API server requires at least %v", e.Expiration, MinExpiration)
}

// CheckExpiration returns an *ExpirationError when d, a requested
// certificate lifetime, is one the API server refuses. Zero means "the
// signer's default" and is accepted.
func CheckExpiration(d time.Duration) error {
	if d != 0 && (d < MinExpiration || d > MaxExpiration) {
		return &ExpirationError{Expiration: d}
	}
	return nil
}

// Request describes what to ask for. The zero value is not valid; build one
// with NodeClient or NodeServing, or fill every field and call Validate.
type Request struct {
	SignerName  string
	Subject     pkix.Name
	Usages      []certificatesv1.KeyUsage
	DNSNames    []string
	IPAddresses []net.IP
	// Expiration, if not zero, is sent as spec.expirationSeconds: a hint
	// to the signer, which may issue a shorter or longer certificate.
	Expiration time.Duration
}

// NodeClient describes the kubelet's client certificate for nodeName, as the
// kubelet asks for it: signer kubernetes.io/kube-apiserver-client-kubelet,
// O=system:nodes, CN=system:node:<nodeName>, usages digital signature and
// client auth, with key encipherment appended for RSA keys. The usage order
// matters: it is part of the CSR name.
func NodeClient(nodeName string, key crypto.PublicKey) Request {
	return Request{
		SignerName: certificatesv1.KubeAPIServerClientKubeletSignerName,
		Subject:    nodeSubject(nodeName),
		Usages:     nodeUsages(key, certificatesv1.UsageClientAuth),
	}
}

// NodeServing describes the kubelet's serving certificate for nodeName with
// the given SANs: signer kubernetes.io/kubelet-serving, the node subject,
// usages digital signature and server auth, with key encipherment appended
// for RSA keys.
func NodeServing(nodeName string, key crypto.PublicKey, dns []string, ips []net.IP) Request {
	return Request{
		SignerName:  certificatesv1.KubeletServingSignerName,
		Subject:     nodeSubject(nodeName),
		Usages:      nodeUsages(key, certificatesv1.UsageServerAuth),
		DNSNames:    dns,
		IPAddresses: ips,
	}
}

func nodeSubject(nodeName string) pkix.Name {
	return pkix.Name{
		CommonName:   NodeCommonPrefix + nodeName,
		Organization: []string{NodesGroup},
	}
}

func nodeUsages(key crypto.PublicKey, auth certificatesv1.KeyUsage) []certificatesv1.KeyUsage {
	usages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, auth}
	// Key encipherment only means something for RSA key transport; the
	// kubelet stopped asking for it with ECDSA keys, and we match its
	// usages exactly because they feed the CSR name.
	if _, ok := key.(*rsa.PublicKey); ok {
		usages = append(usages, certificatesv1.UsageKeyEncipherment)
	}
	return usages
}

// knownUsages are the key usages the certificates.k8s.io/v1 API accepts.
var knownUsages = map[certificatesv1.KeyUsage]bool{
	certificatesv1.UsageSigning: true, certificatesv1.UsageDigitalSignature: true,
	certificatesv1.UsageContentCommitment: true, certificatesv1.UsageKeyEncipherment: true,
	certificatesv1.UsageKeyAgreement: true, certificatesv1.UsageDataEncipherment: true,
	certificatesv1.UsageCertSign: true, certificatesv1.UsageCRLSign: true,
	certificatesv1.UsageEncipherOnly: true, certificatesv1.UsageDecipherOnly: true,
	certificatesv1.UsageAny: true, certificatesv1.UsageServerAuth: true,
	certificatesv1.UsageClientAuth: true, certificatesv1.UsageCodeSigning: true,
	certificatesv1.UsageEmailProtection: true, certificatesv1.UsageSMIME: true,
	certificatesv1.UsageIPsecEndSystem: true, certificatesv1.UsageIPsecTunnel: true,
	certificatesv1.UsageIPsecUser: true, certificatesv1.UsageTimestamping: true,
	certificatesv1.UsageOCSPSigning: true, certificatesv1.UsageMicrosoftSGC: true,
	certificatesv1.UsageNetscapeSGC: true,
}

// Validate reports the first problem that would make the API server reject
// the request or the well-known node signers refuse it.
func (r Request) Validate() error {
	if err := r.validateSigner(); err != nil {
		return err
	}
	if r.Subject.CommonName == "" {
		return errors.New("request has no subject common name")
	}
	if len(r.Usages) == 0 {
		return errors.New("request has no key usages")
	}
	seen := make(map[certificatesv1.KeyUsage]bool, len(r.Usages))
	for _, u := range r.Usages {
		if !knownUsages[u] {
			return fmt.Errorf("unknown key usage %q", u)
		}
		if seen[u] {
			return fmt.Errorf("key usage %q listed twice", u)
		}
		seen[u] = true
	}
	return CheckExpiration(r.Expiration)
}

func (r Request) validateSigner() error {
	if r.SignerName == "" {
		return errors.New("request has no signer name")
	}
	if domain, path, ok := strings.Cut(r.SignerName, "/"); !ok || domain == "" || path == "" {
		return fmt.Errorf("signer name %q is not of the form <domain>/<name>", r.SignerName)
	}
	hasSANs := len(r.DNSNames) > 0 || len(r.IPAddresses) > 0
	switch r.SignerName {
	case certificatesv1.KubeAPIServerClientKubeletSignerName:
		if hasSANs {
			return fmt.Errorf("signer %s does not accept DNS or IP subject alternative names", r.SignerName)
		}
	case certificatesv1.KubeletServingSignerName:
		if !hasSANs {
			return fmt.Errorf("signer %s needs at least one DNS name or IP address", r.SignerName)
		}
	}
	return nil
}

// expirationSeconds returns spec.expirationSeconds for r, nil when unset.
func (r Request) expirationSeconds() *int32 {
	if r.Expiration == 0 {
		return nil
	}
	s := int32(r.Expiration / time.Second)
	return &s
}

// digestName is Request.Name for a subject and usages.
func digestName(pub crypto.PublicKey, subject pkix.Name, usages []certificatesv1.KeyUsage) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("deriving certificate signing request name: %w", err)
	}
	enc := base64.RawURLEncoding
	h := sha512.New512_256()
	write := func(b []byte) {
		h.Write([]byte(enc.EncodeToString(b)))
		h.Write([]byte{'|'})
	}
	write(der)
	write([]byte(subject.CommonName))
	for _, o := range subject.Organization {
		write([]byte(o))
	}
	for _, u := range usages {
		write([]byte(u))
	}
	return "node-csr-" + enc.EncodeToString(h.Sum(nil)), nil
}

// Name returns the kubelet's deterministic CSR name for r with the public
// key pub: "node-csr-" and the unpadded base64url SHA-512/256 digest of the
// unpadded base64url encodings of the PKIX public key, the common name, each
// organisation and each usage (in r's order), each followed by '|'. The
// separator is outside the base64url alphabet, so no two inputs produce the
// same stream. A node that restarts with the same key therefore finds the
// CSR it created before, and so does a kubelet that takes over from us. It
// fails only for a key type x509 cannot marshal.
func (r Request) Name(pub crypto.PublicKey) (string, error) {
	return digestName(pub, r.Subject, r.Usages)
}

// PEM returns r as a PEM "CERTIFICATE REQUEST" signed by key. Usages and
// expiration are not part of the x509 request; they travel in the API object.
func (r Request) PEM(key crypto.Signer) ([]byte, error) {
	tmpl := &x509.CertificateRequest{
		Subject:     r.Subject,
		DNSNames:    r.DNSNames,
		IPAddresses: r.IPAddresses,
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("creating x509 certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}
