package approver

import (
	"context"
	"crypto"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tlsboot/tlsboot/approval"
	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/token/binding"
)

// boundGroups are the groups of a token bound to node.
func boundGroups(t *testing.T, node string) []string {
	t.Helper()
	g, err := binding.Group(node)
	if err != nil {
		t.Fatal(err)
	}
	return append(slices.Clone(bootstrapUser), g)
}

// clientCSRFor is the CSR name, for node's client certificate with key, from
// user in groups.
func clientCSRFor(t *testing.T, name, node string, key crypto.Signer, user string, groups []string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	r := csr.NodeClient(node, key.Public())
	req, err := r.PEM(key)
	if err != nil {
		t.Fatal(err)
	}
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Now())},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request: req, SignerName: r.SignerName, Usages: r.Usages, Username: user, Groups: groups,
		},
	}
}

func newKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := csr.GenerateKey(csr.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The controller enforces a bound token from end to end against a fake API
// server: the bound node only, one key, a retry with the same key allowed.
func TestBoundTokenEnforced(t *testing.T) {
	client := fake.NewClientset()
	allowSARs(client, true, nil)
	h := start(t, client, nil)
	const user = "system:bootstrap:abcdef"
	groups := boundGroups(t, "n1.example.com")
	key := newKey(t)

	h.create(t, clientCSRFor(t, "as-other", "n2", key, user, groups))
	if c := h.waitCondition(t, "as-other", certificatesv1.CertificateDenied); c.Reason != approval.ReasonTokenBoundToOtherNode {
		t.Fatalf("CSR for another node: %s %q, want %s", c.Reason, c.Message, approval.ReasonTokenBoundToOtherNode)
	}
	h.create(t, clientCSRFor(t, "first", "n1.example.com", key, user, groups))
	h.waitCondition(t, "first", certificatesv1.CertificateApproved)
	h.create(t, clientCSRFor(t, "retry", "n1.example.com", key, user, groups))
	h.waitCondition(t, "retry", certificatesv1.CertificateApproved)
	h.create(t, clientCSRFor(t, "second-key", "n1.example.com", newKey(t), user, groups))
	if c := h.waitCondition(t, "second-key", certificatesv1.CertificateDenied); c.Reason != approval.ReasonTokenAlreadyUsed {
		t.Fatalf("CSR for a second key: %s %q, want %s", c.Reason, c.Message, approval.ReasonTokenAlreadyUsed)
	}
	// Another token bound to the same node is another requester.
	h.create(t, clientCSRFor(t, "other-token", "n1.example.com", newKey(t), "system:bootstrap:zzzzzz", groups))
	h.waitCondition(t, "other-token", certificatesv1.CertificateApproved)
}

// TestBoundTokenRace creates CSRs with different keys from one bound token
// all at once, decided by 8 workers: at most one is approved, whatever the
// interleaving, and every one is decided.
func TestBoundTokenRace(t *testing.T) {
	for round := range 3 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			client := fake.NewClientset()
			allowSARs(client, true, nil)
			start(t, client, func(o *Options) { o.Workers = 8 })
			groups := boundGroups(t, "n1")
			const n = 12
			objs := make([]*certificatesv1.CertificateSigningRequest, n)
			for i := range objs {
				objs[i] = clientCSRFor(t, fmt.Sprintf("racer-%d", i), "n1", newKey(t), "system:bootstrap:abcdef", groups)
			}
			var wg sync.WaitGroup
			for _, obj := range objs {
				wg.Go(func() {
					if _, err := client.CertificatesV1().CertificateSigningRequests().Create(t.Context(), obj, metav1.CreateOptions{}); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			approved := 0
			err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
				list, err := client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
				if err != nil {
					return false, err
				}
				approved = 0
				for _, obj := range list.Items {
					if !approval.Decided(&obj) {
						return false, nil
					}
					for _, c := range obj.Status.Conditions {
						if c.Type == certificatesv1.CertificateApproved {
							approved++
						} else if c.Reason != approval.ReasonTokenAlreadyUsed {
							return false, fmt.Errorf("CSR %s: %s %q, want %s", obj.Name, c.Reason, c.Message, approval.ReasonTokenAlreadyUsed)
						}
					}
				}
				return len(list.Items) == n, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if approved > 1 {
				t.Fatalf("%d CSRs with different keys from one bound token approved, want at most 1", approved)
			}
		})
	}
}

func TestIndexByBoundRequester(t *testing.T) {
	bound := []string{"system:bootstrappers", binding.Prefix + "n1"}
	for _, tc := range []struct {
		name   string
		groups []string
		conds  []certificatesv1.RequestConditionType
		want   []string
	}{
		{"unbound", bootstrapUser, nil, nil},
		{"bound, pending", bound, nil, []string{"system:bootstrap:abcdef"}},
		{"bound, approved", bound, []certificatesv1.RequestConditionType{certificatesv1.CertificateApproved}, []string{"system:bootstrap:abcdef"}},
		{"bound, denied", bound, []certificatesv1.RequestConditionType{certificatesv1.CertificateDenied}, nil},
		{"bound, failed", bound, []certificatesv1.RequestConditionType{certificatesv1.CertificateApproved, certificatesv1.CertificateFailed}, nil},
		{"binding that does not decode is still indexed", []string{binding.Prefix + "a::b"}, nil, []string{"system:bootstrap:abcdef"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := &certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{Username: "system:bootstrap:abcdef", Groups: tc.groups}}
			for _, c := range tc.conds {
				obj.Status.Conditions = append(obj.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{Type: c, Status: corev1.ConditionTrue})
			}
			got, err := indexByBoundRequester(obj)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("indexByBoundRequester = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if got, _ := indexByBoundRequester("not a CSR"); got != nil {
		t.Errorf("indexByBoundRequester(string) = %q", got)
	}
}

// The policy gets the other CSRs of a bound requester from the cache, and
// none for an unbound one.
func TestInputSameRequester(t *testing.T) {
	const user = "system:bootstrap:abcdef"
	bound := boundGroups(t, "n1")
	client := fake.NewClientset(
		clientCSRFor(t, "a", "n1", newKey(t), user, bound),
		clientCSRFor(t, "b", "n1", newKey(t), user, bound),
		clientCSRFor(t, "other-user", "n1", newKey(t), "system:bootstrap:zzzzzz", bound),
		clientCSRFor(t, "unbound", "n1", newKey(t), user, bootstrapUser),
	)
	ctrl := startCaches(t, client, approval.Options{})
	for _, tc := range []struct {
		name string
		want []string
	}{{"a", []string{"a", "b"}}, {"other-user", []string{"other-user"}}, {"unbound", nil}} {
		obj, err := ctrl.csrs[certificatesv1.KubeAPIServerClientKubeletSignerName].Lister().Get(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		in, err := ctrl.input(obj)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, o := range in.SameRequester {
			got = append(got, o.Name)
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: SameRequester %q, want %q", tc.name, got, tc.want)
		}
	}
}
