package approval

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
)

// R7: a node CSR's subject carries a CN and an O, nothing else. Before
// SubjectNotAllowed, every deny case here was approved (and the signer
// copied the attributes into the certificate).
func TestSubjectChecks(t *testing.T) {
	attr := func(oid asn1.ObjectIdentifier, values ...string) func(*testing.T, *csrSpec) {
		return func(_ *testing.T, s *csrSpec) {
			for _, v := range values {
				s.extraNames = append(s.extraNames, pkix.AttributeTypeAndValue{Type: oid, Value: v})
			}
		}
	}
	oid := func(arc ...int) asn1.ObjectIdentifier { return append(asn1.ObjectIdentifier{2, 5, 4}, arc...) }
	cases := []requestCase{
		{name: "CN and O only", mod: func(*testing.T, *csrSpec) {}, verdict: Approve},
		{name: "OU", mod: attr(oid(11), "padding"), verdict: Deny, reason: ReasonSubjectNotAllowed},
		{name: "600 OUs of 60 bytes (the flood's padding, 58 KB)", mod: attr(oid(11), strings.Split(strings.Repeat(strings.Repeat("x", 60)+",", 600), ",")[:600]...),
			verdict: Deny, reason: ReasonSubjectNotAllowed},
		{name: "L", mod: attr(oid(7), "Paris"), verdict: Deny, reason: ReasonSubjectNotAllowed},
		{name: "ST", mod: attr(oid(8), "IDF"), verdict: Deny, reason: ReasonSubjectNotAllowed},
		{name: "C", mod: attr(oid(6), "FR"), verdict: Deny, reason: ReasonSubjectNotAllowed},
		{name: "street", mod: attr(oid(9), "1 rue"), verdict: Deny, reason: ReasonSubjectNotAllowed},
		{name: "postal code", mod: attr(oid(17), "75001"), verdict: Deny, reason: ReasonSubjectNotAllowed},
		{name: "serialNumber", mod: attr(oid(5), "42"), verdict: Deny, reason: ReasonSubjectNotAllowed},
		{name: "an unknown attribute", mod: attr(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 7}, "x"), verdict: Deny, reason: ReasonSubjectNotAllowed},
		{name: "an email address in the subject", mod: attr(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, "a@example.com"), verdict: Deny, reason: ReasonSubjectNotAllowed},
		// The CN and O checks still come first.
		{name: "two CNs and an OU", mod: func(t *testing.T, s *csrSpec) {
			s.extraNames = []pkix.AttributeTypeAndValue{{Type: oidCommonName, Value: s.cn}, {Type: oid(11), Value: "x"}}
		}, verdict: Deny, reason: ReasonBadCommonName},
	}
	for _, signer := range bothSigners {
		for _, tc := range cases {
			for _, kind := range keyKinds {
				t.Run(signer+"/"+tc.name+"/"+kind, func(t *testing.T) {
					s := specFor(signer, testKey(t, kind))
					tc.mod(t, &s)
					d := decideIn(t, s, Input{Node: nodeN1(), Cluster: testCluster(), Now: t0}, servingScope, kubeadmAuthz())
					if d.Verdict != tc.verdict || d.Reason != tc.reason && tc.reason != "" {
						t.Fatalf("got %v %s (%s), want %v %s", d.Verdict, d.Reason, d.Message, tc.verdict, tc.reason)
					}
					if len(d.Message) > MaxMessageBytes {
						t.Errorf("message of %d bytes", len(d.Message))
					}
				})
			}
		}
	}
}

// The denial names the attributes, a few of them.
func TestSubjectNotAllowedMessage(t *testing.T) {
	s := clientSpec(testKey(t, "ecdsa"))
	for _, v := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		s.extraNames = append(s.extraNames, pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 11}, Value: v})
	}
	s.extraNames = append(s.extraNames, pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 7}, Value: "x"})
	d := decideIn(t, s, Input{Now: t0}, Options{}, kubeadmAuthz())
	if d.Reason != ReasonSubjectNotAllowed || !strings.Contains(d.Message, "8 attributes other than CN and O") || !strings.Contains(d.Message, `"OU"`) {
		t.Errorf("%s %q, want %s naming 8 attributes and OU", d.Reason, d.Message, ReasonSubjectNotAllowed)
	}
}

// B2 holds for another CSR of the same bound token whose request the cache
// dropped once it was decided: the PublicKeyHashAnnotation kept in its
// place tells the keys apart.
func TestBoundTokenDroppedRequest(t *testing.T) {
	n1 := boundTo("n1")
	dropped := func(t *testing.T, hash string, conds ...certificatesv1.RequestConditionType) *certificatesv1.CertificateSigningRequest {
		o := sibling(t, "earlier", testKey(t, "rsa"), n1, conds...)
		o.Spec.Request = nil
		if hash != "" {
			o.Annotations = map[string]string{PublicKeyHashAnnotation: hash}
		}
		return o
	}
	for _, tc := range []struct {
		name    string
		key     string // this CSR's key kind; the earlier one is "rsa"
		other   func(t *testing.T) *certificatesv1.CertificateSigningRequest
		verdict Verdict
	}{
		{"approved, dropped, same key: a retry", "rsa", func(t *testing.T) *certificatesv1.CertificateSigningRequest {
			return dropped(t, hashOf(t, "rsa"), certificatesv1.CertificateApproved)
		}, Approve},
		{"approved, dropped, another key", "ecdsa", func(t *testing.T) *certificatesv1.CertificateSigningRequest {
			return dropped(t, hashOf(t, "rsa"), certificatesv1.CertificateApproved)
		}, Deny},
		{"approved, dropped, no hash: another key", "rsa", func(t *testing.T) *certificatesv1.CertificateSigningRequest {
			return dropped(t, "", certificatesv1.CertificateApproved)
		}, Deny},
		{"a requester's own hash on a CSR that has its request is not read", "ecdsa", func(t *testing.T) *certificatesv1.CertificateSigningRequest {
			o := sibling(t, "earlier", testKey(t, "rsa"), n1)
			o.Annotations = map[string]string{PublicKeyHashAnnotation: hashOf(t, "ecdsa")}
			return o
		}, Deny},
		{"denied, dropped: does not count", "ecdsa", func(t *testing.T) *certificatesv1.CertificateSigningRequest {
			return dropped(t, "", certificatesv1.CertificateDenied)
		}, Approve},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := clientSpec(testKey(t, tc.key))
			s.requester = n1
			d := decideIn(t, s, Input{SameRequester: []*certificatesv1.CertificateSigningRequest{tc.other(t)}, Now: t0}, Options{}, kubeadmAuthz())
			if d.Verdict != tc.verdict || (tc.verdict == Deny && d.Reason != ReasonTokenAlreadyUsed) {
				t.Errorf("got %v %s (%s), want %v", d.Verdict, d.Reason, d.Message, tc.verdict)
			}
		})
	}
}

// hashOf is PublicKeyHash of a client request for testKey(kind).
func hashOf(t *testing.T, kind string) string {
	t.Helper()
	h := PublicKeyHash(clientSpec(testKey(t, kind)).build(t).Spec.Request)
	if len(h) != 64 {
		t.Fatalf("PublicKeyHash = %q", h)
	}
	return h
}

// A request the cache dropped for its requester's pending budget is denied
// unread, naming the requester; a request it did not drop is decided as
// usual whatever the flag says.
func TestPendingBudgetDenied(t *testing.T) {
	s := clientSpec(testKey(t, "ecdsa"))
	s.rawRequest = []byte{}
	d := decideIn(t, s, Input{OverPendingBudget: true, Now: t0}, Options{}, kubeadmAuthz())
	if d.Verdict != Deny || d.Reason != ReasonPendingBytesExceeded || !strings.Contains(d.Message, bootstrap.Username) || !strings.Contains(d.Message, "8 MiB") {
		t.Errorf("got %v %s %q, want Deny %s naming the requester and 8 MiB", d.Verdict, d.Reason, d.Message, ReasonPendingBytesExceeded)
	}
	s.rawRequest = nil
	if d := decideIn(t, s, Input{OverPendingBudget: true, Now: t0}, Options{}, kubeadmAuthz()); d.Verdict != Approve {
		t.Errorf("a request that is there: got %v %s (%s), want approved", d.Verdict, d.Reason, d.Message)
	}
}
