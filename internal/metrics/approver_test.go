package metrics

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tlsboot/tlsboot/approval"
)

func TestApproverMetrics(t *testing.T) {
	m := NewApprover()
	reg := NewRegistry()
	reg.MustRegister(m)
	hooks := m.Hooks()
	const client = "kubernetes.io/kube-apiserver-client-kubelet"
	hooks.Decided(client, approval.Decision{Verdict: approval.Approve, Reason: approval.ReasonAutoApproved}, 2*time.Second)
	hooks.Decided(client, approval.Decision{Verdict: approval.Deny, Reason: approval.ReasonBadUsages}, time.Second)
	hooks.SubjectAccessReview(false, nil)
	hooks.SubjectAccessReview(true, nil)
	hooks.SubjectAccessReview(false, errors.New("boom"))
	hooks.Leading(true)
	m.SetPending(func() map[string]int { return map[string]int{client: 3} })

	rec := httptest.NewRecorder()
	(&Server{Registry: reg}).Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`tlsboot_approver_decisions_total{reason="AutoApproved",result="approve",signer="` + client + `"} 1`,
		`tlsboot_approver_decisions_total{reason="UsagesNotAllowed",result="deny",signer="` + client + `"} 1`,
		`tlsboot_approver_decision_seconds_count{result="approve",signer="` + client + `"} 1`,
		`tlsboot_approver_subject_access_reviews_total{source="api"} 2`,
		`tlsboot_approver_subject_access_reviews_total{source="cache"} 1`,
		`tlsboot_approver_subject_access_review_errors_total 1`,
		`tlsboot_approver_leader 1`,
		`tlsboot_approver_pending_csrs{signer="` + client + `"} 3`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestApproverMetricsWithoutPendingSource(t *testing.T) {
	reg := NewRegistry()
	reg.MustRegister(NewApprover())
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}
