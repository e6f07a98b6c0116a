package testcluster

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/tlsboot/tlsboot/internal/atomicfile"
)

// Layout says which CAs a cluster uses.
type Layout string

const (
	// LayoutSingle is kubeadm's: one CA signs the API server's serving
	// certificate, is its --client-ca-file, signs the admin certificate
	// and is every kube-controller-manager signer. The default.
	LayoutSingle Layout = "single"
	// LayoutSplit is like k3s and RKE2: a server CA signs the API
	// server's serving certificate; a separate client CA is its
	// --client-ca-file, signs the admin certificate and is the signer of
	// kubernetes.io/kube-apiserver-client-kubelet,
	// kubernetes.io/kube-apiserver-client and
	// kubernetes.io/legacy-unknown; a third CA is the signer of
	// kubernetes.io/kubelet-serving.
	LayoutSplit Layout = "split"
	// LayoutSelfSignedServing gives kube-apiserver no serving certificate,
	// so it generates a self-signed one (with its own CA) in its
	// --cert-dir; one cluster CA does everything else: --client-ca-file,
	// every signer, the admin certificate.
	LayoutSelfSignedServing Layout = "selfsigned-serving"
)

// Layouts lists every layout, in the order tests run them.
var Layouts = []Layout{LayoutSingle, LayoutSplit, LayoutSelfSignedServing}

func (l Layout) validate() error {
	for _, known := range Layouts {
		if l == known {
			return nil
		}
	}
	return fmt.Errorf("unknown layout %q: want one of %q", l, Layouts)
}

// authority is one CA, in memory and on disk.
type authority struct {
	cert              *x509.Certificate
	key               crypto.Signer
	certFile, keyFile string
}

// pki is the cluster's key material, generated fresh for every cluster.
type pki struct {
	// server signs the API server's serving certificate; nil in
	// LayoutSelfSignedServing, where the API server makes its own.
	server *authority
	// client is the API server's --client-ca-file, signs the admin
	// certificate and is the signer of the client signers.
	client *authority
	// kubeletServing is the signer of kubernetes.io/kubelet-serving.
	kubeletServing *authority
	// serverCAFile verifies the API server: server's certificate, or in
	// LayoutSelfSignedServing the CA copied out of the API server's
	// --cert-dir by copyGeneratedServerCA, which does not exist before.
	serverCAFile string

	servingCert, servingKey   string // "" in LayoutSelfSignedServing
	adminCert, adminKey       string
	saPublicKey, saPrivateKey string
}

// newPKI makes the layout's CAs and certificates; extraSANs (IPs or DNS
// names) are added to the API server's serving certificate.
func newPKI(dir string, layout Layout, extraSANs []string) (*pki, error) {
	p := &pki{
		adminCert:    filepath.Join(dir, "admin.crt"),
		adminKey:     filepath.Join(dir, "admin.key"),
		saPublicKey:  filepath.Join(dir, "sa.pub"),
		saPrivateKey: filepath.Join(dir, "sa.key"),
	}
	if err := p.newAuthorities(dir, layout); err != nil {
		return nil, err
	}
	if p.server != nil {
		p.servingCert, p.servingKey = filepath.Join(dir, "apiserver.crt"), filepath.Join(dir, "apiserver.key")
		tmpl := &x509.Certificate{
			Subject:     pkix.Name{CommonName: "kube-apiserver"},
			DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		for _, san := range extraSANs {
			if ip := net.ParseIP(san); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, san)
			}
		}
		if err := p.server.issue(p.servingCert, p.servingKey, tmpl); err != nil {
			return nil, err
		}
	} else if len(extraSANs) > 0 {
		return nil, fmt.Errorf("extra serving SANs %q need a layout whose API server certificate the test cluster signs, not %s (kube-apiserver generates its own)", extraSANs, layout)
	}
	if err := p.client.issue(p.adminCert, p.adminKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "tlsboot-admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, err
	}
	return p, p.newServiceAccountKey()
}

// newAuthorities makes the layout's CAs.
func (p *pki) newAuthorities(dir string, layout Layout) error {
	switch layout {
	case LayoutSingle:
		ca, err := newAuthority(dir, "ca", "tlsboot-testcluster-ca")
		if err != nil {
			return err
		}
		p.server, p.client, p.kubeletServing = ca, ca, ca
		p.serverCAFile = ca.certFile
	case LayoutSplit:
		var cas [3]*authority
		for i, name := range []string{"server-ca", "client-ca", "kubelet-serving-ca"} {
			var err error
			if cas[i], err = newAuthority(dir, name, "tlsboot-testcluster-"+name); err != nil {
				return err
			}
		}
		p.server, p.client, p.kubeletServing = cas[0], cas[1], cas[2]
		p.serverCAFile = p.server.certFile
	case LayoutSelfSignedServing:
		ca, err := newAuthority(dir, "ca", "tlsboot-testcluster-ca")
		if err != nil {
			return err
		}
		p.client, p.kubeletServing = ca, ca
		p.serverCAFile = filepath.Join(dir, "server-ca.crt")
	default:
		return layout.validate()
	}
	return nil
}

// newAuthority makes a self-signed CA and writes it to <name>.crt and
// <name>.key in dir.
func newAuthority(dir, name, commonName string) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	a := &authority{key: key, certFile: filepath.Join(dir, name+".crt"), keyFile: filepath.Join(dir, name+".key")}
	if a.cert, err = x509.ParseCertificate(der); err != nil {
		return nil, err
	}
	return a, writeCertAndKey(a.certFile, a.keyFile, der, key)
}

// issue signs tmpl with the CA for a new ECDSA key and writes both files.
func (a *authority) issue(certFile, keyFile string, tmpl *x509.Certificate) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = a.cert.NotBefore
	tmpl.NotAfter = time.Now().Add(365 * 24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, key.Public(), a.key)
	if err != nil {
		return fmt.Errorf("signing %s: %w", certFile, err)
	}
	return writeCertAndKey(certFile, keyFile, der, key)
}

func (p *pki) newServiceAccountKey() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	if err := os.WriteFile(p.saPublicKey, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600); err != nil {
		return err
	}
	return writeKey(p.saPrivateKey, key)
}

// errNoServingCert is copyGeneratedServerCA's answer until kube-apiserver
// has written a complete serving certificate file.
var errNoServingCert = errors.New("no complete self-signed serving certificate yet")

// copyGeneratedServerCA copies the CA certificates out of the serving
// certificate file kube-apiserver generated (certutil's
// GenerateSelfSignedCertKeyWithFixtures writes the serving certificate
// followed by the CA that signed it) to p.serverCAFile. It returns
// errNoServingCert while the file is missing or has no CA in it yet: it is
// polled while kube-apiserver starts, and may catch the file half-written.
func (p *pki) copyGeneratedServerCA(servingCertFile string) error {
	data, err := os.ReadFile(servingCertFile)
	if errors.Is(err, os.ErrNotExist) {
		return errNoServingCert
	}
	if err != nil {
		return err
	}
	var cas bytes.Buffer
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		cert, err := x509.ParseCertificate(block.Bytes)
		if block.Type != "CERTIFICATE" || err != nil {
			continue
		}
		if cert.IsCA {
			pem.Encode(&cas, block)
		}
	}
	if cas.Len() == 0 {
		return errNoServingCert
	}
	// Atomically: a restarted API server rewrites the same CA while tests
	// may be reading the file.
	return atomicfile.WriteFile(p.serverCAFile, cas.Bytes(), 0o644)
}

func writeCertAndKey(certFile, keyFile string, der []byte, key crypto.Signer) error {
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return writeKey(keyFile, key)
}

func writeKey(file string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}
