package e2e

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/tlsboot/tlsboot/approval"
	"github.com/tlsboot/tlsboot/internal/testcluster"
)

// The addresses of the attack cluster. The API server's service range is
// testcluster's --service-cluster-ip-range, 10.0.0.0/24, so the kubernetes
// Service's ClusterIP is 10.0.0.1.
const (
	kubernetesClusterIP = "10.0.0.1"
	serviceRangeIP      = "10.0.0.77" // in the service range, no Service yet
	extraServiceCIDR    = "10.3.0.0/24"
	extraServiceIP      = "10.3.0.7"   // in a ServiceCIDR object added at run time
	apiServerEndpointIP = "10.1.255.1" // in the EndpointSlice of default/kubernetes
)

// attackAliveGrace is TestAttacks's --node-alive-grace: short, so that the
// powered-off node's recovery waits little.
const attackAliveGrace = 20 * time.Second

// TestAttacks tries the attacker model of docs/approver.md as an attacker
// would: with a bootstrap token, or as a node that controls its own Node
// object, against the real control plane and the approver running with its
// default flags and a deliberately broad serving scope (every IP in
// 10.0.0.0/8, which holds the service range, and every DNS name), so that
// only the approver's own rules stand between the attacker and a
// certificate.
func TestAttacks(t *testing.T) {
	c := testcluster.StartT(t, approverClusterOptions)
	adminClient := admin(t, c)
	applyManifests(t, c)
	kubeconfig, _ := serviceAccountKubeconfig(t, c)
	createAPIServerEndpointSlice(t, adminClient, apiServerEndpointIP)
	createServiceCIDR(t, adminClient, "e2e-extra", extraServiceCIDR)
	p := startApprover(t, kubeconfig, "--leader-elect-namespace", approverNamespace,
		"--allowed-ip-cidrs", "10.0.0.0/8", "--allowed-dns-regex", ".*", "--node-alive-grace", attackAliveGrace.String())
	waitOutput(t, p, `"Became the leader`)
	bootstrapClient := clientFor(t, c.BootstrapKubeconfig)

	t.Run("evil node", func(t *testing.T) { testEvilNode(t, c, adminClient) })
	t.Run("live node takeover", func(t *testing.T) { testLiveNodeTakeover(t, c, adminClient, bootstrapClient) })
	t.Run("request content", func(t *testing.T) { testRequestContent(t, adminClient, bootstrapClient) })
	// Its own token: the approver writes at most 10 denial Events per
	// requester a minute, and request content has just used up the shared
	// token's.
	t.Run("bounded echo", func(t *testing.T) { testBoundedEcho(t, p, adminClient, freshBootstrapClient(t, c)) })
	t.Run("ed25519 is signed", func(t *testing.T) { testEd25519(t, adminClient, bootstrapClient) })
}

// testEvilNode is issue 8's first attack, end to end: a bootstrap token
// gets a client certificate for a new node, whose Node object then lists
// the API server's Service IP and names, another node's address and the API
// server's endpoint, and asks for a serving certificate for them.
func testEvilNode(t *testing.T, c *testcluster.Cluster, adminClient kubernetes.Interface) {
	victim := uniqueNodeName("victim")
	createNode(t, adminClient, victim, "10.1.0.2")
	evil := bootstrapNode(t, c, uniqueNodeName("evil"))
	evilClient := clientFor(t, evil.kubeconfig)
	const evilIP = "10.1.0.66"
	// NodeRestriction lets a node create its own Node and write its own
	// status: the attacker's claims are in the API, as the approver reads them.
	claimAddresses(t, evilClient, evil.name, []corev1.NodeAddress{
		{Type: corev1.NodeHostName, Address: evil.name},
		{Type: corev1.NodeInternalIP, Address: evilIP},
		{Type: corev1.NodeInternalIP, Address: kubernetesClusterIP},
		{Type: corev1.NodeInternalIP, Address: serviceRangeIP},
		{Type: corev1.NodeInternalIP, Address: extraServiceIP},
		{Type: corev1.NodeInternalIP, Address: apiServerEndpointIP},
		{Type: corev1.NodeInternalIP, Address: "10.1.0.2"}, // the victim's
		{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
		{Type: corev1.NodeExternalIP, Address: "169.254.169.254"},
		{Type: corev1.NodeInternalDNS, Address: "kubernetes"},
		{Type: corev1.NodeInternalDNS, Address: "kubernetes.default"},
		{Type: corev1.NodeInternalDNS, Address: "kubernetes.default.svc"},
		{Type: corev1.NodeInternalDNS, Address: "kubernetes.default.svc.cluster.local"},
		{Type: corev1.NodeInternalDNS, Address: "localhost"},
		{Type: corev1.NodeInternalDNS, Address: "127.1"},
		{Type: corev1.NodeInternalDNS, Address: "0x7f.1"},
		{Type: corev1.NodeInternalDNS, Address: "*.wild.example"},
		{Type: corev1.NodeExternalDNS, Address: victim}, // the victim's host name
	})

	allDNS := []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", victim}
	allIPs := []string{kubernetesClusterIP, serviceRangeIP, extraServiceIP, apiServerEndpointIP, "10.1.0.2", "127.0.0.1", "169.254.169.254"}
	for _, tc := range []struct {
		name   string
		dns    []string
		ips    []string
		reason string
	}{
		{"the kubernetes Service's ClusterIP", nil, []string{kubernetesClusterIP}, approval.ReasonSANReserved},
		{"an IP of the service range", nil, []string{serviceRangeIP}, approval.ReasonSANReserved},
		{"an IP of a ServiceCIDR object", nil, []string{extraServiceIP}, approval.ReasonSANReserved},
		{"the API server's endpoint", nil, []string{apiServerEndpointIP}, approval.ReasonSANReserved},
		{"another node's InternalIP", nil, []string{"10.1.0.2"}, approval.ReasonSANNotUnique},
		{"loopback", nil, []string{"127.0.0.1"}, approval.ReasonSANReserved},
		{"link-local (cloud metadata)", nil, []string{"169.254.169.254"}, approval.ReasonSANReserved},
		{"kubernetes", []string{"kubernetes"}, nil, approval.ReasonSANReserved},
		{"kubernetes.default", []string{"kubernetes.default"}, nil, approval.ReasonSANReserved},
		{"kubernetes.default.svc", []string{"kubernetes.default.svc"}, nil, approval.ReasonSANReserved},
		{"kubernetes.default.svc.cluster.local", []string{"kubernetes.default.svc.cluster.local"}, nil, approval.ReasonSANReserved},
		{"localhost", []string{"localhost"}, nil, approval.ReasonSANReserved},
		{"another node's host name", []string{victim}, nil, approval.ReasonSANNotUnique},
		// Spellings: the CSR is the attacker's, whatever the Node lists.
		{"kubernetes.default.svc.cluster.local, upper case, trailing dot", []string{"Kubernetes.Default.SVC.cluster.local."}, nil, approval.ReasonSANReserved},
		{"an IPv4 literal as a DNS name (127.1)", []string{"127.1"}, nil, approval.ReasonSANReserved},
		{"a hex IPv4 literal as a DNS name (0x7f.1)", []string{"0x7f.1"}, nil, approval.ReasonSANReserved},
		{"a wildcard DNS name", []string{"*.wild.example"}, nil, approval.ReasonSANNotAllowed},
		// The reserved check runs before the unique one.
		{"all of them at once", allDNS, allIPs, approval.ReasonSANReserved},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := servingCSR(evil.name, append([]string{evil.name}, tc.dns...), append([]string{evilIP}, tc.ips...)...)
			name := createCSR(t, evilClient, spec)
			cond := waitDecision(t, adminClient, name)
			if cond.Type != certificatesv1.CertificateDenied || cond.Reason != tc.reason {
				t.Fatalf("serving CSR for %s: %s %s %q, want Denied %s", tc.name, cond.Type, cond.Reason, cond.Message, tc.reason)
			}
			if tc.reason == approval.ReasonSANNotUnique && !strings.Contains(cond.Message, victim) {
				t.Errorf("message %q does not name the Node %s that holds the address", cond.Message, victim)
			}
			assertNoCertificate(t, adminClient, name)
		})
	}
	// crypto/x509 writes an IPv4 address as 4 bytes; the attacker writes the
	// IPv4-mapped IPv6 form, 16 bytes, which a prefix of IPv4 addresses
	// does not contain unless the address is unmapped first.
	t.Run("the kubernetes ClusterIP as a 16-byte IPv4-mapped address", func(t *testing.T) {
		mapped := net.ParseIP(kubernetesClusterIP).To16()
		name := createRawCSR(t, evilClient, attackRequest{node: evil.name, serving: true,
			ext: []pkix.Extension{subjectAltName(t, dnsName(evil.name), ipAddress(mapped))}})
		cond := waitDecision(t, adminClient, name)
		if cond.Type != certificatesv1.CertificateDenied || cond.Reason != approval.ReasonSANReserved {
			t.Fatalf("serving CSR for ::ffff:%s: %s %s %q, want Denied %s", kubernetesClusterIP, cond.Type, cond.Reason, cond.Message, approval.ReasonSANReserved)
		}
		assertNoCertificate(t, adminClient, name)
	})
	// The same node asking for what is its own is approved and signed: the
	// approver stops the attack, not serving certificates.
	t.Run("its own unique addresses", func(t *testing.T) {
		name := createCSR(t, evilClient, servingCSR(evil.name, []string{evil.name}, evilIP))
		cond := waitDecision(t, adminClient, name)
		if cond.Type != certificatesv1.CertificateApproved {
			t.Fatalf("serving CSR for the node's own addresses: %+v, want approved", cond)
		}
		for _, want := range []string{evil.name, evilIP, "resourceVersion"} {
			if !strings.Contains(cond.Message, want) {
				t.Errorf("approval message %q lacks %q: the audit trail names the SANs and the Node's resourceVersion", cond.Message, want)
			}
		}
		awaitCertificate(t, adminClient, name)
	})
}

// testLiveNodeTakeover: a bootstrap token asks for the client identity of a
// node that exists and is heartbeating. Once its heartbeat is stale (the
// node was powered off past its certificate's expiry), the node recovers by
// itself with the same bootstrap credentials.
func testLiveNodeTakeover(t *testing.T, c *testcluster.Cluster, adminClient, bootstrapClient kubernetes.Interface) {
	live := bootstrapNode(t, c, uniqueNodeName("live"))
	liveClient := clientFor(t, live.kubeconfig)
	claimAddresses(t, liveClient, live.name, []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: live.name}})
	// The kubelet's heartbeat, as the node itself, until it is powered off.
	powerOff := keepRenewing(t, liveClient, live.name, 0)

	t.Run("lease renewed: denied", func(t *testing.T) {
		thief := newNode(t, c)
		thief.name = live.name
		r := run(t, tlsbootBin, thief.args("--wait-timeout", "1m")...)
		if r.code == 0 {
			t.Fatalf("bootstrap token took over live node %s: %s", live.name, r)
		}
		line := r.lastLine()
		for _, want := range []string{"denied", "alive", "delete"} {
			if !strings.Contains(strings.ToLower(line), want) {
				t.Errorf("tlsboot bootstrap's last line %q lacks %q", line, want)
			}
		}
		if exists(thief.kubeconfig) {
			t.Errorf("a kubeconfig was written for the stolen identity")
		}
		denied := 0
		for _, csr := range nodeCSRs(t, adminClient, live.name) {
			for _, cond := range csr.Status.Conditions {
				if cond.Type == certificatesv1.CertificateDenied && cond.Reason == approval.ReasonNodeAlive {
					denied++
				}
			}
		}
		if denied != 1 {
			t.Errorf("%d CSRs for %s denied with %s, want 1", denied, live.name, approval.ReasonNodeAlive)
		}
	})
	t.Run("ready heartbeat without a lease: denied", func(t *testing.T) {
		name := uniqueNodeName("heartbeat")
		createNode(t, adminClient, name, "10.1.0.9")
		node, err := adminClient.CoreV1().Nodes().Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "KubeletReady"}}
		if _, err := adminClient.CoreV1().Nodes().UpdateStatus(t.Context(), node, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		cond := waitDecision(t, adminClient, createCSR(t, bootstrapClient, clientCSR(name)))
		if cond.Type != certificatesv1.CertificateDenied || cond.Reason != approval.ReasonNodeAlive {
			t.Errorf("bootstrap CSR for a node with a fresh Ready heartbeat: %+v, want Denied %s", cond, approval.ReasonNodeAlive)
		}
	})
	t.Run("the node renews itself", func(t *testing.T) {
		cond := waitDecision(t, adminClient, createCSR(t, liveClient, clientCSR(live.name)))
		if cond.Type != certificatesv1.CertificateApproved {
			t.Errorf("the live node's own renewal: %+v, want approved", cond)
		}
	})
	t.Run("lease stale: the powered-off node recovers", func(t *testing.T) {
		// Powered off: its Lease stops changing. The approver judges by
		// when it saw the last renewal (issue 24, finding 4), so await the
		// grace from then; the approver's clock is this machine's.
		powerOff()
		stopped := time.Now()
		err := wait.PollUntilContextTimeout(t.Context(), 500*time.Millisecond, 2*attackAliveGrace, true, func(context.Context) (bool, error) {
			return time.Since(stopped) > attackAliveGrace+2*time.Second, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		back := newNode(t, c)
		back.name = live.name
		if r := run(t, tlsbootBin, back.args()...); r.code != 0 {
			t.Fatalf("node %s with a stale Lease could not bootstrap again: %s", live.name, r)
		}
		if u := whoami(t, back.kubeconfig); u.Username != "system:node:"+live.name {
			t.Errorf("recovered identity %q, want system:node:%s", u.Username, live.name)
		}
	})
}

// testRequestContent: requests the API server accepts but that no node
// legitimately makes, each from the bootstrap token for a new node name.
func testRequestContent(t *testing.T, adminClient, bootstrapClient kubernetes.Interface) {
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTrue, _ := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	caExt := pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: caTrue}
	skiExt := pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 14}, Value: mustMarshal(t, []byte{1, 2, 3, 4})}
	oidExtensionRequest := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 14}
	certSign, _ := asn1.Marshal(asn1.BitString{Bytes: []byte{0x04}, BitLength: 6}) // keyCertSign
	oidCN, oidO := asn1.ObjectIdentifier{2, 5, 4, 3}, asn1.ObjectIdentifier{2, 5, 4, 10}
	// crypto/x509 keeps the last CN, so the node's is last: a policy that
	// reads only what crypto/x509 reads sees a valid node and approves.
	twoCNs := pkix.RDNSequence{
		{{Type: oidO, Value: "system:nodes"}},
		{{Type: oidCN, Value: "system:masters"}},
		{{Type: oidCN, Value: "system:node:" + uniqueNodeName("last")}},
	}
	twoOs := pkix.RDNSequence{
		{{Type: oidO, Value: "system:nodes"}},
		{{Type: oidO, Value: "system:masters"}},
		{{Type: oidCN, Value: "system:node:" + uniqueNodeName("two-o")}},
	}
	notNode := pkix.RDNSequence{
		{{Type: oidO, Value: "system:nodes"}},
		{{Type: oidCN, Value: "system:admin"}},
	}
	for _, tc := range []struct {
		name   string
		req    attackRequest
		reason string
	}{
		{"node name with capitals", attackRequest{node: "WORKER-1"}, approval.ReasonInvalidNodeName},
		{"node name with an empty label", attackRequest{node: "a..b"}, approval.ReasonInvalidNodeName},
		{"node name with an underscore", attackRequest{node: "x_y"}, approval.ReasonInvalidNodeName},
		{"RSA-1024 key", attackRequest{key: rsa1024}, approval.ReasonKeyNotAllowed},
		{"P-521 key", attackRequest{key: p521}, approval.ReasonKeyNotAllowed},
		{"basicConstraints CA:TRUE", attackRequest{ext: []pkix.Extension{caExt}}, approval.ReasonExtensionNotAllowed},
		{"keyCertSign", attackRequest{ext: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 15}, Critical: true, Value: certSign}}}, approval.ReasonExtensionNotAllowed},
		{"unknown critical extension", attackRequest{ext: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Critical: true, Value: []byte{5, 0}}}}, approval.ReasonExtensionNotAllowed},
		// crypto/x509 skips these: a signer built on it sees a plain node
		// request; another signer may read what the policy never saw. The
		// request has no extension request of its own (no SAN), so each
		// attribute is the only one of its kind.
		{"challengePassword attribute", attackRequest{attrs: []asn1.RawValue{attribute(t, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}, "secret")}}, approval.ReasonAttributeNotAllowed},
		{"otherName SAN", attackRequest{ext: []pkix.Extension{subjectAltName(t, otherName(t, "system:masters"))}}, approval.ReasonExtensionNotAllowed},
		{"Microsoft extension request smuggling a CA", attackRequest{attrs: []asn1.RawValue{attribute(t, asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 14}, []pkix.Extension{caExt})}}, approval.ReasonAttributeNotAllowed},
		{"second value of the extension request smuggling a CA", attackRequest{attrs: []asn1.RawValue{attribute(t, oidExtensionRequest, []pkix.Extension{skiExt}, []pkix.Extension{caExt})}}, approval.ReasonAttributeNotAllowed},
		{"two common names", attackRequest{subject: twoCNs}, approval.ReasonBadCommonName},
		{"two organizations", attackRequest{subject: twoOs}, approval.ReasonBadOrganization},
		{"an OU in the subject", attackRequest{subject: pkix.RDNSequence{{{Type: oidO, Value: "system:nodes"}}, {{Type: asn1.ObjectIdentifier{2, 5, 4, 11}, Value: "padding"}},
			{{Type: oidCN, Value: "system:node:" + uniqueNodeName("ou")}}}}, approval.ReasonSubjectNotAllowed},
		{"a non-node common name", attackRequest{subject: notNode}, approval.ReasonBadCommonName},
		{"a certificate for ten years", attackRequest{expire: 10 * 365 * 24 * 3600}, approval.ReasonExpirationTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := createRawCSR(t, bootstrapClient, tc.req)
			cond := waitDecision(t, adminClient, name)
			if cond.Type != certificatesv1.CertificateDenied || cond.Reason != tc.reason {
				t.Fatalf("%s: %s %s %q, want Denied %s", tc.name, cond.Type, cond.Reason, cond.Message, tc.reason)
			}
			assertNoCertificate(t, adminClient, name)
		})
	}
	// A request whose self-signature does not verify never reaches the
	// approver: the API server's validation refuses it (the approver's
	// own check, R4, is defence in depth, tested in package approval).
	t.Run("a tampered signature", func(t *testing.T) {
		_, err := buildRawCSR(t, bootstrapClient, attackRequest{tamper: true})
		if !apierrors.IsInvalid(err) {
			t.Fatalf("creating a CSR with a tampered signature: %v, want the API server to refuse it as Invalid", err)
		}
	})
}

// testBoundedEcho: a request of 420 KB full of SANs (the old approver
// copied 318 KB of it into the condition), and one just under the size
// limit with a thousand SANs, are denied with short messages, Events and
// log lines.
func testBoundedEcho(t *testing.T, p *proc, adminClient, bootstrapClient kubernetes.Interface) {
	for _, tc := range []struct {
		name   string
		sans   int
		reason string
	}{
		{"420 KB request", 12000, approval.ReasonRequestTooLarge},
		{"a thousand SANs under the size limit", 1000, approval.ReasonTooManySANs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dns := make([]string, tc.sans)
			for i := range dns {
				dns[i] = fmt.Sprintf("san-%05d.attacker.example.com", i)
			}
			name := createRawCSR(t, bootstrapClient, attackRequest{dns: dns})
			cond := waitDecision(t, adminClient, name)
			if cond.Type != certificatesv1.CertificateDenied || cond.Reason != tc.reason {
				t.Fatalf("%s %s %.200q, want Denied %s", cond.Type, cond.Reason, cond.Message, tc.reason)
			}
			if len(cond.Message) > 2048 {
				t.Errorf("condition message is %d bytes, want at most 2 KiB", len(cond.Message))
			}
			ev := awaitEvents(t, adminClient, name)[0]
			if len(ev.Message) > 2048 {
				t.Errorf("Event message is %d bytes, want at most 2 KiB", len(ev.Message))
			}
		})
	}
	for _, line := range strings.Split(p.stderr.String(), "\n") {
		if len(line) > 4096 {
			t.Errorf("the approver logged a line of %d bytes: %.200s…", len(line), line)
		}
	}
}

// testEd25519: kube-controller-manager's signer issues certificates for
// Ed25519 keys (it hands the request's public key to x509.CreateCertificate),
// so the approver accepts them; this proves it against the real signer.
func testEd25519(t *testing.T, adminClient, bootstrapClient kubernetes.Interface) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	name := createRawCSR(t, bootstrapClient, attackRequest{key: key})
	if cond := waitDecision(t, adminClient, name); cond.Type != certificatesv1.CertificateApproved {
		t.Fatalf("Ed25519 client CSR: %+v, want approved", cond)
	}
	cert := awaitCertificate(t, adminClient, name)
	if _, ok := cert.PublicKey.(ed25519.PublicKey); !ok {
		t.Errorf("issued certificate has a %T key, want Ed25519", cert.PublicKey)
	}
}

// attackRequest is a kubelet client CSR with one thing changed.
type attackRequest struct {
	node    string           // default: a new unique name
	key     crypto.Signer    // default: ECDSA P-256
	ext     []pkix.Extension // extra extensions
	subject pkix.RDNSequence // replaces the subject
	dns     []string
	expire  int32 // spec.expirationSeconds, when not 0
	tamper  bool  // flip a bit of the request's signature
	// attrs are PKCS #10 attributes added after the extension request
	// (the request is signed again, so it still verifies).
	attrs   []asn1.RawValue
	serving bool // a kubelet-serving CSR instead of a client one
}

// createRawCSR creates the client CSR r describes with client, bypassing
// every check of package csr, and returns its name.
func createRawCSR(t *testing.T, client kubernetes.Interface, r attackRequest) string {
	t.Helper()
	name, err := buildRawCSR(t, client, r)
	if err != nil {
		t.Fatalf("creating the CSR: %v", err)
	}
	return name
}

// buildRawCSR is createRawCSR returning the API server's error.
func buildRawCSR(t *testing.T, client kubernetes.Interface, r attackRequest) (string, error) {
	t.Helper()
	if r.node == "" {
		r.node = uniqueNodeName("content")
	}
	if r.key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		r.key = k
	}
	tmpl := &x509.CertificateRequest{
		Subject:         pkix.Name{CommonName: "system:node:" + r.node, Organization: []string{"system:nodes"}},
		ExtraExtensions: r.ext, DNSNames: r.dns,
	}
	if r.subject != nil {
		raw, err := asn1.Marshal(r.subject)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.RawSubject = raw
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, r.key)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.attrs) > 0 {
		der = withAttributes(t, der, r.key, r.attrs)
	}
	if r.tamper {
		der[len(der)-1] ^= 1 // the last byte of the signature
	}
	signer, auth := certificatesv1.KubeAPIServerClientKubeletSignerName, certificatesv1.UsageClientAuth
	if r.serving {
		signer, auth = certificatesv1.KubeletServingSignerName, certificatesv1.UsageServerAuth
	}
	usages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, auth}
	if _, ok := r.key.(*rsa.PrivateKey); ok {
		usages = append(usages, certificatesv1.UsageKeyEncipherment)
	}
	obj := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "attack-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: signer, Usages: usages,
		},
	}
	if r.expire != 0 {
		obj.Spec.ExpirationSeconds = &r.expire
	}
	made, err := client.CertificatesV1().CertificateSigningRequests().Create(t.Context(), obj, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return made.Name, nil
}

var attackSeq atomic.Int64

// uniqueNodeName returns a Node name unique in this test process.
func uniqueNodeName(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().Unix()%100000, attackSeq.Add(1))
}

// claimAddresses creates node's Node object with client (the node's own
// identity, which NodeRestriction allows) and writes addrs as its status.
func claimAddresses(t *testing.T, client kubernetes.Interface, node string, addrs []corev1.NodeAddress) {
	t.Helper()
	n, err := client.CoreV1().Nodes().Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("node %s creating its own Node: %v", node, err)
	}
	n.Status.Addresses = addrs
	if _, err := client.CoreV1().Nodes().UpdateStatus(t.Context(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("node %s writing its own addresses: %v", node, err)
	}
}

// renewLease creates or updates node's Lease in kube-node-lease with the
// given renew time, as the kubelet's heartbeat does.
func renewLease(t *testing.T, client kubernetes.Interface, node string, at time.Time) {
	t.Helper()
	leases := client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	renew := metav1.NewMicroTime(at)
	lease, err := leases.Get(t.Context(), node, metav1.GetOptions{})
	if err != nil {
		lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: corev1.NamespaceNodeLease},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &node, LeaseDurationSeconds: ptr(int32(40)), RenewTime: &renew}}
		if _, err := leases.Create(t.Context(), lease, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating the Lease of %s: %v", node, err)
		}
		return
	}
	lease.Spec.RenewTime = &renew
	if _, err := leases.Update(t.Context(), lease, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("renewing the Lease of %s: %v", node, err)
	}
}

// createAPIServerEndpointSlice lists ip as an endpoint of default/kubernetes,
// as the API server's endpoint reconciler does in a real cluster (the test
// cluster runs with --endpoint-reconciler-type=none).
func createAPIServerEndpointSlice(t *testing.T, client kubernetes.Interface, ip string) {
	t.Helper()
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "kubernetes", Namespace: metav1.NamespaceDefault, Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("https"), Port: ptr(int32(6443))}},
	}
	if _, err := client.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).Create(t.Context(), slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createServiceCIDR(t *testing.T, client kubernetes.Interface, name, cidr string) {
	t.Helper()
	sc := &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{cidr}}}
	if _, err := client.NetworkingV1().ServiceCIDRs().Create(t.Context(), sc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// assertNoCertificate checks that a denied CSR got no certificate.
func assertNoCertificate(t *testing.T, client kubernetes.Interface, name string) {
	t.Helper()
	obj, err := client.CertificatesV1().CertificateSigningRequests().Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(obj.Status.Certificate) > 0 {
		t.Errorf("CSR %s has a certificate", name)
	}
}

// awaitCertificate waits for the signer to issue CSR name's certificate.
func awaitCertificate(t *testing.T, client kubernetes.Interface, name string) *x509.Certificate {
	t.Helper()
	var cert *x509.Certificate
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		obj, err := client.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil || len(obj.Status.Certificate) == 0 {
			return false, err
		}
		block, _ := pem.Decode(obj.Status.Certificate)
		if block == nil {
			return false, fmt.Errorf("CSR %s: certificate is not PEM", name)
		}
		cert, err = x509.ParseCertificate(block.Bytes)
		return true, err
	})
	if err != nil {
		t.Fatalf("no certificate issued for CSR %s: %v", name, err)
	}
	return cert
}

// withAttributes returns the DER request der with attrs appended to its
// attributes, signed again with key, an ECDSA P-256 key (crypto/x509 signs
// such a request with ECDSA-SHA256, the algorithm kept here).
func withAttributes(t *testing.T, der []byte, key crypto.Signer, attrs []asn1.RawValue) []byte {
	t.Helper()
	if k, ok := key.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
		t.Fatalf("withAttributes signs with ECDSA P-256 only, not %T", key)
	}
	var outer struct {
		TBS asn1.RawValue
		Alg pkix.AlgorithmIdentifier
		Sig asn1.BitString
	}
	var tbs struct {
		Version   int
		Subject   asn1.RawValue
		PublicKey asn1.RawValue
		Attrs     []asn1.RawValue `asn1:"tag:0"`
	}
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		t.Fatal(err)
	}
	if _, err := asn1.Unmarshal(outer.TBS.FullBytes, &tbs); err != nil {
		t.Fatal(err)
	}
	tbs.Attrs = append(tbs.Attrs, attrs...)
	raw := mustMarshal(t, tbs)
	digest := sha256.Sum256(raw)
	sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	outer.TBS = asn1.RawValue{FullBytes: raw}
	outer.Sig = asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}
	return mustMarshal(t, outer)
}

// attribute encodes a PKCS #10 attribute: the type and a set of values.
func attribute(t *testing.T, id asn1.ObjectIdentifier, values ...any) asn1.RawValue {
	t.Helper()
	set := make([]asn1.RawValue, len(values))
	for i, v := range values {
		set[i] = asn1.RawValue{FullBytes: mustMarshal(t, v)}
	}
	return asn1.RawValue{FullBytes: mustMarshal(t, struct {
		ID     asn1.ObjectIdentifier
		Values []asn1.RawValue `asn1:"set"`
	}{id, set})}
}

// subjectAltName encodes a subjectAltName extension of the given
// GeneralNames, spelled as the attacker likes.
func subjectAltName(t *testing.T, names ...asn1.RawValue) pkix.Extension {
	t.Helper()
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: mustMarshal(t, names)}
}

// dnsName and ipAddress are GeneralNames, taken as they are: a name of any
// case, an address of any length.
func dnsName(name string) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(name)}
}

func ipAddress(ip []byte) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 7, Bytes: ip}
}

// otherName is a GeneralName that crypto/x509 skips when it reads a SAN
// extension: an otherName of an unregistered type holding value.
func otherName(t *testing.T, value string) asn1.RawValue {
	t.Helper()
	inner := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: mustMarshal(t, value)}
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true,
		Bytes: append(mustMarshal(t, asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 2}), mustMarshal(t, inner)...)}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// freshBootstrapClient returns a client for a new bootstrap token in the
// default bootstrap group, so that it is a requester of its own.
func freshBootstrapClient(t *testing.T, c *testcluster.Cluster) kubernetes.Interface {
	t.Helper()
	tok, err := c.CreateToken(t.Context(), testcluster.TokenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/bootstrap.kubeconfig"
	if err := c.WriteBootstrapKubeconfig(path, tok); err != nil {
		t.Fatal(err)
	}
	return clientFor(t, path)
}
