// Package testpki issues keys and certificates for tests: a CA, node
// certificates with any validity window, SANs and key, and PEM encodings.
// Every test package that needs certificates uses it, so that one fixture
// builder, not one per package, decides what a test certificate looks like.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// Key returns a new private key of kind "ecdsa" (P-256), "rsa" (2048) or
// "ed25519".
func Key(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	var (
		key crypto.Signer
		err error
	)
	switch kind {
	case "ecdsa":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("testpki: unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// KeyPEM encodes key as PKCS#8 PEM.
func KeyPEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// CertPEM encodes a DER certificate as PEM.
func CertPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// Node is the subject of node name's certificates.
func Node(name string) pkix.Name {
	return pkix.Name{CommonName: "system:node:" + name, Organization: []string{"system:nodes"}}
}

// CA is a certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewCA returns a new self-signed ECDSA CA valid from a day ago for ten years.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key := Key(t, "ecdsa")
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "testpki CA"},
		NotBefore: time.Now().Add(-24 * time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, Key: key}
}

// LoadCA reads a CA from PEM files, such as a test cluster's.
func LoadCA(t testing.TB, certFile, keyFile string) *CA {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, Key: pair.PrivateKey.(crypto.Signer)}
}

// PEM is the CA certificate, PEM encoded.
func (ca *CA) PEM() []byte { return CertPEM(ca.Cert.Raw) }

// Spec describes a certificate to issue. Zero fields take defaults.
type Spec struct {
	// Key is the certified public key; nil issues for a new ECDSA key,
	// returned by Issue.
	Key       crypto.PublicKey
	Subject   pkix.Name     // default Node("n1")
	NotBefore time.Time     // default an hour ago
	NotAfter  time.Time     // default NotBefore + Lifetime
	Lifetime  time.Duration // used when NotAfter is zero; default 24h
	DNSNames  []string
	IPs       []net.IP
	// ExtKeyUsage defaults to what the Kubernetes node signers issue:
	// client auth without SANs, server auth with them.
	ExtKeyUsage []x509.ExtKeyUsage
	// KeyUsage defaults to digital signature.
	KeyUsage x509.KeyUsage
	// IsCA issues a CA certificate (basicConstraints CA:TRUE), as a
	// malicious or broken signer might.
	IsCA bool
}

// Issued is a certificate and, when Issue made the key, its key.
type Issued struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     crypto.Signer // nil when Spec.Key was given
	KeyPEM  []byte
}

// Issue signs a certificate as the CA: by default a leaf for client auth,
// or for server auth when it has SANs, like the Kubernetes node signers.
func (ca *CA) Issue(t testing.TB, s Spec) Issued {
	t.Helper()
	var out Issued
	if s.Key == nil {
		out.Key = Key(t, "ecdsa")
		out.KeyPEM = KeyPEM(t, out.Key)
		s.Key = out.Key.Public()
	}
	if s.Subject.CommonName == "" {
		s.Subject = Node("n1")
	}
	if s.NotBefore.IsZero() {
		s.NotBefore = time.Now().Add(-time.Hour)
	}
	if s.Lifetime == 0 {
		s.Lifetime = 24 * time.Hour
	}
	if s.NotAfter.IsZero() {
		s.NotAfter = s.NotBefore.Add(s.Lifetime)
	}
	if s.ExtKeyUsage == nil {
		s.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		if len(s.DNSNames) > 0 || len(s.IPs) > 0 {
			s.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}
	}
	if s.KeyUsage == 0 {
		s.KeyUsage = x509.KeyUsageDigitalSignature
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: s.Subject, NotBefore: s.NotBefore, NotAfter: s.NotAfter,
		DNSNames: s.DNSNames, IPAddresses: s.IPs,
		KeyUsage:    s.KeyUsage,
		ExtKeyUsage: s.ExtKeyUsage,
	}
	if s.IsCA {
		tmpl.BasicConstraintsValid, tmpl.IsCA = true, true
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, s.Key, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	if out.Cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	out.CertPEM = CertPEM(der)
	return out
}

var serials atomic.Int64

func serial() *big.Int { return big.NewInt(time.Now().UnixNano() + serials.Add(1)) }
