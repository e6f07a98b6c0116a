package certstore_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/tlsboot/tlsboot/certstore"
)

// A Store keeps one certificate and its key in the kubelet's layout: Update
// writes a timestamped file and points <prefix>-current.pem at it, which is
// the one path a kubeconfig or a tls.Config needs.
func ExampleStore() {
	dir, err := os.MkdirTemp("", "certstore-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	store, err := certstore.Open(certstore.Options{
		Dir:    filepath.Join(dir, "pki"), // created with mode 0700
		Prefix: "kubelet-client",
		// Names files after this clock; fixed here so that the output is stable.
		Now: func() time.Time { return time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		log.Fatal(err)
	}

	if _, err := store.Current(); errors.Is(err, certstore.ErrNoCertificate) {
		fmt.Println("no certificate yet")
	}

	// A node stores the certificate its CSR was issued with the key it
	// asked with; a self-signed pair stands in for them here.
	certPEM, keyPEM := examplePair("system:node:node-1")
	if _, err := store.Update(certPEM, keyPEM); err != nil {
		log.Fatal(err)
	}

	cert, err := store.Current() // Leaf is set
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("current:", cert.Leaf.Subject.CommonName)
	files, err := store.Files()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("file:", filepath.Base(files[0]))
	fmt.Println("link:", filepath.Base(store.CurrentPath()))

	// The -current.pem file holds both the chain and the key, so anything
	// that reads a pair of files can use it for both, like a kubeconfig's
	// client-certificate and client-key do.
	if _, err := tls.LoadX509KeyPair(store.CurrentPath(), store.CurrentPath()); err != nil {
		log.Fatal(err)
	}
	fmt.Println("loads as a TLS pair")
	// Output:
	// no certificate yet
	// current: system:node:node-1
	// file: kubelet-client-2026-12-01-10-00-00.pem
	// link: kubelet-client-current.pem
	// loads as a TLS pair
}

// examplePair returns a self-signed client certificate for cn and its key,
// both PEM-encoded.
func examplePair(cn string) (certPEM, keyPEM []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"system:nodes"}},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		log.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		log.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}
