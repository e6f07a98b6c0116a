package approval

import (
	"context"
	"encoding/pem"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/tlsboot/tlsboot/csr"
)

type ruleCase struct {
	name    string
	spec    func(kind string) csrSpec
	node    *corev1.Node
	lease   *coordinationv1.Lease
	cluster ClusterView
	opts    Options
	now     time.Time
	verdict Verdict
	reason  string
	rule    string
	asked   []string // SubjectAccessReviews asked, in order; nil: not checked
	notify  bool
	// contains are substrings the message must have.
	contains []string

	// heartbeats: nil means seen changing at the node's own stamps
	// (stampsSeen: a watcher whose clock agrees with the node's).
	heartbeats *Heartbeats
}

func TestClientRules(t *testing.T) {
	client := func(f func(s *csrSpec)) func(string) csrSpec { return specBuilder(t, clientSpec, f) }
	cases := []ruleCase{
		{name: "bootstrap approved after nodeclient review", spec: client(nil),
			verdict: Approve, reason: ReasonAutoApproved, rule: "kubelet-client", asked: []string{"system:bootstrap:abcdef/nodeclient"}},
		{name: "self renewal approved after selfnodeclient review", spec: client(func(s *csrSpec) { s.requester = nodeUser("n1") }),
			verdict: Approve, reason: ReasonAutoApproved, rule: "kubelet-client-self", asked: []string{"system:node:n1/selfnodeclient"}},
		{name: "self renewal without selfnodeclient falls back to nodeclient, like kube-controller-manager",
			spec:    client(func(s *csrSpec) { s.cn, s.requester = "system:node:n3", nodeUser("n3") }),
			verdict: Wait, reason: ReasonNotAuthorized, rule: "kubelet-client-self", asked: []string{"system:node:n3/selfnodeclient", "system:node:n3/nodeclient"}},
		{name: "token without the nodeclient binding waits", spec: client(func(s *csrSpec) { s.requester.Username = "system:bootstrap:zzzzzz" }),
			verdict: Wait, reason: ReasonNotAuthorized, rule: "kubelet-client", asked: []string{"system:bootstrap:zzzzzz/nodeclient"}},
		{name: "node asking for another node's identity denied without review", spec: client(func(s *csrSpec) { s.requester = nodeUser("n2") }),
			verdict: Deny, reason: ReasonNodeMismatch, asked: []string{}},
		{name: "wrong organization", spec: client(func(s *csrSpec) { s.org = []string{"system:masters"} }), verdict: Deny, reason: ReasonBadOrganization, asked: []string{}},
		{name: "extra organization", spec: client(func(s *csrSpec) { s.org = []string{"system:nodes", "system:masters"} }), verdict: Deny, reason: ReasonBadOrganization},
		{name: "no organization", spec: client(func(s *csrSpec) { s.org = nil }), verdict: Deny, reason: ReasonBadOrganization},
		{name: "common name not a node", spec: client(func(s *csrSpec) { s.cn = "admin" }), verdict: Deny, reason: ReasonBadCommonName},
		{name: "empty node name", spec: client(func(s *csrSpec) { s.cn = "system:node:" }), verdict: Deny, reason: ReasonBadCommonName},
		{name: "DNS SAN", spec: client(func(s *csrSpec) { s.dns = []string{"n1"} }), verdict: Deny, reason: ReasonSANNotAllowed},
		{name: "IP SAN", spec: client(func(s *csrSpec) { s.ips = []net.IP{net.ParseIP("10.0.0.1")} }), verdict: Deny, reason: ReasonSANNotAllowed},
		{name: "email SAN", spec: client(func(s *csrSpec) { s.emails = []string{"a@example.com"} }), verdict: Deny, reason: ReasonSANNotAllowed},
		{name: "URI SAN", spec: client(func(s *csrSpec) { s.uris = []*url.URL{{Scheme: "spiffe", Host: "x"}} }), verdict: Deny, reason: ReasonSANNotAllowed},
		{name: "extra usage", spec: client(func(s *csrSpec) { s.usages = append(s.usages, certificatesv1.UsageServerAuth) }), verdict: Deny, reason: ReasonBadUsages},
		{name: "missing client auth", spec: client(func(s *csrSpec) { s.usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature} }), verdict: Deny, reason: ReasonBadUsages},
		{name: "usages in another order", spec: client(func(s *csrSpec) { slices.Reverse(s.usages) }), verdict: Approve, reason: ReasonAutoApproved},
		{name: "duplicate usage", spec: client(func(s *csrSpec) { s.usages = append(s.usages, certificatesv1.UsageClientAuth) }), verdict: Deny, reason: ReasonBadUsages},
		{name: "expiration within limit", spec: client(func(s *csrSpec) { s.expiration = i32(3600) }), opts: Options{MaxExpiration: time.Hour},
			verdict: Approve, reason: ReasonAutoApproved},
		{name: "expiration above limit", spec: client(func(s *csrSpec) { s.expiration = i32(3601) }), opts: Options{MaxExpiration: time.Hour},
			verdict: Deny, reason: ReasonExpirationTooLong},
		{name: "no limit", spec: client(func(s *csrSpec) { s.expiration = i32(1 << 30) }), verdict: Approve, reason: ReasonAutoApproved},
		{name: "garbage request", spec: client(func(s *csrSpec) { s.rawRequest = []byte("not pem") }), verdict: Deny, reason: ReasonInvalidRequest},
		{name: "already approved", spec: client(func(s *csrSpec) { s.conditions = cond(certificatesv1.CertificateApproved) }), verdict: Ignore, reason: ReasonAlreadyDecided, asked: []string{}},
		{name: "already denied", spec: client(func(s *csrSpec) { s.conditions = cond(certificatesv1.CertificateDenied) }), verdict: Ignore, reason: ReasonAlreadyDecided},
		{name: "already failed", spec: client(func(s *csrSpec) { s.conditions = cond(certificatesv1.CertificateFailed) }), verdict: Ignore, reason: ReasonAlreadyDecided},
		{name: "already issued", spec: client(func(s *csrSpec) { s.cert = []byte("x") }), verdict: Ignore, reason: ReasonAlreadyDecided},
		{name: "other signer left alone", spec: client(func(s *csrSpec) { s.signer = certificatesv1.KubeAPIServerClientSignerName }),
			verdict: Ignore, reason: ReasonUnknownSigner, asked: []string{}},
		{name: "waiting past the pending timeout is left alone", spec: client(func(s *csrSpec) { s.requester.Username = "system:bootstrap:zzzzzz" }),
			opts: Options{PendingTimeout: time.Hour}, now: t0.Add(time.Hour), verdict: Ignore, reason: ReasonPendingTimeout},
		{name: "waiting past the pending timeout is denied by option", spec: client(func(s *csrSpec) { s.requester.Username = "system:bootstrap:zzzzzz" }),
			opts: Options{PendingTimeout: time.Hour, DenyOnTimeout: true}, now: t0.Add(time.Hour), verdict: Deny, reason: ReasonPendingTimeout},
		{name: "waiting before the pending timeout still waits", spec: client(func(s *csrSpec) { s.requester.Username = "system:bootstrap:zzzzzz" }),
			opts: Options{PendingTimeout: time.Hour, DenyOnTimeout: true}, now: t0.Add(time.Hour - time.Second), verdict: Wait, reason: ReasonNotAuthorized},
		{name: "timeout does not affect an approval", spec: client(nil),
			opts: Options{PendingTimeout: time.Hour, DenyOnTimeout: true}, now: t0.Add(2 * time.Hour), verdict: Approve, reason: ReasonAutoApproved},
	}
	runRuleCases(t, cases)
}

func TestKeyEncipherment(t *testing.T) {
	for _, kind := range keyKinds {
		for _, signer := range []string{certificatesv1.KubeAPIServerClientKubeletSignerName, certificatesv1.KubeletServingSignerName} {
			key := testKey(t, kind)
			spec := clientSpec(key)
			auth := certificatesv1.UsageClientAuth
			if signer == certificatesv1.KubeletServingSignerName {
				spec, auth = servingSpec(key), certificatesv1.UsageServerAuth
			}
			for _, withKE := range []bool{false, true} {
				spec.usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, auth}
				if withKE {
					spec.usages = append(spec.usages, certificatesv1.UsageKeyEncipherment)
				}
				want := Approve
				if withKE && kind != "rsa" {
					want = Deny
				}
				d := decide(t, spec, nodeN1(), servingScope, t0, kubeadmAuthz())
				if d.Verdict != want {
					t.Errorf("%s key, %s, key encipherment %v: %v (%s), want %v", kind, signer, withKE, d.Verdict, d.Message, want)
				}
			}
		}
	}
}

func TestServingRules(t *testing.T) {
	serving := func(f func(s *csrSpec)) func(string) csrSpec { return specBuilder(t, servingSpec, f) }
	noAddresses := nodeN1()
	noAddresses.Status.Addresses = nil
	cases := []ruleCase{
		{name: "SANs are the node's addresses", spec: serving(nil), node: nodeN1(), verdict: Approve, reason: ReasonAutoApproved, rule: "kubelet-serving", asked: []string{}},
		{name: "a subset of the addresses", spec: serving(func(s *csrSpec) { s.dns = nil }), node: nodeN1(), verdict: Approve, reason: ReasonAutoApproved},
		{name: "IPv4-mapped IPv6 form of an address", spec: serving(func(s *csrSpec) { s.ips = []net.IP{net.ParseIP("10.0.0.1").To16()} }), node: nodeN1(), verdict: Approve},
		{name: "foreign DNS name", spec: serving(func(s *csrSpec) { s.dns = append(s.dns, "n3.example.internal") }), node: nodeN1(), verdict: Deny, reason: ReasonSANNotNodeAddress},
		{name: "API server's name, even if the node lists it", spec: serving(func(s *csrSpec) { s.dns = append(s.dns, "kubernetes.default.svc") }), node: nodeN1(), verdict: Deny, reason: ReasonSANReserved},
		{name: "foreign IP", spec: serving(func(s *csrSpec) { s.ips = append(s.ips, net.ParseIP("10.0.0.2")) }), node: nodeN1(), verdict: Deny, reason: ReasonSANNotNodeAddress},
		{name: "IP given as DNS name", spec: serving(func(s *csrSpec) { s.dns = []string{"10.0.0.1"} }), node: nodeN1(), verdict: Deny, reason: ReasonSANReserved},
		{name: "wildcard DNS name", spec: serving(func(s *csrSpec) { s.dns = []string{"*.example.internal"} }), node: nodeN1(), verdict: Deny, reason: ReasonSANNotAllowed},
		{name: "node A asks for node B", spec: serving(func(s *csrSpec) { s.requester = nodeUser("n2") }), node: nodeN1(), verdict: Deny, reason: ReasonNodeMismatch},
		{name: "requester not a node", spec: serving(func(s *csrSpec) { s.requester = bootstrap }), node: nodeN1(), verdict: Deny, reason: ReasonRequesterNotNode},
		{name: "node name without the nodes group", spec: serving(func(s *csrSpec) { s.requester.Groups = []string{"system:authenticated"} }), node: nodeN1(), verdict: Deny, reason: ReasonRequesterNotNode},
		{name: "wrong organization", spec: serving(func(s *csrSpec) { s.org = []string{"x"} }), node: nodeN1(), verdict: Deny, reason: ReasonBadOrganization},
		{name: "no SANs", spec: serving(func(s *csrSpec) { s.dns, s.ips = nil, nil }), node: nodeN1(), verdict: Deny, reason: ReasonMissingSAN},
		{name: "email SAN", spec: serving(func(s *csrSpec) { s.emails = []string{"a@b.c"} }), node: nodeN1(), verdict: Deny, reason: ReasonSANNotAllowed},
		{name: "URI SAN", spec: serving(func(s *csrSpec) { s.uris = []*url.URL{{Scheme: "https", Host: "n1"}} }), node: nodeN1(), verdict: Deny, reason: ReasonSANNotAllowed},
		{name: "client auth usage", spec: serving(func(s *csrSpec) { s.usages = append(s.usages, certificatesv1.UsageClientAuth) }), node: nodeN1(), verdict: Deny, reason: ReasonBadUsages},
		{name: "expiration above limit", spec: serving(func(s *csrSpec) { s.expiration = i32(7200) }), node: nodeN1(), opts: Options{MaxExpiration: time.Hour}, verdict: Deny, reason: ReasonExpirationTooLong},
		{name: "DNS name outside the allowed regex", spec: serving(nil), node: nodeN1(), opts: Options{AllowedDNSRegex: `n1`, AllowedIPs: servingScope.AllowedIPs}, verdict: Deny, reason: ReasonSANForbiddenByPolicy},
		{name: "DNS names inside the allowed regex", spec: serving(nil), node: nodeN1(), opts: Options{AllowedDNSRegex: `n1(\.example\.internal)?`, AllowedIPs: servingScope.AllowedIPs}, verdict: Approve},
		{name: "IP outside the allowed CIDRs", spec: serving(nil), node: nodeN1(), opts: Options{AllowedDNSRegex: servingScope.AllowedDNSRegex, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, verdict: Deny, reason: ReasonSANForbiddenByPolicy},
		{name: "IPs inside the allowed CIDRs", spec: serving(nil), node: nodeN1(), opts: servingScope, verdict: Approve},
		{name: "node does not exist yet", spec: serving(nil), node: nil, verdict: Wait, reason: ReasonNodeNotFound},
		{name: "node of another name passed", spec: serving(func(s *csrSpec) { s.cn, s.requester = "system:node:n2", nodeUser("n2") }), node: nodeN1(), verdict: Wait, reason: ReasonNodeNotFound},
		{name: "node without addresses yet", spec: serving(nil), node: noAddresses, verdict: Wait, reason: ReasonNodeAddressesUnknown},
		{name: "node still missing after the pending timeout, denied", spec: serving(nil), opts: Options{AllowedDNSRegex: servingScope.AllowedDNSRegex, AllowedIPs: servingScope.AllowedIPs, PendingTimeout: time.Minute, DenyOnTimeout: true},
			now: t0.Add(time.Minute), verdict: Deny, reason: ReasonPendingTimeout},
	}
	for i := range cases {
		if cases[i].opts.AllowedDNSRegex == "" && len(cases[i].opts.AllowedIPs) == 0 {
			cases[i].opts.AllowedDNSRegex, cases[i].opts.AllowedIPs = servingScope.AllowedDNSRegex, servingScope.AllowedIPs
		}
	}
	runRuleCases(t, cases)
}

func runRuleCases(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		for _, kind := range keyKinds {
			t.Run(tc.name+"/"+kind, func(t *testing.T) {
				now := tc.now
				if now.IsZero() {
					now = t0
				}
				authz := kubeadmAuthz()
				in := Input{Node: tc.node, NodeLease: tc.lease, Heartbeats: tc.heartbeats, Cluster: tc.cluster, Now: now}
				if in.Heartbeats == nil {
					in.Heartbeats = stampsSeen(tc.node, tc.lease)
				}
				d := decideIn(t, tc.spec(kind), in, tc.opts, authz)
				if d.Verdict != tc.verdict || (tc.reason != "" && d.Reason != tc.reason) || (tc.rule != "" && d.Rule != tc.rule) {
					t.Errorf("got %v %s rule %q (%s), want %v %s rule %q", d.Verdict, d.Reason, d.Rule, d.Message, tc.verdict, tc.reason, tc.rule)
				}
				if d.Message == "" || len(d.Message) > MaxMessageBytes {
					t.Errorf("decision %v %s has a message of %d bytes, want 1 to %d", d.Verdict, d.Reason, len(d.Message), MaxMessageBytes)
				}
				assertNamesNoFlag(t, d)
				if d.Notify != tc.notify {
					t.Errorf("Notify %v, want %v", d.Notify, tc.notify)
				}
				for _, sub := range tc.contains {
					if !strings.Contains(d.Message, sub) {
						t.Errorf("message %q does not say %q", d.Message, sub)
					}
				}
				if tc.asked != nil && !slices.Equal(authz.asked, tc.asked) && !(len(tc.asked) == 0 && len(authz.asked) == 0) {
					t.Errorf("asked %q, want %q", authz.asked, tc.asked)
				}
			})
		}
	}
}

func decide(t *testing.T, s csrSpec, node *corev1.Node, opts Options, now time.Time, authz Authorizer) Decision {
	t.Helper()
	return decideIn(t, s, Input{Node: node, Now: now}, opts, authz)
}

// decideIn decides s's CSR with the rest of in.
func decideIn(t *testing.T, s csrSpec, in Input, opts Options, authz Authorizer) Decision {
	t.Helper()
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	in.CSR = s.build(t)
	d, err := p.Decide(t.Context(), in, authz)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func cond(typ certificatesv1.RequestConditionType) []certificatesv1.CertificateSigningRequestCondition {
	return []certificatesv1.CertificateSigningRequestCondition{{Type: typ, Status: corev1.ConditionTrue}}
}

func TestAuthorizerErrorIsReturned(t *testing.T) {
	p, _ := New(Options{})
	boom := errors.New("connection refused")
	_, err := p.Decide(t.Context(), Input{CSR: clientSpec(testKey(t, "ecdsa")).build(t), Now: t0}, &fakeAuthz{err: boom})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "nodeclient") {
		t.Errorf("error %v, want one wrapping %v that names the permission", err, boom)
	}
}

func TestRequesterCarriesExtraAndUID(t *testing.T) {
	s := clientSpec(testKey(t, "ecdsa"))
	s.requester.UID = "uid-1"
	s.requester.Extra = map[string][]string{"scopes": {"a", "b"}}
	var got Requester
	p, _ := New(Options{})
	_, err := p.Decide(t.Context(), Input{CSR: s.build(t), Now: t0}, authorizerFunc(func(_ context.Context, r Requester, _ string) (bool, error) {
		got = r
		return true, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got.UID != "uid-1" || !slices.Equal(got.Extra["scopes"], []string{"a", "b"}) || !slices.Equal(got.Groups, bootstrap.Groups) {
		t.Errorf("authorizer got requester %+v, want the CSR's spec.uid, groups and extra", got)
	}
}

func TestNodeName(t *testing.T) {
	for _, tc := range []struct {
		cn, want string
	}{{"system:node:n1", "n1"}, {"n1", ""}, {"system:node:", ""}} {
		s := clientSpec(testKey(t, "ecdsa"))
		s.cn = tc.cn
		if got := NodeName(s.build(t)); got != tc.want {
			t.Errorf("NodeName(CN %q) = %q, want %q", tc.cn, got, tc.want)
		}
	}
}

// TestNodeNameBadSignature: NodeName reads the name of a request whose
// signature is wrong (it only picks what to look up), and Decide denies
// that request (R4).
func TestNodeNameBadSignature(t *testing.T) {
	s := clientSpec(testKey(t, "ecdsa"))
	obj := s.build(t)
	block, _ := pem.Decode(obj.Spec.Request)
	block.Bytes[len(block.Bytes)-1] ^= 0xff // the last byte of the signature
	obj.Spec.Request = pem.EncodeToMemory(block)
	if got := NodeName(obj); got != "n1" {
		t.Errorf("NodeName of a request with a bad signature = %q, want its CN's node", got)
	}
	if _, err := parseRequest(obj.Spec.Request); err == nil {
		t.Fatal("the tampered request still verifies: the test does not tamper with the signature")
	}
	s.rawRequest = obj.Spec.Request
	if d := decideIn(t, s, Input{Now: t0}, Options{}, kubeadmAuthz()); d.Verdict != Deny || d.Reason != ReasonInvalidRequest {
		t.Errorf("decision on a request with a bad signature: %s %s, want Deny %s", d.Verdict, d.Reason, ReasonInvalidRequest)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tt := range []struct {
		opts   Options
		option string
	}{
		{Options{MaxExpiration: -1}, "MaxExpiration"},
		{Options{MaxExpiration: 5 * time.Minute}, "MaxExpiration"},
		{Options{PendingTimeout: -1}, "PendingTimeout"},
		{Options{AllowedIPs: []netip.Prefix{{}}}, "AllowedIPs"},
		{Options{AllowedDNSRegex: `(`}, "AllowedDNSRegex"},
		{Options{AllowedDNSRegex: `a)|(b`}, "AllowedDNSRegex"},
	} {
		_, err := New(tt.opts)
		var bad *OptionError
		if !errors.As(err, &bad) || bad.Option != tt.option || strings.Contains(err.Error(), "\n") {
			t.Errorf("New(%+v): %v, want a one-line *OptionError for %s", tt.opts, err, tt.option)
		}
	}
}

func TestPendingTimeoutIn(t *testing.T) {
	p, _ := New(Options{PendingTimeout: time.Hour})
	in := Input{CSR: clientSpec(testKey(t, "ecdsa")).build(t), Now: t0.Add(10 * time.Minute)}
	if d, ok := p.PendingTimeoutIn(in); !ok || d != 50*time.Minute {
		t.Errorf("PendingTimeoutIn = %v, %v; want 50m, true", d, ok)
	}
	p, _ = New(Options{})
	if _, ok := p.PendingTimeoutIn(in); ok {
		t.Error("PendingTimeoutIn without a timeout reported one")
	}
}

// TestPolicyTable checks the shape of the recogniser table that Decide
// relies on: one recogniser per signer, each with checks, a rule name, an
// approval message, and grants whose last one always applies.
func TestPolicyTable(t *testing.T) {
	p, _ := New(Options{})
	if got, want := p.Signers(), csr.NodeSigners(); !slices.Equal(got, want) {
		t.Errorf("the policy claims signers %q, want csr.NodeSigners() %q", got, want)
	}
	seen := map[string]bool{}
	for _, rec := range recognisers() {
		if rec.name == "" || rec.signer == "" || len(rec.checks) == 0 || rec.approved == nil || seen[rec.signer] {
			t.Errorf("recogniser %q for signer %q: want a name, a signer of its own, checks and an approval message", rec.name, rec.signer)
		}
		seen[rec.signer] = true
		if len(rec.grants) == 0 || rec.grants[len(rec.grants)-1].when != nil {
			t.Errorf("recogniser %q: its last grant must always apply", rec.name)
		}
		for _, g := range rec.grants {
			if g.rule == "" {
				t.Errorf("recogniser %q: a grant without a rule name", rec.name)
			}
		}
	}
}
