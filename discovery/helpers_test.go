package discovery

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/cluster-bootstrap/token/jws"

	"github.com/tlsboot/tlsboot/token"
)

var realToken = token.Token{ID: "abcdef", Secret: "0123456789abcdef"}

// ca is a certificate authority for tests.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t testing.TB, name string) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &ca{cert: cert, key: key}
}

func (c *ca) pem() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})
}

// serving issues a serving certificate for 127.0.0.1.
func (c *ca) serving(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// clusterInfo returns the kubeconfig kubeadm and tlsboot setup put in
// cluster-info.
func clusterInfo(t testing.TB, server string, caPEM []byte) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[""] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sign(t testing.TB, content string, tok token.Token) string {
	t.Helper()
	s, err := jws.ComputeDetachedSignature(content, tok.ID, tok.Secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// apiServer is a fake API server serving cluster-info over TLS with a
// certificate of its CA. data returns the ConfigMap data for the n-th
// request (from 0), or nil for a 404.
type apiServer struct {
	*httptest.Server
	mu       sync.Mutex // guards requests
	requests int
}

func newAPIServer(t testing.TB, c *ca, data func(n int) map[string]string) *apiServer {
	t.Helper()
	s := &apiServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/namespaces/kube-public/configmaps/cluster-info" || r.Header.Get("Authorization") != "" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		n := s.requests
		s.requests++
		s.mu.Unlock()
		d := data(n)
		if d == nil {
			http.Error(w, `{"kind":"Status","code":404}`, http.StatusNotFound)
			return
		}
		cm := corev1.ConfigMap{Data: d}
		cm.Name, cm.Namespace = "cluster-info", "kube-public"
		json.NewEncoder(w).Encode(&cm)
	}))
	s.TLS = &tls.Config{Certificates: []tls.Certificate{c.serving(t)}}
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are what some tests expect
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// signed serves content signed with tok, always.
func signed(t testing.TB, content string, tok token.Token) func(int) map[string]string {
	sig := sign(t, content, tok)
	return func(int) map[string]string {
		return map[string]string{"kubeconfig": content, "jws-kubeconfig-" + tok.ID: sig}
	}
}
