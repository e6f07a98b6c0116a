package approval

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
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
	// extraExts are added to the request's extensions; extraNames to its
	// subject (after CN and O).
	extraExts  []pkix.Extension
	extraNames []pkix.AttributeTypeAndValue
	// attributes, if not nil, replace the request's attributes, and the
	// request is signed again (see resign).
	attributes []asn1.RawValue
}

func (s csrSpec) build(t testing.TB) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	tmpl := &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: s.cn, Organization: s.org, ExtraNames: s.extraNames},
		DNSNames: s.dns, IPAddresses: s.ips, EmailAddresses: s.emails, URIs: s.uris,
		ExtraExtensions: s.extraExts,
	}
	if s.extraNames != nil {
		// pkix.Name drops CommonName and Organization when ExtraNames
		// has the same type: write every attribute in its own RDN.
		var rdns pkix.RDNSequence
		if s.cn != "" {
			rdns = append(rdns, pkix.RelativeDistinguishedNameSET{{Type: oidCommonName, Value: s.cn}})
		}
		for _, o := range s.org {
			rdns = append(rdns, pkix.RelativeDistinguishedNameSET{{Type: oidOrganization, Value: o}})
		}
		for _, atv := range s.extraNames {
			rdns = append(rdns, pkix.RelativeDistinguishedNameSET{atv})
		}
		raw, err := asn1.Marshal(rdns)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.RawSubject = raw
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, s.key)
	if err != nil {
		t.Fatal(err)
	}
	if s.attributes != nil {
		der = resign(t, der, s.key, func(tbs *testTBS) { tbs.RawAttributes = s.attributes })
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
		ObjectMeta: metav1.ObjectMeta{Name: "n1", ResourceVersion: "1234"},
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

// authorizerFunc adapts a function to Authorizer.
type authorizerFunc func(ctx context.Context, r Requester, subresource string) (bool, error)

func (f authorizerFunc) Authorize(ctx context.Context, r Requester, subresource string) (bool, error) {
	return f(ctx, r, subresource)
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

// testTBS is a CertificationRequestInfo to rewrite.
type testTBS struct {
	Version       int
	Subject       asn1.RawValue
	PublicKey     asn1.RawValue
	RawAttributes []asn1.RawValue `asn1:"tag:0"`
}

// resign rewrites the CertificationRequestInfo of a DER request with edit
// and signs it again with key (nil: keep the old signature), with the
// algorithm crypto/x509 chose.
func resign(t testing.TB, der []byte, key crypto.Signer, edit func(*testTBS)) []byte {
	t.Helper()
	var outer struct {
		TBS asn1.RawValue
		Alg pkix.AlgorithmIdentifier
		Sig asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		t.Fatal(err)
	}
	var tbs testTBS
	if _, err := asn1.Unmarshal(outer.TBS.FullBytes, &tbs); err != nil {
		t.Fatal(err)
	}
	edit(&tbs)
	raw, err := asn1.Marshal(tbs)
	if err != nil {
		t.Fatal(err)
	}
	outer.TBS = asn1.RawValue{FullBytes: raw}
	if key != nil {
		var sig []byte
		switch k := key.(type) {
		case ed25519.PrivateKey:
			sig, err = k.Sign(rand.Reader, raw, crypto.Hash(0))
		case *ecdsa.PrivateKey:
			if k.Curve == elliptic.P384() {
				h := sha512.Sum384(raw)
				sig, err = k.Sign(rand.Reader, h[:], crypto.SHA384)
			} else {
				h := sha256.Sum256(raw)
				sig, err = k.Sign(rand.Reader, h[:], crypto.SHA256)
			}
		default:
			h := sha256.Sum256(raw)
			sig, err = key.Sign(rand.Reader, h[:], crypto.SHA256)
		}
		if err != nil {
			t.Fatal(err)
		}
		outer.Sig = asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}
	}
	out, err := asn1.Marshal(outer)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// attribute encodes a PKCS #10 attribute with the given values.
func attribute(t testing.TB, id asn1.ObjectIdentifier, values ...any) asn1.RawValue {
	t.Helper()
	raw := make([]asn1.RawValue, len(values))
	for i, v := range values {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		raw[i] = asn1.RawValue{FullBytes: b}
	}
	b, err := asn1.Marshal(struct {
		ID     asn1.ObjectIdentifier
		Values []asn1.RawValue `asn1:"set"`
	}{id, raw})
	if err != nil {
		t.Fatal(err)
	}
	return asn1.RawValue{FullBytes: b}
}

// mustMarshal is asn1.Marshal for test values.
func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeCluster is a ClusterView from fixed data.
type fakeCluster struct {
	serviceCIDRs []netip.Prefix
	apiServers   []netip.Addr
	nodes        map[string][]string // node name → canonical addresses
}

func (f *fakeCluster) ServiceCIDRs() []netip.Prefix     { return f.serviceCIDRs }
func (f *fakeCluster) APIServerAddresses() []netip.Addr { return f.apiServers }

// ReservedBy: nothing more reserved, and known (see reservedCluster in secure_test.go).
func (f *fakeCluster) ReservedBy(string) (string, bool) { return "", true }
func (f *fakeCluster) NodesWithAddress(addr string) []string {
	var names []string
	for name, addrs := range f.nodes {
		if slices.Contains(addrs, addr) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// testCluster has the usual kubeadm service range, the API server's
// addresses, node n1 with its addresses and node n2 with its own.
func testCluster() *fakeCluster {
	return &fakeCluster{
		serviceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")},
		apiServers:   []netip.Addr{netip.MustParseAddr("10.96.0.1"), netip.MustParseAddr("192.168.1.10")},
		nodes: map[string][]string{
			"n1": {"n1", "n1.example.internal", "10.0.0.1", "fd00::1"},
			"n2": {"n2", "n2.example.internal", "10.0.0.2"},
		},
	}
}

// lease is node name's kubelet Lease, renewed at renew.
func lease(name string, renew time.Time) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-node-lease"},
		Spec:       coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: renew}},
	}
}

// withHeartbeat returns node with a Ready condition last heard at t.
func withHeartbeat(node *corev1.Node, t time.Time) *corev1.Node {
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.NewTime(t)}}
	return node
}

// servingScope is the operator scope the serving tests run with.
var servingScope = Options{
	AllowedDNSRegex: `[a-z0-9-]+(\.example\.internal)?`,
	AllowedIPs:      []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")},
}

// specBuilder returns a function that builds base's spec for a key of the
// given kind, then applies f (when not nil) to it.
func specBuilder(t testing.TB, base func(crypto.Signer) csrSpec, f func(*csrSpec)) func(string) csrSpec {
	return func(kind string) csrSpec {
		s := base(testKey(t, kind))
		if f != nil {
			f(&s)
		}
		return s
	}
}
