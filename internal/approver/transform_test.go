package approver

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tlsboot/tlsboot/approval"
	"github.com/tlsboot/tlsboot/csr"
)

func withConditions(obj *certificatesv1.CertificateSigningRequest, types ...certificatesv1.RequestConditionType) *certificatesv1.CertificateSigningRequest {
	obj = obj.DeepCopy()
	for _, typ := range types {
		obj.Status.Conditions = append(obj.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{Type: typ, Status: corev1.ConditionTrue})
	}
	return obj
}

// Once decided, a CSR keeps neither its request nor its certificate; an
// approved CSR of a bound requester keeps the hash of its public key (for
// the one-key check), others no hash; a requester's own hash annotation is
// never kept; transforming again changes nothing.
func TestTransformDecidedCSR(t *testing.T) {
	bound := newCSR(t, "bound", csr.Request{}, "system:bootstrap:abcdef", boundGroups(t, "bound"))
	bound.Annotations = map[string]string{approval.PublicKeyHashAnnotation: "forged"}
	unbound := newCSR(t, "unbound", csr.Request{}, "system:bootstrap:abcdef", bootstrapUser)
	hash := approval.PublicKeyHash(bound.Spec.Request)
	cert := []byte("-----BEGIN CERTIFICATE-----\n" + string(bytes.Repeat([]byte("A"), 1000)) + "\n-----END CERTIFICATE-----\n")
	for _, tc := range []struct {
		name        string
		in          *certificatesv1.CertificateSigningRequest
		wantRequest bool
		wantCert    bool
		wantHash    string
	}{
		{"pending, bound: request kept, no hash", bound, true, false, ""},
		{"approved, bound: hash only", withConditions(bound, certificatesv1.CertificateApproved), false, false, hash},
		{"approved and signed, bound: hash only", func() *certificatesv1.CertificateSigningRequest {
			o := withConditions(bound, certificatesv1.CertificateApproved)
			o.Status.Certificate = cert
			return o
		}(), false, false, hash},
		{"approved, unbound: nothing", withConditions(unbound, certificatesv1.CertificateApproved), false, false, ""},
		{"denied, bound: nothing", withConditions(bound, certificatesv1.CertificateDenied), false, false, ""},
		{"approved then failed, bound: nothing", withConditions(bound, certificatesv1.CertificateApproved, certificatesv1.CertificateFailed), false, false, ""},
		{"a certificate without a condition: kept, so that it stays decided", func() *certificatesv1.CertificateSigningRequest {
			o := unbound.DeepCopy()
			o.Status.Certificate = cert
			return o
		}(), false, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _ := transformCSR(tc.in.DeepCopy())
			got := out.(*certificatesv1.CertificateSigningRequest)
			for pass := range 2 {
				if (len(got.Spec.Request) > 0) != tc.wantRequest || (len(got.Status.Certificate) > 0) != tc.wantCert {
					t.Errorf("pass %d: request %d bytes, certificate %d bytes; want request %v, certificate %v", pass, len(got.Spec.Request), len(got.Status.Certificate), tc.wantRequest, tc.wantCert)
				}
				if h := got.Annotations[approval.PublicKeyHashAnnotation]; h != tc.wantHash {
					t.Errorf("pass %d: key hash %q, want %q", pass, h, tc.wantHash)
				}
				if approval.Decided(got) != approval.Decided(tc.in) || got.Spec.Username != tc.in.Spec.Username || len(got.Status.Conditions) != len(tc.in.Status.Conditions) {
					t.Errorf("pass %d: decided %v, requester %q, %d conditions; want %v, %q, %d", pass, approval.Decided(got), got.Spec.Username, len(got.Status.Conditions),
						approval.Decided(tc.in), tc.in.Spec.Username, len(tc.in.Status.Conditions))
				}
				again, _ := transformCSR(got)
				got = again.(*certificatesv1.CertificateSigningRequest)
			}
		})
	}
}

// The pending budget keeps a requester's pending requests up to its limit,
// counts each CSR once however often it is transformed, frees what a
// decided or deleted CSR held, and is per requester.
func TestPendingBudget(t *testing.T) {
	b := newPendingBudget(3000)
	pending := func(uid, user string, n int) *certificatesv1.CertificateSigningRequest {
		return &certificatesv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{Name: uid, UID: types.UID(uid)},
			Spec: certificatesv1.CertificateSigningRequestSpec{Username: user, Request: bytes.Repeat([]byte("A"), n)}}
	}
	kept := func(obj *certificatesv1.CertificateSigningRequest) bool {
		t.Helper()
		out, _ := b.transformCSR(obj)
		got := out.(*certificatesv1.CertificateSigningRequest)
		if OverPendingBudget(got) == (len(got.Spec.Request) > 0) {
			t.Fatalf("%s: request %d bytes, OverPendingBudget %v", obj.Name, len(got.Spec.Request), OverPendingBudget(got))
		}
		if again, _ := b.transformCSR(got); OverPendingBudget(again.(*certificatesv1.CertificateSigningRequest)) != OverPendingBudget(got) {
			t.Fatalf("%s: transforming again changed OverPendingBudget", obj.Name)
		}
		return len(got.Spec.Request) > 0
	}
	const user, other = "system:bootstrap:abcdef", "system:node:n1"
	a, bb, c := pending("a", user, 1000), pending("b", user, 1000), pending("c", user, 1000)
	for _, obj := range []*certificatesv1.CertificateSigningRequest{a, bb, c, a, bb, c} { // twice: a relist
		if !kept(obj) {
			t.Fatalf("%s dropped within the budget", obj.Name)
		}
	}
	if got := b.pendingBytes(user); got != 3000 {
		t.Fatalf("pendingBytes = %d, want 3000 (each CSR counted once)", got)
	}
	if kept(pending("d", user, 1)) {
		t.Fatal("a request past the budget was kept")
	}
	if !kept(pending("x", other, 3000)) {
		t.Fatal("another requester's request was dropped for the first one's budget")
	}
	// a is decided: its bytes are free again.
	if out, _ := b.transformCSR(withConditions(a, certificatesv1.CertificateApproved)); len(out.(*certificatesv1.CertificateSigningRequest).Spec.Request) > 0 {
		t.Fatal("a decided CSR kept its request")
	}
	if !kept(pending("e", user, 1000)) {
		t.Fatal("the budget a decided CSR held was not freed")
	}
	// b is deleted (the informer's delete handler releases it).
	b.release(bb)
	if !kept(pending("f", user, 1000)) {
		t.Fatal("the budget a deleted CSR held was not freed")
	}
	if got := b.pendingBytes(user); got != 3000 {
		t.Errorf("pendingBytes = %d, want 3000", got)
	}
}

// Through the informer: a requester's pending requests past the budget are
// dropped from the cache and denied by name (PendingBytesExceeded), the
// others wait as usual, and deleting a pending CSR frees its budget.
func TestPendingBudgetDeniedByName(t *testing.T) {
	client := fake.NewClientset()
	allowSARs(client, false, nil) // NotAuthorized: the CSRs within the budget stay pending
	h := start(t, client, nil)
	const user = "system:bootstrap:abcdef"
	objs := make([]*certificatesv1.CertificateSigningRequest, 6)
	for i := range objs {
		objs[i] = newCSR(t, fmt.Sprintf("n%d", i), csr.Request{}, user, bootstrapUser)
		objs[i].UID = types.UID(objs[i].Name)
	}
	h.ctrl.budget.mu.Lock()
	h.ctrl.budget.limit = len(objs[0].Spec.Request) + len(objs[1].Spec.Request) + 10 // two fit
	h.ctrl.budget.mu.Unlock()
	for _, obj := range objs {
		h.create(t, obj)
	}
	for _, obj := range objs[2:] {
		if c := h.waitCondition(t, obj.Name, certificatesv1.CertificateDenied); c.Reason != approval.ReasonPendingBytesExceeded || !strings.Contains(c.Message, user) {
			t.Errorf("%s: %s %q, want %s naming %s", obj.Name, c.Reason, c.Message, approval.ReasonPendingBytesExceeded, user)
		}
	}
	lister := h.ctrl.csrs[certificatesv1.KubeAPIServerClientKubeletSignerName].Lister()
	for _, obj := range objs[:2] {
		got, err := client.CertificatesV1().CertificateSigningRequests().Get(t.Context(), obj.Name, metav1.GetOptions{})
		if err != nil || len(got.Status.Conditions) != 0 {
			t.Errorf("%s, within the budget: %v, conditions %+v; want pending", obj.Name, err, got.Status.Conditions)
		}
		if cached, err := lister.Get(obj.Name); err != nil || len(cached.Spec.Request) == 0 {
			t.Errorf("%s, within the budget: not cached with its request (%v)", obj.Name, err)
		}
	}
	if err := client.CertificatesV1().CertificateSigningRequests().Delete(t.Context(), "n0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	late := newCSR(t, "late", csr.Request{}, user, bootstrapUser)
	late.UID = "late"
	err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return h.ctrl.budget.pendingBytes(user) == len(objs[1].Spec.Request), nil
	})
	if err != nil {
		t.Fatalf("deleting a pending CSR did not free its budget: %d bytes held", h.ctrl.budget.pendingBytes(user))
	}
	h.create(t, late)
	err = wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		cached, err := lister.Get("late")
		return err == nil && len(cached.Spec.Request) > 0, nil
	})
	if err != nil {
		t.Errorf("a CSR created after a pending one was deleted was not cached with its request")
	}
}
