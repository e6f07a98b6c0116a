package approval

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	keysOnce sync.Once
	keys     map[string]crypto.Signer // test keys by type, made once: RSA is slow
)

func testKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	keysOnce.Do(func() {
		rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		_, edKey, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		keys = map[string]crypto.Signer{"rsa": rsaKey, "ecdsa": ecKey, "ed25519": edKey}
	})
	return keys[kind]
}

var keyKinds = []string{"rsa", "ecdsa", "ed25519"}

var (
	t0        = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	bootstrap = Requester{Username: "system:bootstrap:abcdef", Groups: []string{"system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token", "system:authenticated"}}
)

func nodeUser(name string) Requester {
	return Requester{Username: "system:node:" + name, Groups: []string{"system:nodes", "system:authenticated"}}
}

// csrSpec describes a CSR to build; build() fills what is left empty with
// what a kubelet would send.
type csrSpec struct {
	signer     string
	key        crypto.Signer
	cn         string
	org        []string
	dns        []string
	ips        []net.IP
	emails     []string
	uris       []*url.URL
	usages     []certificatesv1.KeyUsage
	requester  Requester
	expiration *int32
	conditions []certificatesv1.CertificateSigningRequestCondition
	cert       []byte
	rawRequest []byte
}

func (s csrSpec) build(t testing.TB) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	tmpl := &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: s.cn, Organization: s.org},
		DNSNames: s.dns, IPAddresses: s.ips, EmailAddresses: s.emails, URIs: s.uris,
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, s.key)
	if err != nil {
		t.Fatal(err)
	}
	req := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	if s.rawRequest != nil {
		req = s.rawRequest
	}
	extra := map[string]certificatesv1.ExtraValue{}
	for k, v := range s.requester.Extra {
		extra[k] = v
	}
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "csr-test", CreationTimestamp: metav1.NewTime(t0)},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request: req, SignerName: s.signer, Usages: s.usages, ExpirationSeconds: s.expiration,
			Username: s.requester.Username, UID: s.requester.UID, Groups: s.requester.Groups, Extra: extra,
		},
		Status: certificatesv1.CertificateSigningRequestStatus{Conditions: s.conditions, Certificate: s.cert},
	}
}

// usagesFor returns what the kubelet asks for with key: digital signature,
// auth, and key encipherment for RSA keys.
func usagesFor(key crypto.Signer, auth certificatesv1.KeyUsage) []certificatesv1.KeyUsage {
	u := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, auth}
	if _, ok := key.(*rsa.PrivateKey); ok {
		u = append(u, certificatesv1.UsageKeyEncipherment)
	}
	return u
}

// clientSpec is node n1's bootstrap client CSR, made by the bootstrap token.
func clientSpec(key crypto.Signer) csrSpec {
	return csrSpec{
		signer: certificatesv1.KubeAPIServerClientKubeletSignerName, key: key,
		cn: "system:node:n1", org: []string{"system:nodes"},
		usages: usagesFor(key, certificatesv1.UsageClientAuth), requester: bootstrap,
	}
}

// servingSpec is node n1's serving CSR for its addresses.
func servingSpec(key crypto.Signer) csrSpec {
	return csrSpec{
		signer: certificatesv1.KubeletServingSignerName, key: key,
		cn: "system:node:n1", org: []string{"system:nodes"},
		dns: []string{"n1", "n1.example.internal"}, ips: []net.IP{net.ParseIP("10.0.0.1"), net.ParseIP("fd00::1")},
		usages: usagesFor(key, certificatesv1.UsageServerAuth), requester: nodeUser("n1"),
	}
}

func nodeN1() *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeHostName, Address: "n1"},
			{Type: corev1.NodeInternalDNS, Address: "N1.example.internal."},
			{Type: corev1.NodeInternalIP, Address: "10.0.0.1"},
			{Type: corev1.NodeExternalIP, Address: "fd00::1"},
		}},
	}
}

// fakeAuthz grants the permissions in allowed ("user/subresource") and
// records what it was asked.
type fakeAuthz struct {
	allowed map[string]bool
	err     error

	mu    sync.Mutex // guards asked
	asked []string
}

func (f *fakeAuthz) Authorize(_ context.Context, r Requester, sub string) (bool, error) {
	f.mu.Lock()
	f.asked = append(f.asked, r.Username+"/"+sub)
	f.mu.Unlock()
	return f.allowed[r.Username+"/"+sub], f.err
}

// kubeadmAuthz grants what kubeadm's bindings grant.
func kubeadmAuthz() *fakeAuthz {
	return &fakeAuthz{allowed: map[string]bool{
		"system:bootstrap:abcdef/nodeclient": true,
		"system:node:n1/selfnodeclient":      true,
		"system:node:n2/selfnodeclient":      true,
	}}
}

func i32(v int32) *int32 { return &v }
