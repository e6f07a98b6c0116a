package approval

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tlsboot/tlsboot/csr"
)

// FuzzDecide feeds arbitrary CSR content (the request, signer, usages and
// requester are all chosen by whoever creates the CSR), with a Node whose
// Lease is fresh or stale and a cluster view, to a policy with a wide
// serving scope and an authorizer that grants everything. It must never
// panic; every message must be within MaxMessageBytes; and whatever it
// approves must be a well-formed node request from an acceptable requester,
// with an allowed key, no CA extension, within the limits: the checks, not
// RBAC, are what this exercises.
func FuzzDecide(f *testing.F) {
	key := testKey(f, "ecdsa")
	good := clientSpec(key).build(f)
	serving := servingSpec(key).build(f)
	ca := clientSpec(key)
	ca.extraExts = []pkix.Extension{{Id: oidBasicConstraints, Critical: true, Value: mustMarshal(f, basicConstraints{IsCA: true, MaxPathLen: -1})}}
	rsaReq := clientSpec(testKey(f, "rsa")).build(f)
	f.Add(good.Spec.Request, good.Spec.SignerName, "digital signature,client auth", good.Spec.Username, int64(3600), 0)
	f.Add(good.Spec.Request, good.Spec.SignerName, "digital signature,client auth", good.Spec.Username, int64(10), 0)
	f.Add(good.Spec.Request, good.Spec.SignerName, "digital signature,client auth", "system:node:n1", int64(10), 0)
	f.Add(rsaReq.Spec.Request, good.Spec.SignerName, "digital signature,key encipherment,client auth", good.Spec.Username, int64(3600), 0)
	f.Add(ca.build(f).Spec.Request, good.Spec.SignerName, "digital signature,client auth", good.Spec.Username, int64(3600), 0)
	f.Add(serving.Spec.Request, certificatesv1.KubeletServingSignerName, "digital signature,server auth", "system:node:n1", int64(0), 0)
	f.Add(good.Spec.Request, certificatesv1.KubeletServingSignerName, "digital signature,server auth", "system:node:n1", int64(0), 0)
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"), good.Spec.SignerName, "client auth", "x", int64(0), 0)
	f.Add([]byte{}, "", "", "", int64(0), MaxRequestBytes+1)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", ResourceVersion: "7"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}, {Type: corev1.NodeHostName, Address: "n1"},
		{Type: corev1.NodeInternalDNS, Address: "n1.example.internal"}, {Type: corev1.NodeExternalIP, Address: "fd00::1"},
		{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: "kubernetes.default.svc"},
	}}}
	p := widePolicy(f)
	f.Fuzz(func(t *testing.T, request []byte, signer, usages, user string, renewedAgo int64, dropped int) {
		obj := &certificatesv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{Name: "fuzz", CreationTimestamp: metav1.NewTime(t0)},
			Spec: certificatesv1.CertificateSigningRequestSpec{
				Request: request, SignerName: signer, Username: user,
				Groups: []string{"system:nodes", "system:authenticated"},
			},
		}
		for _, u := range strings.Split(usages, ",") {
			obj.Spec.Usages = append(obj.Spec.Usages, certificatesv1.KeyUsage(u))
		}
		renewed := t0.Add(-time.Duration(renewedAgo) * time.Second)
		in := Input{CSR: obj, Node: node, NodeLease: lease("n1", renewed), Cluster: testCluster(), DroppedRequestBytes: dropped, Now: t0}
		d, err := p.Decide(context.Background(), in, grantAll)
		if err != nil {
			return
		}
		if len(d.Message) > MaxMessageBytes {
			t.Fatalf("message of %d bytes", len(d.Message))
		}
		if d.Verdict != Approve {
			return
		}
		if dropped > MaxRequestBytes {
			t.Fatalf("approved a request dropped for its size (%d bytes)", dropped)
		}
		assertApprovable(t, request, signer, user, renewedAgo)
	})
}

// assertApprovable fails t unless an approved request is a well-formed node
// request from an acceptable requester, with an allowed key, no CA
// extension, within the limits, and (serving) no reserved SAN.
func assertApprovable(t *testing.T, request []byte, signer, user string, renewedAgo int64) {
	t.Helper()
	if len(request) > MaxRequestBytes {
		t.Fatalf("approved a request of %d bytes", len(request))
	}
	req, perr := parseRequest(request)
	if perr != nil {
		t.Fatalf("approved a request that does not parse: %v", perr)
	}
	if !strings.HasPrefix(req.Subject.CommonName, "system:node:") || !slices.Equal(req.Subject.Organization, []string{"system:nodes"}) {
		t.Fatalf("approved subject %v", req.Subject)
	}
	cns := 0
	for _, atv := range req.Subject.Names {
		if atv.Type.Equal(oidCommonName) {
			cns++
		}
	}
	if cns != 1 {
		t.Fatalf("approved a subject with %d common names", cns)
	}
	switch k := req.PublicKey.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 || k.N.BitLen() > 8192 {
			t.Fatalf("approved an RSA key of %d bits", k.N.BitLen())
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			t.Fatalf("approved an ECDSA key on %s", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		t.Fatalf("approved a %T key", k)
	}
	for _, e := range req.Extensions {
		if isCAExtension(e) {
			t.Fatalf("approved a CA extension %v", e.Id)
		}
	}
	if n := len(req.DNSNames) + len(req.IPAddresses) + len(req.EmailAddresses) + len(req.URIs); n > MaxSANs {
		t.Fatalf("approved %d SANs", n)
	}
	if len(req.EmailAddresses) > 0 || len(req.URIs) > 0 {
		t.Fatalf("approved email or URI SANs")
	}
	if signer == certificatesv1.KubeletServingSignerName {
		if user != req.Subject.CommonName {
			t.Fatalf("approved a serving request for %s from %s", req.Subject.CommonName, user)
		}
		for _, ip := range req.IPAddresses {
			if ip.IsLoopback() {
				t.Fatalf("approved a loopback address %v", ip)
			}
		}
		for _, name := range req.DNSNames {
			if strings.Contains(strings.ToLower(name), "svc") {
				t.Fatalf("approved a .svc name %q", name)
			}
		}
	} else if user != req.Subject.CommonName && req.Subject.CommonName == "system:node:n1" && renewedAgo <= int64(DefaultNodeAliveGrace/time.Second) {
		t.Fatalf("approved a takeover of live node n1 by %q (Lease renewed %ds ago)", user, renewedAgo)
	}
}

// widePolicy is a policy whose serving scope is every name and address, so
// that only the policy's own checks stand between a fuzzed request and an
// approval.
func widePolicy(f *testing.F) *Policy {
	p, err := New(Options{AllowedDNSRegex: `.*`, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}})
	if err != nil {
		f.Fatal(err)
	}
	return p
}

// grantAll grants every permission: the checks, not RBAC, are what the fuzz
// tests exercise.
var grantAll = authorizerFunc(func(context.Context, Requester, string) (bool, error) { return true, nil })

// isCAExtension reports whether e makes a certificate a CA's: basic
// constraints with CA true, or key usage with certificate or CRL signing.
func isCAExtension(e pkix.Extension) bool {
	switch {
	case e.Id.Equal(oidBasicConstraints):
		var bc basicConstraints
		_, err := asn1.Unmarshal(e.Value, &bc)
		return err != nil || bc.IsCA
	case e.Id.Equal(oidKeyUsage):
		var bits asn1.BitString
		_, err := asn1.Unmarshal(e.Value, &bits)
		return err != nil || bits.At(5) != 0 || bits.At(6) != 0
	}
	return false
}

// FuzzDecideRequest builds well-signed requests from fuzzed parts (subject,
// SANs, one extra extension) so that the checks past the signature are
// reached; the Node lists every SAN the request asks for, so that only the
// policy's own checks stand between the request and an approval.
func FuzzDecideRequest(f *testing.F) {
	f.Add(true, "n1", "system:nodes", "n1,n1.example.internal", []byte{10, 0, 0, 1}, []byte{}, []byte{}, false, int64(0))
	f.Add(true, "n1", "system:nodes", "kubernetes.default.svc,Localhost.", []byte{127, 0, 0, 1, 10, 96, 0, 1}, []byte{}, []byte{}, false, int64(0))
	f.Add(true, "n1", "system:nodes", "", append([]byte(net.IPv4(169, 254, 169, 254).To16()), 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1), []byte{}, []byte{}, false, int64(0))
	f.Add(false, "n1", "system:nodes", "", []byte{}, []byte{}, []byte{}, false, int64(10))
	f.Add(false, "n1", "system:nodes", "", []byte{}, []byte{}, []byte{}, false, int64(3600))
	f.Add(false, "n1", "system:nodes", "", []byte{}, []byte{19}, mustMarshal(f, basicConstraints{IsCA: true, MaxPathLen: -1}), true, int64(3600))
	f.Add(true, "n1", "system:nodes", "n1", []byte{}, []byte{15}, mustMarshal(f, keyUsageBits(0, 5)), false, int64(0))
	key := testKey(f, "ecdsa")
	p := widePolicy(f)
	f.Fuzz(func(t *testing.T, serving bool, name, org, dns string, ipBytes, extOID, extValue []byte, critical bool, renewedAgo int64) {
		s := clientSpec(key)
		if serving {
			s = servingSpec(key)
			s.requester = nodeUser(name)
		}
		s.cn, s.org = csr.NodeCommonPrefix+name, []string{org}
		s.dns, s.ips = nil, nil
		if dns != "" {
			s.dns = strings.Split(dns, ",")
		}
		for len(ipBytes) >= 4 {
			n := 4
			if len(ipBytes) >= 16 && ipBytes[0]&1 == 1 {
				n = 16
			}
			s.ips, ipBytes = append(s.ips, net.IP(ipBytes[:n])), ipBytes[n:]
		}
		if len(extOID) > 0 {
			s.extraExts = []pkix.Extension{{Id: oidFromBytes(extOID), Critical: critical, Value: extValue}}
		}
		tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: s.cn, Organization: s.org}, DNSNames: s.dns, IPAddresses: s.ips, ExtraExtensions: s.extraExts}
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
		if err != nil {
			return
		}
		obj := s.build(t)
		obj.Spec.Request = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "7"}}
		for _, d := range s.dns {
			node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: d})
		}
		for _, ip := range s.ips {
			node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip.String()})
		}
		in := Input{CSR: obj, Node: node, NodeLease: lease(name, t0.Add(-time.Duration(renewedAgo)*time.Second)), Cluster: testCluster(), Now: t0}
		d, err := p.Decide(context.Background(), in, grantAll)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Message) > MaxMessageBytes {
			t.Fatalf("message of %d bytes", len(d.Message))
		}
		if d.Verdict == Approve {
			assertApprovable(t, obj.Spec.Request, obj.Spec.SignerName, obj.Spec.Username, renewedAgo)
		}
	})
}

// oidFromBytes makes an OID of the form 2.5.29.<b0>.<b1>… (or 2.5.29.<b0>
// alone), so that fuzzed bytes name both known and unknown extensions.
func oidFromBytes(b []byte) asn1.ObjectIdentifier {
	oid := asn1.ObjectIdentifier{2, 5, 29}
	for _, v := range b[:min(len(b), 4)] {
		oid = append(oid, int(v))
	}
	return oid
}
