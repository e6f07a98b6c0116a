package approval

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/tlsboot/tlsboot/csr"
)

var (
	weakKeysOnce sync.Once
	weakKeys     map[string]crypto.Signer // keys the policy refuses, or P-384 which it accepts
)

func otherKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	weakKeysOnce.Do(func() {
		weakKeys = map[string]crypto.Signer{}
		rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			panic(err)
		}
		weakKeys["rsa-1024"] = rsaKey
		for name, curve := range map[string]elliptic.Curve{"p224": elliptic.P224(), "p384": elliptic.P384(), "p521": elliptic.P521()} {
			k, err := ecdsa.GenerateKey(curve, rand.Reader)
			if err != nil {
				panic(err)
			}
			weakKeys[name] = k
		}
	})
	return weakKeys[kind]
}

// specFor is a well-formed CSR of either signer with key, that the policy
// approves with the inputs of requestCase.
func specFor(signer string, key crypto.Signer) csrSpec {
	if signer == certificatesv1.KubeletServingSignerName {
		return servingSpec(key)
	}
	return clientSpec(key)
}

var bothSigners = []string{certificatesv1.KubeAPIServerClientKubeletSignerName, certificatesv1.KubeletServingSignerName}

// requestCase is a change to a well-formed CSR of either signer, and the
// decision it must get. Before the secure-by-default checks, every deny
// case here was approved.
type requestCase struct {
	name    string
	mod     func(t *testing.T, s *csrSpec)
	dropped int // Input.DroppedRequestBytes
	verdict Verdict
	reason  string
}

func ext(t testing.TB, id asn1.ObjectIdentifier, critical bool, value any) pkix.Extension {
	return pkix.Extension{Id: id, Critical: critical, Value: mustMarshal(t, value)}
}

type basicConstraints struct {
	IsCA       bool `asn1:"optional"`
	MaxPathLen int  `asn1:"optional,default:-1"`
}

func keyUsageBits(bits ...int) asn1.BitString {
	b := make([]byte, 2)
	for _, i := range bits {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return asn1.BitString{Bytes: b, BitLength: 9}
}

// withKey swaps the key (and the usages the kubelet asks for with it).
func withKey(kind string) func(t *testing.T, s *csrSpec) {
	return func(t *testing.T, s *csrSpec) {
		auth := certificatesv1.UsageClientAuth
		if s.signer == certificatesv1.KubeletServingSignerName {
			auth = certificatesv1.UsageServerAuth
		}
		s.key = otherKey(t, kind)
		s.usages = usagesFor(s.key, auth)
	}
}

// withSPKI replaces the request's public key by spki, keeping a signature
// that no longer verifies: the key check must refuse it first.
func withSPKI(spki func(t *testing.T) []byte) func(t *testing.T, s *csrSpec) {
	return func(t *testing.T, s *csrSpec) {
		der := s.buildDER(t)
		der = resign(t, der, nil, func(tbs *testTBS) { tbs.PublicKey = asn1.RawValue{FullBytes: spki(t)} })
		s.rawRequest = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}
}

func dsaSPKI(t *testing.T) []byte {
	params := mustMarshal(t, struct{ P, Q, G *big.Int }{big.NewInt(23), big.NewInt(11), big.NewInt(2)})
	y := mustMarshal(t, big.NewInt(4))
	return mustMarshal(t, struct {
		Alg pkix.AlgorithmIdentifier
		Key asn1.BitString
	}{pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1}, Parameters: asn1.RawValue{FullBytes: params}},
		asn1.BitString{Bytes: y, BitLength: 8 * len(y)}})
}

func hugeRSASPKI(t *testing.T) []byte {
	n, err := rand.Prime(rand.Reader, 64) // any odd number will do: it is never used
	if err != nil {
		t.Fatal(err)
	}
	n.Lsh(n, 9000).SetBit(n, 0, 1)
	key := mustMarshal(t, struct {
		N *big.Int
		E int
	}{n, 65537})
	return mustMarshal(t, struct {
		Alg pkix.AlgorithmIdentifier
		Key asn1.BitString
	}{pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}, Parameters: asn1.NullRawValue},
		asn1.BitString{Bytes: key, BitLength: 8 * len(key)}})
}

// withAttributes replaces the request's attributes (and signs it again).
func withAttributes(attrs func(t *testing.T, s *csrSpec) []asn1.RawValue) func(t *testing.T, s *csrSpec) {
	return func(t *testing.T, s *csrSpec) { s.attributes = attrs(t, s) }
}

// sanExtension is the SAN extension crypto/x509 would write for s.
func sanExtensions(t *testing.T, s *csrSpec) []pkix.Extension {
	der := s.buildDER(t)
	req, err := parseUnverified(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	return req.Extensions
}

func TestRequestChecks(t *testing.T) {
	oidChallengePassword := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}
	oidMSExtReq := asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 14}
	oidNameConstraints := asn1.ObjectIdentifier{2, 5, 29, 30}
	oidUnknown := asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}
	caTrue := func(t *testing.T, s *csrSpec) {
		s.extraExts = append(s.extraExts, ext(t, oidBasicConstraints, true, basicConstraints{IsCA: true, MaxPathLen: -1}))
	}
	cases := []requestCase{
		{name: "well-formed", mod: func(*testing.T, *csrSpec) {}, verdict: Approve},
		// Size.
		{name: "request over the limit", mod: func(_ *testing.T, s *csrSpec) { s.rawRequest = make([]byte, MaxRequestBytes+1) },
			verdict: Deny, reason: ReasonRequestTooLarge},
		{name: "request dropped by the cache for its size", mod: func(_ *testing.T, s *csrSpec) { s.rawRequest = []byte{} },
			dropped: 420 << 10, verdict: Deny, reason: ReasonRequestTooLarge},
		{name: "data after the PEM block", mod: func(t *testing.T, s *csrSpec) {
			s.rawRequest = append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: s.buildDER(t)}), "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"...)
		}, verdict: Deny, reason: ReasonInvalidRequest},
		// Keys.
		{name: "RSA-1024 key", mod: withKey("rsa-1024"), verdict: Deny, reason: ReasonKeyNotAllowed},
		{name: "ECDSA P-224 key", mod: withKey("p224"), verdict: Deny, reason: ReasonKeyNotAllowed},
		{name: "ECDSA P-521 key", mod: withKey("p521"), verdict: Deny, reason: ReasonKeyNotAllowed},
		{name: "ECDSA P-384 key", mod: withKey("p384"), verdict: Approve},
		{name: "DSA key", mod: withSPKI(dsaSPKI), verdict: Deny, reason: ReasonKeyNotAllowed},
		{name: "RSA key over 8192 bits, refused before its signature is checked", mod: withSPKI(hugeRSASPKI), verdict: Deny, reason: ReasonKeyNotAllowed},
		// Extensions.
		{name: "basicConstraints CA:TRUE, critical", mod: caTrue, verdict: Deny, reason: ReasonExtensionNotAllowed},
		{name: "basicConstraints CA:TRUE, not critical", mod: func(t *testing.T, s *csrSpec) {
			s.extraExts = []pkix.Extension{ext(t, oidBasicConstraints, false, basicConstraints{IsCA: true, MaxPathLen: -1})}
		}, verdict: Deny, reason: ReasonExtensionNotAllowed},
		{name: "basicConstraints with a path length", mod: func(t *testing.T, s *csrSpec) {
			s.extraExts = []pkix.Extension{ext(t, oidBasicConstraints, true, basicConstraints{MaxPathLen: 0})}
		}, verdict: Deny, reason: ReasonExtensionNotAllowed},
		{name: "basicConstraints CA:FALSE", mod: func(t *testing.T, s *csrSpec) {
			s.extraExts = []pkix.Extension{ext(t, oidBasicConstraints, true, basicConstraints{MaxPathLen: -1})}
		}, verdict: Approve},
		{name: "keyUsage keyCertSign", mod: func(t *testing.T, s *csrSpec) {
			s.extraExts = []pkix.Extension{ext(t, oidKeyUsage, true, keyUsageBits(0, keyUsageBitCertSign))}
		}, verdict: Deny, reason: ReasonExtensionNotAllowed},
		{name: "keyUsage cRLSign", mod: func(t *testing.T, s *csrSpec) {
			s.extraExts = []pkix.Extension{ext(t, oidKeyUsage, false, keyUsageBits(keyUsageBitCRLSign))}
		}, verdict: Deny, reason: ReasonExtensionNotAllowed},
		{name: "keyUsage digitalSignature and keyEncipherment", mod: func(t *testing.T, s *csrSpec) {
			s.extraExts = []pkix.Extension{ext(t, oidKeyUsage, true, keyUsageBits(0, 2))}
		}, verdict: Approve},
		{name: "extKeyUsage codeSigning", mod: func(t *testing.T, s *csrSpec) {
			s.extraExts = []pkix.Extension{ext(t, oidExtKeyUsage, false, []asn1.ObjectIdentifier{oidClientAuth, {1, 3, 6, 1, 5, 5, 7, 3, 3}})}
		}, verdict: Deny, reason: ReasonExtensionNotAllowed},
		{name: "extKeyUsage serverAuth and clientAuth", mod: func(t *testing.T, s *csrSpec) {
			s.extraExts = []pkix.Extension{ext(t, oidExtKeyUsage, false, []asn1.ObjectIdentifier{oidServerAuth, oidClientAuth})}
		}, verdict: Approve},
		{name: "subjectKeyIdentifier", mod: func(t *testing.T, s *csrSpec) {
			s.extraExts = []pkix.Extension{ext(t, oidSubjectKeyID, false, []byte{1, 2, 3, 4})}
		}, verdict: Approve},
		{name: "nameConstraints", mod: func(t *testing.T, s *csrSpec) {
			s.extraExts = []pkix.Extension{{Id: oidNameConstraints, Critical: true, Value: []byte{0x30, 0}}}
		}, verdict: Deny, reason: ReasonExtensionNotAllowed},
		{name: "unknown critical extension", mod: func(t *testing.T, s *csrSpec) {
			s.extraExts = []pkix.Extension{{Id: oidUnknown, Critical: true, Value: []byte{5, 0}}}
		}, verdict: Deny, reason: ReasonExtensionNotAllowed},
		{name: "unknown extension, not critical", mod: func(t *testing.T, s *csrSpec) {
			s.extraExts = []pkix.Extension{{Id: oidUnknown, Value: []byte{5, 0}}}
		}, verdict: Deny, reason: ReasonExtensionNotAllowed},
		{name: "SAN of a type crypto/x509 skips (otherName)", mod: func(t *testing.T, s *csrSpec) {
			other := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(mustMarshal(t, oidUnknown),
				mustMarshal(t, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: mustMarshal(t, "admin")})...)}
			names := []asn1.RawValue{other}
			for _, n := range s.dns {
				names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: generalNameDNS, Bytes: []byte(n)})
			}
			s.dns, s.ips = nil, nil
			s.extraExts = []pkix.Extension{{Id: oidSubjectAltName, Value: mustMarshal(t, names)}}
		}, verdict: Deny, reason: ReasonExtensionNotAllowed},
		// Attributes.
		{name: "challengePassword attribute", mod: withAttributes(func(t *testing.T, s *csrSpec) []asn1.RawValue {
			return []asn1.RawValue{attribute(t, oidChallengePassword, "secret")}
		}), verdict: Deny, reason: ReasonAttributeNotAllowed},
		{name: "Microsoft extension request smuggling a CA", mod: withAttributes(func(t *testing.T, s *csrSpec) []asn1.RawValue {
			return []asn1.RawValue{attribute(t, oidMSExtReq, []pkix.Extension{ext(t, oidBasicConstraints, true, basicConstraints{IsCA: true, MaxPathLen: -1})})}
		}), verdict: Deny, reason: ReasonAttributeNotAllowed},
		{name: "second value of the extension request smuggling a CA", mod: withAttributes(func(t *testing.T, s *csrSpec) []asn1.RawValue {
			return []asn1.RawValue{attribute(t, oidExtensionRequest, sanExtensions(t, s), []pkix.Extension{ext(t, oidBasicConstraints, true, basicConstraints{IsCA: true, MaxPathLen: -1})})}
		}), verdict: Deny, reason: ReasonAttributeNotAllowed},
		{name: "second extension request", mod: withAttributes(func(t *testing.T, s *csrSpec) []asn1.RawValue {
			return []asn1.RawValue{attribute(t, oidExtensionRequest, sanExtensions(t, s)),
				attribute(t, oidExtensionRequest, []pkix.Extension{ext(t, oidSubjectKeyID, false, []byte{1})})}
		}), verdict: Deny, reason: ReasonAttributeNotAllowed},
		{name: "attribute that does not parse", mod: withAttributes(func(t *testing.T, s *csrSpec) []asn1.RawValue {
			return []asn1.RawValue{attribute(t, oidExtensionRequest, sanExtensions(t, s)), {FullBytes: mustMarshal(t, 7)}}
		}), verdict: Deny, reason: ReasonAttributeNotAllowed},
		{name: "the extension request rewritten as it was", mod: withAttributes(func(t *testing.T, s *csrSpec) []asn1.RawValue {
			if exts := sanExtensions(t, s); len(exts) > 0 {
				return []asn1.RawValue{attribute(t, oidExtensionRequest, exts)}
			}
			return []asn1.RawValue{}
		}), verdict: Approve},
		// Subject.
		{name: "two common names (crypto/x509 keeps the last)", mod: func(_ *testing.T, s *csrSpec) {
			s.extraNames = []pkix.AttributeTypeAndValue{{Type: oidCommonName, Value: s.cn}}
			s.cn = "admin"
		}, verdict: Deny, reason: ReasonBadCommonName},
		{name: "two organizations", mod: func(_ *testing.T, s *csrSpec) {
			s.extraNames = []pkix.AttributeTypeAndValue{{Type: oidOrganization, Value: "system:nodes"}}
		}, verdict: Deny, reason: ReasonBadOrganization},
		{name: "no common name", mod: func(_ *testing.T, s *csrSpec) { s.cn = "" }, verdict: Deny, reason: ReasonBadCommonName},
		// SAN count (client CSRs may have none, but the count is checked first).
		{name: "more than MaxSANs SANs", mod: func(_ *testing.T, s *csrSpec) {
			for i := range MaxSANs + 1 {
				s.dns = append(s.dns, fmt.Sprintf("n%d.example.internal", i))
			}
		}, verdict: Deny, reason: ReasonTooManySANs},
	}
	for _, signer := range bothSigners {
		for _, tc := range cases {
			for _, kind := range keyKinds {
				t.Run(signer+"/"+tc.name+"/"+kind, func(t *testing.T) {
					s := specFor(signer, testKey(t, kind))
					tc.mod(t, &s)
					authz := kubeadmAuthz()
					d := decideIn(t, s, Input{Node: nodeN1(), Cluster: testCluster(), DroppedRequestBytes: tc.dropped, Now: t0}, servingScope, authz)
					if d.Verdict != tc.verdict || (tc.reason != "" && d.Reason != tc.reason) {
						t.Errorf("got %v %s (%s), want %v %s", d.Verdict, d.Reason, d.Message, tc.verdict, tc.reason)
					}
					if len(d.Message) > MaxMessageBytes {
						t.Errorf("message of %d bytes", len(d.Message))
					}
					assertNamesNoFlag(t, d)
					if tc.verdict == Deny && len(authz.asked) > 0 {
						t.Errorf("asked %q before denying", authz.asked)
					}
				})
			}
		}
	}
}

// buildDER is the DER request s.build would put in spec.request.
func (s csrSpec) buildDER(t testing.TB) []byte {
	t.Helper()
	s.rawRequest = nil // s is a copy
	block, _ := pem.Decode(s.build(t).Spec.Request)
	return block.Bytes
}

func TestRequestSizeMessageNamesSize(t *testing.T) {
	s := clientSpec(testKey(t, "ecdsa"))
	s.rawRequest = []byte{}
	d := decideIn(t, s, Input{DroppedRequestBytes: 430080, Now: t0}, Options{}, kubeadmAuthz())
	if d.Reason != ReasonRequestTooLarge || !strings.Contains(d.Message, "430080") {
		t.Errorf("got %s %q, want %s naming 430080 bytes", d.Reason, d.Message, ReasonRequestTooLarge)
	}
	if _, err := parseRequest(make([]byte, MaxRequestBytes+1)); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("ParseRequest of an oversized request: %v, want a size error", err)
	}
	big := bigSpec(t, certificatesv1.KubeAPIServerClientKubeletSignerName).build(t)
	if name := NodeName(big); name != "" {
		t.Errorf("NodeName of a %d-byte request = %q, want it unread", len(big.Spec.Request), name)
	}
}

func TestNodeNameValid(t *testing.T) {
	for _, name := range []string{"WORKER-1", "a..b", "x_y", "-a", "a-", "a.", strings.Repeat("a", 254), "n1 ", "n1/x"} {
		for _, signer := range bothSigners {
			t.Run(signer+"/"+name, func(t *testing.T) {
				s := specFor(signer, testKey(t, "ecdsa"))
				s.cn = csr.NodeCommonPrefix + name
				if signer == certificatesv1.KubeletServingSignerName {
					s.requester = nodeUser(name)
				}
				node := nodeN1()
				node.Name = name
				d := decideIn(t, s, Input{Node: node, Now: t0}, servingScope, kubeadmAuthz())
				if d.Verdict != Deny || d.Reason != ReasonInvalidNodeName {
					t.Errorf("got %v %s (%s), want deny %s", d.Verdict, d.Reason, d.Message, ReasonInvalidNodeName)
				}
			})
		}
	}
}

func TestLiveNode(t *testing.T) {
	client := func(f func(s *csrSpec)) func(string) csrSpec { return specBuilder(t, clientSpec, f) }
	self := client(func(s *csrSpec) { s.requester = nodeUser("n1") })
	node := func(heartbeat time.Duration) *corev1.Node { return withHeartbeat(nodeN1(), t0.Add(-heartbeat)) }
	noHeartbeat := nodeN1()
	other := withHeartbeat(nodeN1(), t0)
	other.Name = "n2"
	cases := []ruleCase{
		{name: "bootstrap for a node whose Lease is fresh: denied, no review", spec: client(nil), node: node(time.Hour), lease: lease("n1", t0.Add(-time.Minute)),
			verdict: Deny, reason: ReasonNodeAlive, asked: []string{}, contains: []string{`Node "n1" is alive`, "2030-01-02T03:03:05Z", "delete the Node object"}},
		{name: "left for a human by option", spec: client(nil), node: node(time.Hour), lease: lease("n1", t0.Add(-time.Minute)), opts: Options{LeaveLiveNode: true},
			verdict: Ignore, reason: ReasonNodeAlive, notify: true, asked: []string{}},
		{name: "Lease renewed in the future (clock skew) is alive", spec: client(nil), node: node(time.Hour), lease: lease("n1", t0.Add(time.Hour)),
			verdict: Deny, reason: ReasonNodeAlive},
		{name: "Lease renewed exactly the grace ago is alive", spec: client(nil), node: node(time.Hour), lease: lease("n1", t0.Add(-DefaultNodeAliveGrace)),
			verdict: Deny, reason: ReasonNodeAlive},
		{name: "stale Lease (powered off): approved after review", spec: client(nil), node: node(0), lease: lease("n1", t0.Add(-DefaultNodeAliveGrace-time.Second)),
			verdict: Approve, reason: ReasonAutoApproved, asked: []string{"system:bootstrap:abcdef/nodeclient"}},
		{name: "shorter grace by option", spec: client(nil), node: node(time.Hour), lease: lease("n1", t0.Add(-time.Minute)), opts: Options{NodeAliveGrace: 30 * time.Second},
			verdict: Approve},
		{name: "no Lease, fresh Ready heartbeat", spec: client(nil), node: node(time.Minute), verdict: Deny, reason: ReasonNodeAlive, contains: []string{"Ready condition"}},
		{name: "no Lease, old Ready heartbeat", spec: client(nil), node: node(time.Hour), verdict: Approve},
		{name: "Lease of another node is not this node's", spec: client(nil), node: node(time.Hour), lease: lease("n2", t0), verdict: Approve},
		{name: "Node that never reported", spec: client(nil), node: noHeartbeat, verdict: Approve},
		{name: "no Node", spec: client(nil), lease: lease("n1", t0), verdict: Approve},
		{name: "another Node passed", spec: client(nil), node: other, verdict: Approve},
		{name: "live node renewing itself", spec: self, node: node(0), lease: lease("n1", t0), verdict: Approve, rule: "kubelet-client-self"},
		{name: "static checks first: a bad request for a live node is denied for what it is", spec: client(func(s *csrSpec) { s.org = []string{"system:masters"} }),
			node: node(0), lease: lease("n1", t0), verdict: Deny, reason: ReasonBadOrganization},
	}
	runRuleCases(t, cases)
}

func nodeWith(addrs ...string) *corev1.Node {
	n := nodeN1()
	for _, a := range addrs {
		typ := corev1.NodeHostName
		if _, err := netip.ParseAddr(a); err == nil {
			typ = corev1.NodeInternalIP
		}
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: typ, Address: a})
	}
	return n
}

func TestServingSecure(t *testing.T) {
	serving := func(f func(s *csrSpec)) func(string) csrSpec { return specBuilder(t, servingSpec, f) }
	ipOnly := func(ip string) func(string) csrSpec {
		return serving(func(s *csrSpec) { s.dns, s.ips = nil, []net.IP{net.ParseIP(ip)} })
	}
	dnsOnly := func(name string) func(string) csrSpec {
		return serving(func(s *csrSpec) { s.dns, s.ips = []string{name}, nil })
	}
	wide := Options{AllowedDNSRegex: `.*`, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}}
	wideSvc := wide
	wideSvc.ServiceCIDRs = []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}
	mappedSvc := wide
	mappedSvc.ServiceCIDRs = []netip.Prefix{netip.MustParsePrefix("::ffff:10.96.0.0/108")}
	otherDomain := wide
	otherDomain.ClusterDomain = "Corp.Example."
	ipsOnly := Options{AllowedIPs: servingScope.AllowedIPs}
	dnsScopeOnly := Options{AllowedDNSRegex: servingScope.AllowedDNSRegex}
	shared := testCluster()
	shared.nodes["n3"] = []string{"10.0.0.1"}
	// The control-plane endpoint of the review (issue 24): a load-balancer
	// name and VIP inside the node scope, as the API server's certificate,
	// cluster-info, a Service and the operator reserve them.
	endpoint := reservedCluster(map[string]string{
		"api.example.internal":  ReservedByServingCertificate,
		"10.0.0.100":            ReservedByServingCertificate,
		"fd00::100":             ReservedByServingCertificate,
		"join.example.internal": ReservedByClusterInfo,
		"10.0.8.8":              "Service default/lb externalIPs",
		"lb.example.internal":   "Service default/lb load-balancer ingress",
	})
	unread := reservedCluster(nil)
	unread.unknown = true
	operator := servingScope
	operator.ReservedCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.9.0/24"), netip.MustParsePrefix("::ffff:10.0.10.0/120")}
	operator.ReservedDNS = []string{"VIP.Example.Internal.", "example.internal"}
	cases := []ruleCase{
		// The control-plane endpoint, inside the scope and listed by the node.
		{name: "API server certificate's DNS name", spec: dnsOnly("api.example.internal"), node: nodeWith("api.example.internal"), cluster: endpoint, opts: servingScope,
			verdict: Deny, reason: ReasonSANReserved, contains: []string{`"api.example.internal"`, ReservedByServingCertificate}},
		{name: "API server certificate's DNS name, upper case, trailing dot", spec: dnsOnly("API.Example.Internal."), node: nodeWith("api.example.internal"), cluster: endpoint, opts: servingScope,
			verdict: Deny, reason: ReasonSANReserved},
		{name: "API server certificate's IP", spec: ipOnly("10.0.0.100"), node: nodeWith("10.0.0.100"), cluster: endpoint, opts: servingScope,
			verdict: Deny, reason: ReasonSANReserved, contains: []string{ReservedByServingCertificate}},
		{name: "API server certificate's IP, IPv4-mapped", spec: ipOnly("::ffff:10.0.0.100"), node: nodeWith("10.0.0.100"), cluster: endpoint, opts: servingScope,
			verdict: Deny, reason: ReasonSANReserved},
		{name: "API server certificate's IPv6", spec: ipOnly("fd00::100"), node: nodeWith("fd00::100"), cluster: endpoint, opts: servingScope, verdict: Deny, reason: ReasonSANReserved},
		{name: "cluster-info server", spec: dnsOnly("join.example.internal"), node: nodeWith("join.example.internal"), cluster: endpoint, opts: servingScope,
			verdict: Deny, reason: ReasonSANReserved, contains: []string{"kube-public/cluster-info"}},
		{name: "Service external IP", spec: ipOnly("10.0.8.8"), node: nodeWith("10.0.8.8"), cluster: endpoint, opts: servingScope,
			verdict: Deny, reason: ReasonSANReserved, contains: []string{"Service default/lb externalIPs"}},
		{name: "Service load-balancer hostname", spec: dnsOnly("lb.example.internal"), node: nodeWith("lb.example.internal"), cluster: endpoint, opts: servingScope,
			verdict: Deny, reason: ReasonSANReserved, contains: []string{"load-balancer ingress"}},
		{name: "reserved among the node's own SANs", spec: serving(func(s *csrSpec) { s.ips = append(s.ips, net.ParseIP("10.0.0.100")) }), node: nodeWith("10.0.0.100"),
			cluster: endpoint, opts: servingScope, verdict: Deny, reason: ReasonSANReserved},
		{name: "the node's own addresses next to a reserved endpoint", spec: serving(nil), node: nodeN1(), cluster: endpoint, opts: servingScope, verdict: Approve},
		{name: "operator's reserved range", spec: ipOnly("10.0.9.7"), node: nodeWith("10.0.9.7"), opts: operator,
			verdict: Deny, reason: ReasonSANReserved, contains: []string{reservedByOptions}},
		{name: "operator's IPv4-mapped reserved range", spec: ipOnly("10.0.10.7"), node: nodeWith("10.0.10.7"), opts: operator, verdict: Deny, reason: ReasonSANReserved},
		{name: "operator's reserved name, canonicalised", spec: dnsOnly("vip.example.internal"), node: nodeWith("vip.example.internal"), opts: operator,
			verdict: Deny, reason: ReasonSANReserved, contains: []string{reservedByOptions}},
		{name: "operator's reserved name is exact: a name under it is not reserved", spec: dnsOnly("a.example.internal"), node: nodeWith("a.example.internal"), opts: operator,
			verdict: Approve},
		{name: "operator's reservations leave the node's own addresses", spec: serving(nil), node: nodeN1(), opts: operator, verdict: Approve},
		// Fail closed: until the API server's certificate is read, no approval.
		{name: "API server certificate not read yet: no opinion", spec: serving(nil), node: nodeN1(), cluster: unread, opts: servingScope,
			verdict: Wait, reason: ReasonAPIServerNamesUnknown},
		{name: "API server certificate not read yet: no scope waits too", spec: serving(nil), node: nodeN1(), cluster: unread, opts: Options{},
			verdict: Wait, reason: ReasonAPIServerNamesUnknown},
		{name: "API server certificate not read yet: statically reserved still denied", spec: ipOnly("127.0.0.1"), node: nodeWith("127.0.0.1"), cluster: unread, opts: wide,
			verdict: Deny, reason: ReasonSANReserved},
		{name: "API server certificate not read yet: operator's range still denied", spec: ipOnly("10.0.9.7"), node: nodeWith("10.0.9.7"), cluster: unread, opts: operator,
			verdict: Deny, reason: ReasonSANReserved},
		// Scope.
		{name: "no scope: left for a human, with an Event", spec: serving(nil), node: nodeN1(), opts: Options{}, verdict: Ignore, reason: ReasonNoServingScope, notify: true},
		{name: "only IPs in scope: a DNS name is denied", spec: serving(nil), node: nodeN1(), opts: ipsOnly, verdict: Deny, reason: ReasonSANForbiddenByPolicy},
		{name: "only IPs in scope: IPs approved", spec: serving(func(s *csrSpec) { s.dns = nil }), node: nodeN1(), opts: ipsOnly, verdict: Approve},
		{name: "only DNS in scope: an IP is denied", spec: serving(nil), node: nodeN1(), opts: dnsScopeOnly, verdict: Deny, reason: ReasonSANForbiddenByPolicy},
		{name: "only DNS in scope: DNS names approved", spec: serving(func(s *csrSpec) { s.ips = nil }), node: nodeN1(), opts: dnsScopeOnly, verdict: Approve},
		{name: "the DNS pattern never matches a substring", spec: dnsOnly("n1.example.internal.evil.com"), node: nodeWith("n1.example.internal.evil.com"),
			opts: Options{AllowedDNSRegex: `n1\.example\.internal`}, verdict: Deny, reason: ReasonSANForbiddenByPolicy},
		// Reserved IPs, even listed by the node and inside the widest scope.
		{name: "loopback", spec: ipOnly("127.0.0.1"), node: nodeWith("127.0.0.1"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "IPv4-mapped loopback", spec: ipOnly("::ffff:127.0.0.1"), node: nodeWith("127.0.0.1"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "IPv6 loopback", spec: ipOnly("::1"), node: nodeWith("::1"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "unspecified", spec: ipOnly("0.0.0.0"), node: nodeWith("0.0.0.0"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "IPv6 unspecified", spec: ipOnly("::"), node: nodeWith("::"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "link-local (cloud metadata)", spec: ipOnly("169.254.169.254"), node: nodeWith("169.254.169.254"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "IPv6 link-local", spec: ipOnly("fe80::1"), node: nodeWith("fe80::1"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "link-local multicast", spec: ipOnly("224.0.0.251"), node: nodeWith("224.0.0.251"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "IPv6 link-local multicast", spec: ipOnly("ff02::1"), node: nodeWith("ff02::1"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "multicast", spec: ipOnly("239.1.2.3"), node: nodeWith("239.1.2.3"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "broadcast", spec: ipOnly("255.255.255.255"), node: nodeWith("255.255.255.255"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "service VIP (service CIDR by option)", spec: ipOnly("10.96.0.10"), node: nodeWith("10.96.0.10"), opts: wideSvc, verdict: Deny, reason: ReasonSANReserved},
		{name: "IPv4-mapped service VIP (service CIDR by option)", spec: ipOnly("::ffff:10.96.0.10"), node: nodeWith("10.96.0.10"), opts: wideSvc, verdict: Deny, reason: ReasonSANReserved},
		{name: "service VIP (IPv4-mapped service CIDR by option)", spec: ipOnly("10.96.0.10"), node: nodeWith("10.96.0.10"), opts: mappedSvc, verdict: Deny, reason: ReasonSANReserved},
		{name: "service VIP (ServiceCIDR object)", spec: ipOnly("10.100.0.5"), node: nodeWith("10.100.0.5"), cluster: testCluster(), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "API server ClusterIP, IPv4-mapped", spec: ipOnly("::ffff:10.96.0.1"), node: nodeWith("10.96.0.1"), cluster: testCluster(), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "API server endpoint", spec: ipOnly("192.168.1.10"), node: nodeWith("192.168.1.10"), cluster: testCluster(), opts: wide, verdict: Deny, reason: ReasonSANReserved,
			contains: []string{"API server"}},
		{name: "reserved before Node lookup: no Node, still denied", spec: ipOnly("127.0.0.1"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		// Reserved and malformed DNS names.
		{name: "kubernetes", spec: dnsOnly("kubernetes"), node: nodeWith("kubernetes"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "kubernetes.default", spec: dnsOnly("kubernetes.default"), node: nodeWith("kubernetes.default"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "kubernetes.default.svc", spec: dnsOnly("kubernetes.default.svc"), node: nodeWith("kubernetes.default.svc"), opts: wide, verdict: Deny, reason: ReasonSANReserved,
			contains: []string{`"kubernetes.default.svc"`, ".svc"}},
		{name: "kubernetes.default.svc.cluster.local, upper case, trailing dot", spec: dnsOnly("Kubernetes.Default.SVC.cluster.local."), node: nodeWith("kubernetes.default.svc.cluster.local"),
			opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "foo.bar.svc", spec: dnsOnly("foo.bar.svc"), node: nodeWith("foo.bar.svc"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "svc", spec: dnsOnly("svc"), node: nodeWith("svc"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "under .svc of another cluster domain", spec: dnsOnly("a.b.svc.corp.example"), node: nodeWith("a.b.svc.corp.example"), opts: otherDomain, verdict: Deny, reason: ReasonSANReserved},
		{name: "localhost", spec: dnsOnly("localhost"), node: nodeWith("localhost"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "under localhost", spec: dnsOnly("foo.localhost"), node: nodeWith("foo.localhost"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "IPv4 literal as DNS name", spec: dnsOnly("10.0.0.1"), node: nodeWith("10.0.0.1"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "short IPv4 literal as DNS name", spec: dnsOnly("127.1"), node: nodeWith("127.1"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "hex IPv4 literal as DNS name", spec: dnsOnly("0x7f.1"), node: nodeWith("0x7f.1"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "IPv6 literal as DNS name", spec: dnsOnly("fd00::1"), node: nodeWith("fd00::1"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "empty label", spec: dnsOnly("a..example.internal"), node: nodeWith("a..example.internal"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "underscore", spec: dnsOnly("x_y.example.internal"), node: nodeWith("x_y.example.internal"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "space", spec: dnsOnly("n1 .example.internal"), node: nodeWith("n1 .example.internal"), opts: wide, verdict: Deny, reason: ReasonSANReserved},
		{name: "empty name", spec: dnsOnly(""), node: nodeWith(""), opts: wide, verdict: Deny},
		{name: "upper case and trailing dot of a node's name are fine", spec: dnsOnly("N1.Example.Internal."), node: nodeN1(), opts: servingScope, verdict: Approve},
		// Unique.
		{name: "IP another Node also lists", spec: serving(nil), node: nodeN1(), cluster: shared, opts: servingScope, verdict: Deny, reason: ReasonSANNotUnique,
			contains: []string{`Node "n3"`, `"10.0.0.1"`}},
		{name: "DNS name another Node also lists", spec: serving(func(s *csrSpec) { s.dns = []string{"n2.example.internal"}; s.ips = nil }),
			node: nodeWith("n2.example.internal"), cluster: testCluster(), opts: servingScope, verdict: Deny, reason: ReasonSANNotUnique, contains: []string{`Node "n2"`}},
		{name: "addresses only this Node lists", spec: serving(nil), node: nodeN1(), cluster: testCluster(), opts: servingScope, verdict: Approve},
		// Audit trail.
		{name: "approval records SANs and resourceVersion", spec: serving(nil), node: nodeN1(), cluster: testCluster(), opts: servingScope, verdict: Approve, reason: ReasonAutoApproved,
			contains: []string{`SANs ["n1" "n1.example.internal" "10.0.0.1" "fd00::1"]`, `Node "n1" at resourceVersion 1234`, "rule kubelet-serving"}},
	}
	runRuleCases(t, cases)
}

// TestMessagesNameNoFlags decides a CSR for every reason whose message
// depends on an option, with and without the option: the messages say what
// was wrong in the policy's terms, and never name a command-line flag (the
// command adds that hint, see approver.Options.Hint). runRuleCases checks
// every other message of the rule tables the same way.
func TestMessagesNameNoFlags(t *testing.T) {
	serving := func(f func(s *csrSpec)) func(string) csrSpec { return specBuilder(t, servingSpec, f) }
	client := func(f func(s *csrSpec)) func(string) csrSpec { return specBuilder(t, clientSpec, f) }
	stranger := client(func(s *csrSpec) { s.requester.Username = "system:bootstrap:zzzzzz" })
	alive := withHeartbeat(nodeN1(), t0)
	ipsOnly := Options{AllowedIPs: servingScope.AllowedIPs}
	dnsOnly := Options{AllowedDNSRegex: servingScope.AllowedDNSRegex}
	cases := []ruleCase{
		{name: "no serving scope", spec: serving(nil), node: nodeN1(), verdict: Ignore, reason: ReasonNoServingScope, notify: true},
		{name: "DNS name without a DNS pattern", spec: serving(nil), node: nodeN1(), opts: ipsOnly, verdict: Deny, reason: ReasonSANForbiddenByPolicy},
		{name: "DNS name outside the pattern", spec: serving(nil), node: nodeN1(), opts: Options{AllowedDNSRegex: `x`}, verdict: Deny, reason: ReasonSANForbiddenByPolicy},
		{name: "IP without IP ranges", spec: serving(func(s *csrSpec) { s.dns = nil }), node: nodeN1(), opts: dnsOnly, verdict: Deny, reason: ReasonSANForbiddenByPolicy},
		{name: "IP outside the ranges", spec: serving(nil), node: nodeN1(), opts: Options{AllowedDNSRegex: `.*`, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}},
			verdict: Deny, reason: ReasonSANForbiddenByPolicy},
		{name: "IP in a service CIDR", spec: serving(nil), node: nodeN1(), opts: Options{AllowedDNSRegex: `.*`, AllowedIPs: servingScope.AllowedIPs, ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}},
			verdict: Deny, reason: ReasonSANReserved},
		{name: "name under the cluster domain", spec: serving(func(s *csrSpec) { s.dns = []string{"a.svc.example"} }), node: nodeWith("a.svc.example"),
			opts: Options{AllowedDNSRegex: `.*`, ClusterDomain: "example"}, verdict: Deny, reason: ReasonSANReserved},
		{name: "live node denied", spec: client(nil), node: alive, verdict: Deny, reason: ReasonNodeAlive},
		{name: "live node left for a human", spec: client(nil), node: alive, opts: Options{LeaveLiveNode: true}, verdict: Ignore, reason: ReasonNodeAlive, notify: true},
		{name: "live node with a shorter grace", spec: client(nil), node: withHeartbeat(nodeN1(), t0.Add(-time.Minute)), opts: Options{NodeAliveGrace: 2 * time.Minute},
			verdict: Deny, reason: ReasonNodeAlive},
		{name: "not authorized", spec: stranger, verdict: Wait, reason: ReasonNotAuthorized},
		{name: "pending timeout, left", spec: stranger, opts: Options{PendingTimeout: time.Hour}, now: t0.Add(time.Hour), verdict: Ignore, reason: ReasonPendingTimeout},
		{name: "pending timeout, denied", spec: stranger, opts: Options{PendingTimeout: time.Hour, DenyOnTimeout: true}, now: t0.Add(time.Hour), verdict: Deny, reason: ReasonPendingTimeout},
		{name: "expiration too long", spec: client(func(s *csrSpec) { s.expiration = i32(7200) }), opts: Options{MaxExpiration: time.Hour}, verdict: Deny, reason: ReasonExpirationTooLong},
	}
	runRuleCases(t, cases)
}

// flagLike is what reads as a command-line flag of tlsboot (pflag's long
// form): "--allowed-ip-cidrs", but not the "xn--" of a punycode label.
var flagLike = regexp.MustCompile(`(^|[^a-z0-9])--[a-z][a-z0-9-]*`)

// assertNamesNoFlag fails t if d's message names a command-line flag.
func assertNamesNoFlag(t *testing.T, d Decision) {
	t.Helper()
	if f := flagLike.FindString(d.Message); f != "" || strings.Contains(strings.ToLower(d.Message), "flag") {
		t.Errorf("%v %s: message %q names a flag (%q): flags are the command's hint", d.Verdict, d.Reason, d.Message, f)
	}
}

// reservedClusterView is testCluster with more reserved names and addresses
// (ClusterView.ReservedBy), by canonical form, and whether they are known.
type reservedClusterView struct {
	*fakeCluster
	reserved map[string]string
	unknown  bool
}

func reservedCluster(reserved map[string]string) *reservedClusterView {
	return &reservedClusterView{fakeCluster: testCluster(), reserved: reserved}
}

func (r *reservedClusterView) ReservedBy(addr string) (string, bool) {
	return r.reserved[addr], !r.unknown
}

// The operator's reserved names and ranges are checked at start: an IP
// written as a name, a name that is no DNS name, an invalid prefix.
func TestReservedOptions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   Options
		option string // "" valid
	}{
		{"names and ranges", Options{ReservedDNS: []string{"API.example.internal.", "vip"}, ReservedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.100/32")}}, ""},
		{"an IP as a name", Options{ReservedDNS: []string{"10.0.0.100"}}, "ReservedDNS"},
		{"a short IPv4 literal as a name", Options{ReservedDNS: []string{"127.1"}}, "ReservedDNS"},
		{"a wildcard", Options{ReservedDNS: []string{"*.example.internal"}}, "ReservedDNS"},
		{"an empty name", Options{ReservedDNS: []string{""}}, "ReservedDNS"},
		{"an underscore", Options{ReservedDNS: []string{"x_y.example"}}, "ReservedDNS"},
		{"an invalid prefix", Options{ReservedCIDRs: []netip.Prefix{{}}}, "ReservedCIDRs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			var oe *OptionError
			switch {
			case tc.option == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.option != "" && (!errors.As(err, &oe) || oe.Option != tc.option):
				t.Fatalf("Validate() = %v, want an *OptionError for %s", err, tc.option)
			case err != nil && strings.Contains(err.Error(), "\n"):
				t.Errorf("error %q is more than one line", err)
			}
		})
	}
}
