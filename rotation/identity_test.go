package rotation

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tlsboot/tlsboot/internal/testpki"
)

// peer is what the test server saw of one request.
type peer struct {
	serial string // of the client certificate
	conn   string // the client's address: one per connection
	proto  int    // HTTP major version
}

// mtlsServer is an HTTPS server that requires a client certificate of ca
// and answers /whoami with the peer it saw.
type mtlsServer struct {
	*httptest.Server
	conns atomic.Int32 // connections accepted
}

func newMTLSServer(t *testing.T, ca *testpki.CA) *mtlsServer {
	t.Helper()
	issued := ca.Issue(t, testpki.Spec{Subject: testpki.Node("server"), IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	pair, err := tls.X509KeyPair(issued.CertPEM, issued.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	clients := x509.NewCertPool()
	clients.AddCert(ca.Cert)
	s := &mtlsServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %d", r.TLS.PeerCertificates[0].SerialNumber, r.RemoteAddr, r.ProtoMajor)
	}))
	s.EnableHTTP2 = true
	s.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clients}
	s.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// whoami asks the server, through client-go, which certificate and
// connection it saw.
func whoami(t *testing.T, client kubernetes.Interface) peer {
	t.Helper()
	raw, err := client.CoreV1().RESTClient().Get().AbsPath("/whoami").DoRaw(context.Background())
	if err != nil {
		t.Fatalf("request with the live identity: %v", err)
	}
	var p peer
	if _, err := fmt.Sscanf(string(raw), "%s %s %d", &p.serial, &p.conn, &p.proto); err != nil {
		t.Fatalf("answer %q: %v", raw, err)
	}
	return p
}

// TestRESTConfigFollowsRotation: a client-go client built before Run
// presents the stored certificate over one reused HTTP/2 connection; after a
// rotation its next request goes over a new connection that presents the
// new certificate.
func TestRESTConfigFollowsRotation(t *testing.T) {
	f := newFixture(t)
	f.ca.storeCert(t, f.store, node, f.clk.Now(), time.Hour)
	srv := newMTLSServer(t, f.ca.CA)
	m := f.newManager(t)
	base := &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{CAData: f.ca.PEM()}}
	cfg, err := m.RESTConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := f.store.Current()
	first := whoami(t, client)
	if first.serial != stored.Leaf.SerialNumber.String() || first.proto != 2 {
		t.Fatalf("first request: %+v, want the stored certificate %s over HTTP/2", first, stored.Leaf.SerialNumber)
	}
	if again := whoami(t, client); again.conn != first.conn || srv.conns.Load() != 1 {
		t.Fatalf("second request on %s, %d connections: want the first connection reused", again.conn, srv.conns.Load())
	}

	f.start(t)
	waitSleeping(t, f.clk)
	f.m.Trigger()
	f.ev.wantRotated(t, ReasonForced)
	rotated, _ := f.store.Current()
	if !bytes.Equal(m.Current().Leaf.Raw, rotated.Leaf.Raw) {
		t.Fatal("Current is not the rotated certificate")
	}
	after := whoami(t, client)
	if after.serial != rotated.Leaf.SerialNumber.String() {
		t.Errorf("after the rotation the client presented %s, want the new certificate %s", after.serial, rotated.Leaf.SerialNumber)
	}
	if after.conn == first.conn || srv.conns.Load() < 2 {
		t.Errorf("after the rotation the request went over %s (%d connections): want a new connection", after.conn, srv.conns.Load())
	}
}

// TestRESTConfigNoCertificate: with nothing stored yet, a RESTConfig client
// presents no certificate (the server refuses the handshake), and once a
// certificate is recovered it presents that one.
func TestRESTConfigNoCertificate(t *testing.T) {
	f := newFixture(t)
	srv := newMTLSServer(t, f.ca.CA)
	m := f.newManager(t)
	if m.Current() != nil {
		t.Fatal("Current is set with an empty store")
	}
	if c, err := m.GetClientCertificate(nil); err != nil || c == nil || len(c.Certificate) != 0 {
		t.Errorf("GetClientCertificate() = %v, %v: want an empty certificate and no error", c, err)
	}
	cfg, err := m.RESTConfig(&rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{CAData: f.ca.PEM()}})
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().RESTClient().Get().AbsPath("/whoami").DoRaw(context.Background()); err == nil {
		t.Fatal("the server accepted a client without a certificate")
	}
	f.start(t)
	f.ev.wantRotated(t, ReasonMissing) // Recover stores one
	stored, _ := f.store.Current()
	if got := whoami(t, client); got.serial != stored.Leaf.SerialNumber.String() {
		t.Errorf("presented %s, want the recovered certificate %s", got.serial, stored.Leaf.SerialNumber)
	}
}

// TestGetCertificateServes: a TLS server with GetCertificate fails the
// handshake before there is a certificate and serves the current one after.
func TestGetCertificateServes(t *testing.T) {
	f := newFixture(t)
	m := f.newManager(t)
	if _, err := m.GetCertificate(nil); err == nil || !strings.Contains(err.Error(), "no client certificate yet") {
		t.Errorf("GetCertificate() with an empty store = %v", err)
	}
	issued := f.ca.Issue(t, testpki.Spec{Subject: testpki.Node(node), IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	if _, err := f.store.Update(issued.CertPEM, issued.KeyPEM); err != nil {
		t.Fatal(err)
	}
	m = f.newManager(t) // New reads the store
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: m.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { l.Close() }) // runs first
	wg.Go(func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.(*tls.Conn).Handshake()
	})
	roots := x509.NewCertPool()
	roots.AddCert(f.ca.Cert)
	conn, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatalf("handshake with GetCertificate: %v", err)
	}
	defer conn.Close()
	if got := conn.ConnectionState().PeerCertificates[0]; !got.Equal(issued.Cert) {
		t.Errorf("served %s, want the stored certificate %s", got.SerialNumber, issued.Cert.SerialNumber)
	}
}

// TestCurrentConcurrent: readers of Current, the TLS callbacks and
// RESTConfig, running while the loop rotates, always see a whole, unchanged
// certificate (run with -race).
func TestCurrentConcurrent(t *testing.T) {
	f := newFixture(t)
	f.ca.storeCert(t, f.store, node, f.clk.Now(), time.Hour)
	f.start(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var reads atomic.Int64
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				cur := f.m.Current()
				c, _ := f.m.GetClientCertificate(nil)
				s, _ := f.m.GetCertificate(nil)
				if cur == nil || c == nil || s == nil || cur.Leaf == nil || !bytes.Equal(cur.Certificate[0], cur.Leaf.Raw) {
					t.Error("a reader saw no certificate or a torn one")
					return
				}
				if _, err := f.m.RESTConfig(&rest.Config{Host: "https://127.0.0.1:1"}); err != nil {
					t.Error(err)
					return
				}
				reads.Add(1)
			}
		})
	}
	seen := map[string]bool{f.m.Current().Leaf.SerialNumber.String(): true}
	for range 3 {
		waitSleeping(t, f.clk)
		f.m.Trigger()
		f.ev.wantRotated(t, ReasonForced)
		seen[f.m.Current().Leaf.SerialNumber.String()] = true
	}
	cancel()
	wg.Wait()
	if len(seen) != 4 || reads.Load() == 0 {
		t.Errorf("%d distinct certificates in memory over 3 rotations, %d reads", len(seen), reads.Load())
	}
}

// TestRESTConfigRefuses: bases RESTConfig cannot honour are refused with an
// error naming the field; base itself is never modified, and its own client
// certificate is dropped.
func TestRESTConfigRefuses(t *testing.T) {
	f := newFixture(t)
	m := f.newManager(t)
	for _, tc := range []struct {
		name string
		base *rest.Config
		want string
	}{
		{"nil", nil, "base config is nil"},
		{"transport", &rest.Config{Host: "https://x", Transport: http.DefaultTransport}, "already has a Transport"},
		{"exec", &rest.Config{Host: "https://x", ExecProvider: &clientcmdapi.ExecConfig{Command: "x"}}, "ExecProvider"},
		{"bad CA", &rest.Config{Host: "https://x", TLSClientConfig: rest.TLSClientConfig{CAData: []byte("not PEM")}}, "TLS settings"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.RESTConfig(tc.base)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("RESTConfig() = %v, want one line containing %q", err, tc.want)
			}
		})
	}
	base := &rest.Config{Host: "https://x", TLSClientConfig: rest.TLSClientConfig{
		CAData: f.ca.PEM(), CertFile: "/nonexistent/cert", KeyFile: "/nonexistent/key", ServerName: "api"}}
	cfg, err := m.RESTConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	if base.CertFile != "/nonexistent/cert" || base.Transport != nil || len(base.CAData) == 0 {
		t.Error("RESTConfig modified its base")
	}
	tr, ok := cfg.Transport.(*http.Transport)
	if !ok || cfg.TLSClientConfig.CertFile != "" || cfg.TLSClientConfig.CAData != nil {
		t.Fatalf("transport %T, TLS fields %+v: want an *http.Transport and no TLS fields left", cfg.Transport, cfg.TLSClientConfig)
	}
	if tc := tr.TLSClientConfig; tc.ServerName != "api" || tc.RootCAs == nil || tc.GetClientCertificate == nil || len(tc.Certificates) != 0 {
		t.Errorf("TLS config %+v: want base's server name and CA, the live certificate callback and no static certificate", tc)
	}
}

// newManager returns a Manager for f.opts, also used by start.
func (f *fixture) newManager(t *testing.T) *Manager {
	t.Helper()
	m, err := New(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	return m
}
