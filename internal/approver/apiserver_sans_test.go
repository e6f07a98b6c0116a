package approver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/tlsboot/tlsboot/approval"
	"github.com/tlsboot/tlsboot/csr"
)

// selfSigned returns a TLS certificate for the given SANs (IPs or names).
func selfSigned(t testing.TB, sans ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, s := range sans {
		if ip := net.ParseIP(s); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, s)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// withServingCertificate gives a controller an API server whose serving
// certificate reads at once and names nothing a test node uses.
func withServingCertificate(o *Options) {
	o.APIServer = "https://apiserver.test:6443"
	leaf := &x509.Certificate{DNSNames: []string{"apiserver.test"}}
	o.ReadCertificate = func(context.Context, string, string) (*x509.Certificate, error) { return leaf, nil }
}

// markServingRead records a read of a serving certificate with no names,
// for tests that call sync without Run.
func markServingRead(c *Controller) {
	c.cluster.serving.store(dialTarget{addr: "apiserver.test:6443"}, nil)
}

// The handshake reads the SANs of the certificate the server presents for
// the name asked (SNI), without trusting it and without sending a request.
func TestReadServingCertificate(t *testing.T) {
	byDefault := selfSigned(t, "api.example.internal", "10.0.0.100", "Kubernetes.Default.")
	bySNI := selfSigned(t, "join.example.internal", "fd00::100")
	requests := 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { requests++ }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{byDefault}, GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if h.ServerName == "join.example.internal" {
			return &bySNI, nil
		}
		return &byDefault, nil
	}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	for _, tc := range []struct {
		sni  string
		want []string
	}{
		{"", []string{"10.0.0.100", "api.example.internal", "kubernetes.default"}},
		{"join.example.internal", []string{"fd00::100", "join.example.internal"}},
	} {
		t.Run("sni "+tc.sni, func(t *testing.T) {
			cert, err := readServingCertificate(t.Context(), addr, tc.sni)
			if err != nil {
				t.Fatal(err)
			}
			if got := certificateNames(cert); !slices.Equal(got, tc.want) {
				t.Errorf("names %q, want %q", got, tc.want)
			}
		})
	}
	if requests != 0 {
		t.Errorf("%d HTTP requests sent, want none: only the handshake", requests)
	}
	// Nothing listens: an error, bounded by the dial timeout.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	if _, err := readServingCertificate(t.Context(), closed, ""); err == nil {
		t.Error("reading from a closed port succeeded")
	}
}

// A certificate's names are bounded.
func TestCertificateNamesBounded(t *testing.T) {
	cert := &x509.Certificate{}
	for i := range 1000 {
		cert.DNSNames = append(cert.DNSNames, "n"+string(rune('a'+i%26))+".example")
	}
	if n := len(certificateNames(cert)); n != maxNamesPerCertificate {
		t.Errorf("%d names kept, want %d", n, maxNamesPerCertificate)
	}
}

// fakeReads answers reads from a table by target; a missing target fails.
type fakeReads struct {
	mu    sync.Mutex // guards certs
	certs map[dialTarget]*x509.Certificate
}

func (f *fakeReads) set(t dialTarget, sans ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.certs == nil {
		f.certs = map[dialTarget]*x509.Certificate{}
	}
	if sans == nil {
		delete(f.certs, t)
		return
	}
	cert := &x509.Certificate{}
	for _, s := range sans {
		if ip := net.ParseIP(s); ip != nil {
			cert.IPAddresses = append(cert.IPAddresses, ip)
		} else {
			cert.DNSNames = append(cert.DNSNames, s)
		}
	}
	f.certs[t] = cert
}

func (f *fakeReads) read(_ context.Context, addr, sni string) (*x509.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.certs[dialTarget{addr, sni}]; ok {
		return c, nil
	}
	return nil, errors.New("connection refused")
}

// Refresh: unknown until a first read; a failed read keeps the target's
// last names; a target no longer listed is dropped.
func TestServingNamesRefresh(t *testing.T) {
	reads := &fakeReads{}
	s := newServingNames(reads.read)
	lb, ep := dialTarget{addr: "api.example.internal:6443"}, dialTarget{addr: "10.1.0.10:6443"}
	for _, step := range []struct {
		name    string
		set     func()
		targets []dialTarget
		known   bool
		has     []string
		hasNot  []string
	}{
		{"nothing reads: unknown", func() {}, []dialTarget{lb, ep}, false, nil, []string{"10.0.0.100"}},
		{"the load balancer reads", func() { reads.set(lb, "api.example.internal", "10.0.0.100") }, []dialTarget{lb, ep}, true,
			[]string{"api.example.internal", "10.0.0.100"}, nil},
		{"the endpoint reads too", func() { reads.set(ep, "10.1.0.10", "cp1") }, []dialTarget{lb, ep}, true,
			[]string{"api.example.internal", "10.1.0.10", "cp1"}, nil},
		{"the load balancer fails: its last names kept", func() { reads.set(lb) }, []dialTarget{lb, ep}, true,
			[]string{"api.example.internal", "10.0.0.100", "cp1"}, nil},
		{"the endpoint is gone: its names dropped", func() {}, []dialTarget{lb}, true,
			[]string{"api.example.internal"}, []string{"cp1", "10.1.0.10"}},
	} {
		step.set()
		s.refresh(t.Context(), step.targets)
		if got := s.known.Load(); got != step.known {
			t.Errorf("%s: known %v, want %v", step.name, got, step.known)
		}
		for _, a := range step.has {
			if !s.has(a) {
				t.Errorf("%s: %s not reserved", step.name, a)
			}
		}
		for _, a := range step.hasNot {
			if s.has(a) {
				t.Errorf("%s: %s still reserved", step.name, a)
			}
		}
	}
}

// The targets: the configured server, cluster-info's, every EndpointSlice
// address:port, each also with the names the API server is known by.
func TestDialTargets(t *testing.T) {
	client := fake.NewClientset(
		&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes"}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.10", "10.1.0.11"}}}, Ports: []discoveryv1.EndpointPort{{Port: ptrTo(int32(6443))}}},
		&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "other"}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.9.9.9"}}}},
		clusterInfo("https://join.example.internal:6443"),
	)
	c := startCachesWith(t, client, func(o *Options) { o.APIServer = "https://api.example.internal" })
	got := c.dialTargets()
	var want []dialTarget
	for _, a := range []string{"api.example.internal:443", "join.example.internal:6443", "10.1.0.10:6443", "10.1.0.11:6443"} {
		want = append(want, dialTarget{a, ""}, dialTarget{a, "api.example.internal"}, dialTarget{a, "join.example.internal"})
	}
	if !slices.Equal(got, want) {
		t.Errorf("targets\n%v, want\n%v", got, want)
	}
}

func clusterInfo(server string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cluster-info", Namespace: "kube-public", Annotations: map[string]string{"a": "b"}},
		Data: map[string]string{"kubeconfig": "apiVersion: v1\nkind: Config\nclusters:\n- name: \"\"\n  cluster:\n    server: " + server + "\n", "jws-kubeconfig-abcdef": "sig"}}
}

// startCachesWith is startCaches with options, and without a serving
// certificate read.
func startCachesWith(t *testing.T, client *fake.Clientset, mutate func(*Options)) *Controller {
	t.Helper()
	p, err := approval.New(approval.Options{AllowedIPs: tenSlash8, AllowedDNSRegex: ".*"})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Client: client, Policy: p, Recorder: record.NewFakeRecorder(100)}
	if mutate != nil {
		mutate(&opts)
	}
	ctrl, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	for _, s := range ctrl.starts {
		s(ctx.Done())
	}
	waitSynced(t, ctrl)
	return ctrl
}

// Fail closed: until a serving certificate was read, a serving CSR waits
// (APIServerNamesUnknown), a client CSR does not; once read, its names are
// denied and the node's own addresses approved.
func TestServingWaitsForAPIServerCertificate(t *testing.T) {
	client := fake.NewClientset(node("n1", "10.0.0.5", "10.0.0.100"))
	allowSARs(client, true, nil)
	reads := &fakeReads{}
	c := startCachesWith(t, client, func(o *Options) { o.APIServer = "https://api.example.internal:6443"; o.ReadCertificate = reads.read })
	decide := func(name string, ips ...string) approval.Decision {
		t.Helper()
		priv, _ := csr.GenerateKey(csr.ECDSAP256)
		var parsed []net.IP
		for _, ip := range ips {
			parsed = append(parsed, net.ParseIP(ip))
		}
		obj := newCSR(t, name, csr.NodeServing("n1", priv.Public(), nil, parsed), "system:node:n1", []string{"system:nodes"})
		in, err := c.input(obj)
		if err != nil {
			t.Fatal(err)
		}
		d, err := c.opts.Policy.Decide(t.Context(), in, c.authz)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	c.cluster.serving.refresh(t.Context(), c.dialTargets())
	if d := decide("before", "10.0.0.5"); d.Verdict != approval.Wait || d.Reason != approval.ReasonAPIServerNamesUnknown {
		t.Errorf("before the certificate is read: %v %s (%s), want wait %s", d.Verdict, d.Reason, d.Message, approval.ReasonAPIServerNamesUnknown)
	}
	priv, _ := csr.GenerateKey(csr.ECDSAP256)
	clientCSR := newCSR(t, "client", csr.NodeClient("n9", priv.Public()), "system:bootstrap:abcdef", []string{"system:bootstrappers"})
	in, _ := c.input(clientCSR)
	if d, _ := c.opts.Policy.Decide(t.Context(), in, c.authz); d.Reason == approval.ReasonAPIServerNamesUnknown {
		t.Errorf("a client CSR waits for the serving certificate: %+v", d)
	}
	reads.set(dialTarget{addr: "api.example.internal:6443"}, "api.example.internal", "10.0.0.100")
	c.cluster.serving.refresh(t.Context(), c.dialTargets())
	if d := decide("vip", "10.0.0.100"); d.Verdict != approval.Deny || d.Reason != approval.ReasonSANReserved {
		t.Errorf("the API server's VIP: %v %s (%s), want deny %s", d.Verdict, d.Reason, d.Message, approval.ReasonSANReserved)
	}
	if d := decide("own", "10.0.0.5"); d.Verdict != approval.Approve {
		t.Errorf("the node's own address: %v %s (%s), want approve", d.Verdict, d.Reason, d.Message)
	}
}

// Run: a serving CSR that waited for the certificate is decided once an
// EndpointSlice change makes the approver read it, without a retry timer.
func TestServingNamesReadOnEndpointChange(t *testing.T) {
	client := fake.NewClientset(node("n1", "10.0.0.5", "10.0.0.100"))
	reads := &fakeReads{}
	h := start(t, client, func(o *Options) {
		o.MaxRetryDelay = time.Hour
		o.Policy, _ = approval.New(approval.Options{AllowedIPs: tenSlash8})
		o.ReadCertificate = reads.read
	})
	priv, _ := csr.GenerateKey(csr.ECDSAP256)
	h.create(t, newCSR(t, "serving", csr.NodeServing("n1", priv.Public(), nil, []net.IP{net.ParseIP("10.0.0.100")}), "system:node:n1", []string{"system:nodes"}))
	err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return h.ctrl.Ready() == nil, nil
	})
	if err != nil {
		t.Fatal("never ready")
	}
	// The endpoint's certificate names the VIP the node claims.
	reads.set(dialTarget{addr: "10.1.0.10:6443"}, "10.0.0.100", "cp1")
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes"}},
		AddressType: discoveryv1.AddressTypeIPv4, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.10"}}}, Ports: []discoveryv1.EndpointPort{{Port: ptrTo(int32(6443))}}}
	if _, err := client.DiscoveryV1().EndpointSlices("default").Create(t.Context(), slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cond := h.waitCondition(t, "serving", certificatesv1.CertificateDenied)
	if cond.Reason != approval.ReasonSANReserved {
		t.Errorf("denied %s (%s), want %s", cond.Reason, cond.Message, approval.ReasonSANReserved)
	}
}
