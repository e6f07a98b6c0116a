package rotation_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/tlsboot/tlsboot/bootstrap"
	"github.com/tlsboot/tlsboot/certstore"
	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/kubeconfig"
	"github.com/tlsboot/tlsboot/rotation"
)

// A Manager keeps a node's client certificate valid for as long as the
// process runs, and is the process's live identity: client-go clients made
// from RESTConfig, and any tls.Config wired to GetClientCertificate, always
// present the current certificate. examples/agent is a complete program
// built this way.
func ExampleManager() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	boot := bootstrap.Options{
		KubeconfigPath:          "/var/lib/agent/kubelet.conf",
		BootstrapKubeconfigPath: "/etc/kubernetes/bootstrap-kubelet.conf",
		CertDir:                 "/var/lib/agent/pki",
		NodeName:                "node-1",
	}
	if _, err := bootstrap.Run(ctx, boot); err != nil { // a no-op once bootstrapped
		log.Fatal(err)
	}
	store, err := certstore.Open(certstore.Options{Dir: boot.CertDir, Prefix: bootstrap.DefaultCertPrefix})
	if err != nil {
		log.Fatal(err)
	}
	cluster, err := kubeconfig.Load(boot.KubeconfigPath) // the API server and its CA
	if err != nil {
		log.Fatal(err)
	}

	var client kubernetes.Interface // on the live identity, made below
	mgr, err := rotation.New(rotation.Options{
		Name:     "client",
		Store:    store,
		Template: func(pub crypto.PublicKey) csr.Request { return csr.NodeClient(boot.NodeName, pub) },
		Client:   func(context.Context) (kubernetes.Interface, error) { return client, nil },
		Roots:    func() (*x509.CertPool, error) { return kubeconfig.CAPool(cluster) },
		// No usable certificate (expired, or rejected with a 401): bootstrap again.
		Recover: func(ctx context.Context) (time.Duration, error) {
			again := boot
			again.Force, again.FreshKey = true, true
			res, err := bootstrap.Run(ctx, again)
			if err != nil {
				return 0, err
			}
			return res.Issuance, nil
		},
		Hooks: rotation.Hooks{
			Rotated: func(name string, reason rotation.Reason, _ time.Duration) {
				log.Printf("%s certificate rotated (%s)", name, reason)
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}

	// client-go: every connection presents the current certificate, and
	// all of them are closed after a rotation.
	cfg, err := mgr.RESTConfig(cluster)
	if err != nil {
		log.Fatal(err)
	}
	if client, err = kubernetes.NewForConfig(cfg); err != nil {
		log.Fatal(err)
	}

	// Any other TLS client (gRPC, websockets): present the current
	// certificate at each handshake.
	other := &tls.Config{GetClientCertificate: mgr.GetClientCertificate, MinVersion: tls.VersionTLS12}
	_ = other

	// Keep the certificate valid until ctx ends; do the agent's work with
	// client in other goroutines meanwhile.
	if err := mgr.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// GetCertificate serves the Manager's current certificate: each TLS
// handshake gets the one in memory, so a rotation needs no restart of the
// server. (A serving certificate is requested with csr.NodeServing; here
// the store already holds one.)
func ExampleManager_GetCertificate() {
	mgr, cleanup := exampleManager("system:node:node-1", x509.ExtKeyUsageServerAuth)
	defer cleanup()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }),
		TLSConfig: &tls.Config{GetCertificate: mgr.GetCertificate, MinVersion: tls.VersionTLS12},
	}
	go srv.ServeTLS(ln, "", "") // no files: the certificate comes from GetCertificate
	defer srv.Close()

	roots := x509.NewCertPool()
	roots.AddCert(mgr.Current().Leaf) // self-signed here; a cluster CA in real life
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	resp, err := client.Get("https://" + ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	fmt.Println("server presented:", resp.TLS.PeerCertificates[0].Subject.CommonName)
	// Output:
	// server presented: system:node:node-1
}

// GetClientCertificate presents the Manager's current certificate to
// servers that ask for one, at every handshake.
func ExampleManager_GetClientCertificate() {
	mgr, cleanup := exampleManager("system:node:node-1", x509.ExtKeyUsageClientAuth)
	defer cleanup()

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()

	client := srv.Client() // trusts the test server
	client.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = mgr.GetClientCertificate
	resp, err := client.Get(srv.URL)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	who, err := io.ReadAll(resp.Body)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("client presented:", string(who))
	// Output:
	// client presented: system:node:node-1
}

// exampleManager returns a Manager whose store holds a self-signed
// certificate for cn with the extended key usage eku, for 127.0.0.1. New
// reads the store, so Current has it without Run (and without a cluster).
func exampleManager(cn string, eku x509.ExtKeyUsage) (*rotation.Manager, func()) {
	dir, err := os.MkdirTemp("", "rotation-example-")
	if err != nil {
		log.Fatal(err)
	}
	store, err := certstore.Open(certstore.Options{Dir: filepath.Join(dir, "pki"), Prefix: "example"})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := store.Update(examplePair(cn, eku)); err != nil {
		log.Fatal(err)
	}
	mgr, err := rotation.New(rotation.Options{
		Name:     "example",
		Store:    store,
		Template: func(pub crypto.PublicKey) csr.Request { return csr.NodeClient("node-1", pub) },
		Client: func(context.Context) (kubernetes.Interface, error) {
			return nil, errors.New("no cluster in this example")
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	return mgr, func() { os.RemoveAll(dir) }
}

// examplePair returns a self-signed certificate and its key, PEM-encoded.
func examplePair(cn string, eku x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
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
		ExtKeyUsage:  []x509.ExtKeyUsage{eku},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		log.Fatal(err)
	}
	keyPEM, err = csr.MarshalPrivateKeyPEM(key)
	if err != nil {
		log.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM
}
