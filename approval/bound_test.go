package approval

import (
	"context"
	"crypto"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	certificatesv1 "k8s.io/api/certificates/v1"

	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/token/binding"
)

// boundTo returns bootstrap's identity with the binding group of node (as
// the API server records a token made by token create --node-name).
func boundTo(node string) Requester {
	g, err := binding.Group(node)
	if err != nil {
		panic(err)
	}
	r := bootstrap
	r.Groups = append(append([]string(nil), bootstrap.Groups...), g)
	return r
}

// anotherKey returns a key of kind that differs from testKey(kind).
func anotherKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	for _, k := range keyKinds {
		if k != kind {
			return testKey(t, k)
		}
	}
	t.Fatal("one key kind only")
	return nil
}

// sibling is another CSR named name from requester r for the key, with
// conditions.
func sibling(t testing.TB, name string, key crypto.Signer, r Requester, conds ...certificatesv1.RequestConditionType) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	s := clientSpec(key)
	s.requester = r
	obj := s.build(t)
	obj.Name = name
	for _, c := range conds {
		obj.Status.Conditions = append(obj.Status.Conditions, cond(c)...)
	}
	return obj
}

func TestBoundTokens(t *testing.T) {
	n1 := boundTo("n1")
	type siblings func(t *testing.T, kind string) []*certificatesv1.CertificateSigningRequest
	none := siblings(nil)
	one := func(key func(t testing.TB, kind string) crypto.Signer, r Requester, conds ...certificatesv1.RequestConditionType) siblings {
		return func(t *testing.T, kind string) []*certificatesv1.CertificateSigningRequest {
			return []*certificatesv1.CertificateSigningRequest{sibling(t, "csr-other", key(t, kind), r, conds...)}
		}
	}
	many := func(n int) siblings {
		return func(t *testing.T, kind string) []*certificatesv1.CertificateSigningRequest {
			var out []*certificatesv1.CertificateSigningRequest
			for i := range n {
				out = append(out, sibling(t, fmt.Sprintf("csr-retry-%d", i), testKey(t, kind), n1))
			}
			return out
		}
	}
	for _, tc := range []struct {
		name      string
		requester Requester
		cn        string
		siblings  siblings
		verdict   Verdict
		reason    string
		asked     bool // a SubjectAccessReview was asked
		contains  []string
	}{
		{name: "bound to the node asked for: approved", requester: n1, siblings: none, verdict: Approve, reason: ReasonAutoApproved, asked: true},
		{name: "bound to a dotted name, asked for it", requester: boundTo("n1.example.com"), cn: "system:node:n1.example.com", verdict: Approve, asked: true},
		{name: "bound to another node: denied naming both, no review", requester: boundTo("n2"), verdict: Deny, reason: ReasonTokenBoundToOtherNode,
			contains: []string{`bound to node "n2"`, `for node "n1"`}},
		{name: "bound to a dotted name, asked for its first label", requester: boundTo("n1.example.com"), verdict: Deny, reason: ReasonTokenBoundToOtherNode,
			contains: []string{`"n1.example.com"`, `"n1"`}},
		{name: "binding group that does not decode", requester: withGroups(bootstrap, binding.Prefix+"n1::x"), verdict: Deny, reason: ReasonInvalidTokenBinding,
			contains: []string{binding.Prefix + "n1::x"}},
		{name: "binding group with a dot", requester: withGroups(bootstrap, binding.Prefix+"n1.x"), verdict: Deny, reason: ReasonInvalidTokenBinding},
		{name: "empty binding", requester: withGroups(bootstrap, binding.Prefix), verdict: Deny, reason: ReasonInvalidTokenBinding},
		{name: "a valid and an invalid binding group", requester: withGroups(n1, binding.Prefix+"-x"), verdict: Deny, reason: ReasonInvalidTokenBinding},
		{name: "binding groups naming two nodes", requester: withGroups(n1, binding.Prefix+"n2"), verdict: Deny, reason: ReasonInvalidTokenBinding,
			contains: []string{binding.Prefix + "n1", binding.Prefix + "n2"}},
		{name: "the same binding twice", requester: withGroups(n1, binding.Prefix+"n1"), verdict: Approve, asked: true},
		{name: "a group that only looks like a binding", requester: withGroups(bootstrap, "system:bootstrappers:tlsboot:nodes:n2"), verdict: Approve, asked: true},
		{name: "unbound token with another key approved elsewhere: not affected", requester: bootstrap,
			siblings: one(anotherKey, bootstrap, certificatesv1.CertificateApproved), verdict: Approve, asked: true},
		{name: "retry with the same key after approval", requester: n1, siblings: one(testKeyT, n1, certificatesv1.CertificateApproved), verdict: Approve, asked: true},
		{name: "retry with the same key while pending", requester: n1, siblings: one(testKeyT, n1), verdict: Approve, asked: true},
		{name: "another key approved: denied", requester: n1, siblings: one(anotherKey, n1, certificatesv1.CertificateApproved),
			verdict: Deny, reason: ReasonTokenAlreadyUsed, contains: []string{`approved request "csr-other"`}},
		{name: "another key pending: denied", requester: n1, siblings: one(anotherKey, n1),
			verdict: Deny, reason: ReasonTokenAlreadyUsed, contains: []string{`pending request "csr-other"`}},
		{name: "another key denied: not counted", requester: n1, siblings: one(anotherKey, n1, certificatesv1.CertificateDenied), verdict: Approve, asked: true},
		{name: "another key failed: not counted", requester: n1, siblings: one(anotherKey, n1, certificatesv1.CertificateFailed), verdict: Approve, asked: true},
		{name: "another requester's key: not counted", requester: n1, siblings: one(anotherKey, withUser(n1, "system:bootstrap:zzzzzz"), certificatesv1.CertificateApproved),
			verdict: Approve, asked: true},
		{name: "another signer: not counted", requester: n1, siblings: func(t *testing.T, kind string) []*certificatesv1.CertificateSigningRequest {
			o := sibling(t, "csr-other", anotherKey(t, kind), n1, certificatesv1.CertificateApproved)
			o.Spec.SignerName = certificatesv1.KubeAPIServerClientSignerName
			return []*certificatesv1.CertificateSigningRequest{o}
		}, verdict: Approve, asked: true},
		{name: "itself in the list: not counted", requester: n1, siblings: func(t *testing.T, kind string) []*certificatesv1.CertificateSigningRequest {
			return []*certificatesv1.CertificateSigningRequest{nil, sibling(t, "csr-test", anotherKey(t, kind), n1)}
		}, verdict: Approve, asked: true},
		{name: "a pending request that does not parse counts as another key", requester: n1, siblings: func(t *testing.T, kind string) []*certificatesv1.CertificateSigningRequest {
			o := sibling(t, "csr-other", testKey(t, kind), n1)
			o.Spec.Request = []byte("garbage")
			return []*certificatesv1.CertificateSigningRequest{o}
		}, verdict: Deny, reason: ReasonTokenAlreadyUsed},
		{name: "a request the cache dropped counts as another key", requester: n1, siblings: func(t *testing.T, kind string) []*certificatesv1.CertificateSigningRequest {
			o := sibling(t, "csr-other", testKey(t, kind), n1)
			o.Spec.Request = nil
			return []*certificatesv1.CertificateSigningRequest{o}
		}, verdict: Deny, reason: ReasonTokenAlreadyUsed},
		{name: "as many retries as allowed", requester: n1, siblings: many(MaxSameRequester), verdict: Approve, asked: true},
		{name: "more retries than allowed", requester: n1, siblings: many(MaxSameRequester + 1), verdict: Deny, reason: ReasonTokenAlreadyUsed,
			contains: []string{fmt.Sprintf("more than %d", MaxSameRequester)}},
		{name: "bound to another node and another key: the binding speaks first", requester: boundTo("n2"), siblings: one(anotherKey, boundTo("n2")),
			verdict: Deny, reason: ReasonTokenBoundToOtherNode},
	} {
		for _, kind := range keyKinds {
			t.Run(tc.name+"/"+kind, func(t *testing.T) {
				s := clientSpec(testKey(t, kind))
				s.requester = tc.requester
				if tc.cn != "" {
					s.cn = tc.cn
				}
				in := Input{Now: t0}
				if tc.siblings != nil {
					in.SameRequester = tc.siblings(t, kind)
				}
				authz := kubeadmAuthz()
				d := decideIn(t, s, in, Options{}, authz)
				if d.Verdict != tc.verdict || (tc.reason != "" && d.Reason != tc.reason) {
					t.Fatalf("got %v %s (%s), want %v %s", d.Verdict, d.Reason, d.Message, tc.verdict, tc.reason)
				}
				if asked := len(authz.asked) > 0; asked != tc.asked {
					t.Errorf("SubjectAccessReviews asked: %q, want some: %v", authz.asked, tc.asked)
				}
				for _, sub := range tc.contains {
					if !strings.Contains(d.Message, sub) {
						t.Errorf("message %q does not say %q", d.Message, sub)
					}
				}
				if d.Rule != "kubelet-client" {
					t.Errorf("rule %q, want kubelet-client", d.Rule)
				}
				assertNamesNoFlag(t, d)
			})
		}
	}
}

// TestBoundTokenRace is the race of two keys for one bound token, decided
// in every order the approver's cache allows: whatever each decision saw
// of the other, the two CSRs are never both approved.
func TestBoundTokenRace(t *testing.T) {
	r := boundTo("n1")
	a := sibling(t, "csr-a", testKey(t, "ecdsa"), r)
	b := sibling(t, "csr-b", testKey(t, "ed25519"), r)
	approved := func(obj *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest {
		o := obj.DeepCopy()
		o.Status.Conditions = cond(certificatesv1.CertificateApproved)
		return o
	}
	decideOne := func(obj *certificatesv1.CertificateSigningRequest, seen ...*certificatesv1.CertificateSigningRequest) Verdict {
		p, _ := New(Options{})
		d, err := p.Decide(t.Context(), Input{CSR: obj, SameRequester: seen, Now: t0}, kubeadmAuthz())
		if err != nil {
			t.Fatal(err)
		}
		return d.Verdict
	}
	// a was stored first, so b's decision always sees a (pending or
	// approved); a's decision sees b or not.
	for _, tc := range []struct {
		name  string
		aSees []*certificatesv1.CertificateSigningRequest
		bSees []*certificatesv1.CertificateSigningRequest
	}{
		{"a decided before b arrived, b sees a approved", nil, []*certificatesv1.CertificateSigningRequest{approved(a)}},
		{"a decided before b arrived, b sees a still pending", nil, []*certificatesv1.CertificateSigningRequest{a}},
		{"both decided concurrently, each seeing the other pending", []*certificatesv1.CertificateSigningRequest{b}, []*certificatesv1.CertificateSigningRequest{a}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			va, vb := decideOne(a, tc.aSees...), decideOne(b, tc.bSees...)
			if va == Approve && vb == Approve {
				t.Fatal("both keys approved for one bound token")
			}
			if vb != Deny {
				t.Fatalf("the later CSR: %v, want deny", vb)
			}
		})
	}
}

func withGroups(r Requester, groups ...string) Requester {
	r.Groups = append(append([]string(nil), r.Groups...), groups...)
	return r
}

func withUser(r Requester, user string) Requester {
	r.Username = user
	return r
}

func testKeyT(t testing.TB, kind string) crypto.Signer { return testKey(t, kind) }

// FuzzBoundRequester decides a well-formed client CSR for node cn from a
// requester with arbitrary groups (comma-separated) and, as another CSR of
// the same requester, one for otherNode with another key in state. It must
// never approve a CSR whose groups bind to another node, bind to no node
// in particular, or whose requester already has an undenied CSR for another
// key.
func FuzzBoundRequester(f *testing.F) {
	f.Add("n1", "system:bootstrappers,"+binding.Prefix+"n1", "n1", 0)
	f.Add("n1", binding.Prefix+"n2", "n1", 1)
	f.Add("a.b", binding.Prefix+"a:b", "a.b", 2)
	f.Add("a.b", binding.Prefix+"a:b,"+binding.Prefix+"a-b", "a.b", 0)
	f.Add("n1", binding.Prefix+"n1::", "n1", 0)
	f.Add("n1", "system:bootstrappers", "n2", 1)
	key, other := testKey(f, "ecdsa"), testKey(f, "ed25519")
	p, _ := New(Options{})
	grant := authorizerFunc(func(context.Context, Requester, string) (bool, error) { return true, nil })
	f.Fuzz(func(t *testing.T, node, groups, otherNode string, state int) {
		if !utf8.ValidString(node) || !utf8.ValidString(otherNode) {
			t.Skip("a common name must be UTF-8 to be encoded at all")
		}
		s := clientSpec(key)
		s.cn = "system:node:" + node
		s.requester = withGroups(Requester{Username: "system:bootstrap:abcdef"}, strings.Split(groups, ",")...)
		obj := s.build(t)
		o := clientSpec(other)
		o.cn, o.requester = "system:node:"+otherNode, s.requester
		sib := o.build(t)
		sib.Name = "other"
		state = (state%3 + 3) % 3
		switch state {
		case 1:
			sib.Status.Conditions = cond(certificatesv1.CertificateApproved)
		case 2:
			sib.Status.Conditions = cond(certificatesv1.CertificateDenied)
		}
		d, err := p.Decide(context.Background(), Input{CSR: obj, SameRequester: []*certificatesv1.CertificateSigningRequest{sib}, Now: t0}, grant)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Message) > MaxMessageBytes {
			t.Fatalf("message of %d bytes", len(d.Message))
		}
		if d.Verdict != Approve {
			return
		}
		bound, isBound, berr := binding.Node(s.requester.Groups)
		if isBound && (berr != nil || bound != node) {
			t.Fatalf("approved %q for groups %q (bound to %q, %v)", node, groups, bound, berr)
		}
		if isBound && state != 2 {
			t.Fatalf("approved a second key for bound groups %q while another CSR is %v", groups, sib.Status.Conditions)
		}
	})
}

// TestTokenDenialsAdvice: the node side (csr.OutcomeError) knows the
// reasons of denials that follow the token, and so does not tell the node
// to delete the CSR and run again with the same token.
func TestTokenDenialsAdvice(t *testing.T) {
	for _, reason := range []string{ReasonTokenBoundToOtherNode, ReasonTokenAlreadyUsed, ReasonInvalidTokenBinding} {
		msg := (&csr.OutcomeError{Name: "n", Reason: reason, Kind: csr.ErrDenied}).Error()
		if !strings.Contains(msg, "same bootstrap token is denied again") || strings.Contains(msg, "kubectl delete csr") {
			t.Errorf("reason %s: node-side message %q", reason, msg)
		}
	}
}
