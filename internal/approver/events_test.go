package approver

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/tlsboot/tlsboot/approval"
)

// Every queued Event is written, one per CSR, even when the writer is
// stopped right after a burst.
func TestEventWriterWritesEveryEvent(t *testing.T) {
	client := fake.NewClientset()
	w := newEventWriter(klog.Background(), client, "replica-1", clocktesting.NewFakePassiveClock(time.Unix(1e9, 0)))
	w.start(t.Context())
	const n = 1200 // more than client-go's broadcaster queue of 1,000
	for i := range n {
		csr := &certificatesv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{Name: "csr-" + string(rune('a'+i%26)) + time.Duration(i).String(), UID: "u"},
			Spec: certificatesv1.CertificateSigningRequestSpec{Username: fmt.Sprintf("system:bootstrap:%06d", i)}} // one requester each: no rate limit
		w.Event(csr, corev1.EventTypeWarning, approval.ReasonNodeAlive, "the node is alive")
	}
	w.Event(&corev1.Node{}, corev1.EventTypeWarning, "Ignored", "not a CSR")
	w.stop()
	list, err := client.CoreV1().Events(metav1.NamespaceDefault).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != n {
		t.Fatalf("%d events written, want %d", len(list.Items), n)
	}
	e := list.Items[0]
	if e.Source.Component != "tlsboot-approver" || e.Source.Host != "replica-1" || e.InvolvedObject.Kind != "CertificateSigningRequest" ||
		e.InvolvedObject.APIVersion != "certificates.k8s.io/v1" || e.Reason != approval.ReasonNodeAlive || e.Count != 1 {
		t.Errorf("event %+v", e)
	}
}

// Denials and CSRs left pending get an Event; an approval gets one only
// from a writer started with approvals.
func TestEventWriterRecordsApprovalsOnlyWhenAsked(t *testing.T) {
	type ev struct{ typ, reason string }
	recorded := []ev{
		{corev1.EventTypeNormal, approval.ReasonAutoApproved},    // an approval
		{corev1.EventTypeWarning, approval.ReasonInvalidRequest}, // a denial
		{corev1.EventTypeWarning, approval.ReasonNoServingScope}, // left pending
		{corev1.EventTypeWarning, approval.ReasonNodeAlive},      // left pending (or denied)
		{corev1.EventTypeNormal, "SomethingElse"},                // not an approval: kept
		{corev1.EventTypeWarning, approval.ReasonAutoApproved},   // not an approval's type: kept
	}
	for _, tc := range []struct {
		name      string
		approvals bool
		want      []string
	}{
		{"default: no Event for an approval", false, []string{"InvalidRequest", "NoServingScope", "NodeAlive", "SomethingElse", "AutoApproved"}},
		{"approvals too", true, []string{"AutoApproved", "InvalidRequest", "NoServingScope", "NodeAlive", "SomethingElse", "AutoApproved"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset()
			rec, stop := StartEventWriter(t.Context(), client, "replica-1", tc.approvals)
			for i, e := range recorded {
				csr := &certificatesv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{Name: "csr-" + string(rune('a'+i)), UID: "u"}}
				rec.Event(csr, e.typ, e.reason, "message")
			}
			stop()
			list, err := client.CoreV1().Events(metav1.NamespaceDefault).List(t.Context(), metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, e := range list.Items {
				got[e.InvolvedObject.Name] = e.Reason
			}
			var reasons []string
			for i := range recorded {
				if r, ok := got["csr-"+string(rune('a'+i))]; ok {
					reasons = append(reasons, r)
				}
			}
			if !slices.Equal(reasons, tc.want) {
				t.Errorf("Events %q, want %q", reasons, tc.want)
			}
		})
	}
}

// A requester gets at most eventsPerRequester Events a minute: the rest
// are counted as dropped (rate_limited), one line is logged per window,
// other requesters and approvals are not affected, and the next window
// starts afresh.
func TestEventWriterRateLimitsPerRequester(t *testing.T) {
	client := fake.NewClientset()
	clk := clocktesting.NewFakePassiveClock(time.Unix(1e9, 0))
	w := newEventWriter(klog.Background(), client, "replica-1", clk)
	w.approvals = true
	var mu sync.Mutex
	dropped := map[string]int{}
	w.dropped = func(why string) {
		mu.Lock()
		defer mu.Unlock()
		dropped[why]++
	}
	w.start(t.Context())
	n := 0
	event := func(user, typ, reason string) {
		n++
		csr := &certificatesv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("csr-%d", n), UID: "u"},
			Spec: certificatesv1.CertificateSigningRequestSpec{Username: user}}
		w.Event(csr, typ, reason, "message")
	}
	const flood, honest = "system:bootstrap:flood0", "system:node:n1"
	for range 100 {
		event(flood, corev1.EventTypeWarning, approval.ReasonSubjectNotAllowed)
	}
	for range 3 {
		event(flood, corev1.EventTypeNormal, approval.ReasonAutoApproved) // approvals are not limited
	}
	event(honest, corev1.EventTypeWarning, approval.ReasonNodeAlive)
	clk.SetTime(clk.Now().Add(eventWindow))
	event(flood, corev1.EventTypeWarning, approval.ReasonSubjectNotAllowed) // a new window
	w.stop()
	list, err := client.CoreV1().Events(metav1.NamespaceDefault).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	byReason := map[string]int{}
	for _, e := range list.Items {
		byReason[e.Reason]++
	}
	if byReason[approval.ReasonSubjectNotAllowed] != eventsPerRequester+1 || byReason[approval.ReasonAutoApproved] != 3 || byReason[approval.ReasonNodeAlive] != 1 {
		t.Errorf("Events written by reason %v, want %d %s (10 in the first minute, 1 in the next), 3 %s, 1 %s", byReason,
			eventsPerRequester+1, approval.ReasonSubjectNotAllowed, approval.ReasonAutoApproved, approval.ReasonNodeAlive)
	}
	if dropped["rate_limited"] != 100-eventsPerRequester || len(dropped) != 1 {
		t.Errorf("dropped %v, want %d rate_limited", dropped, 100-eventsPerRequester)
	}
}

// The limiter tracks at most maxEventRequesters requesters: past that it
// refuses new ones until a window ends, then forgets the ended windows.
func TestEventLimiterIsBounded(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Unix(1e9, 0))
	l := newEventLimiter(clk, 1, time.Minute)
	for i := range maxEventRequesters {
		if ok, _ := l.allow(fmt.Sprint(i)); !ok {
			t.Fatalf("requester %d refused", i)
		}
	}
	if ok, _ := l.allow("one too many"); ok {
		t.Error("a requester past maxEventRequesters was allowed")
	}
	clk.SetTime(clk.Now().Add(time.Minute))
	if ok, _ := l.allow("one too many"); !ok {
		t.Error("still refused once every window ended")
	}
	if len(l.seen) != 1 {
		t.Errorf("%d requesters tracked, want 1", len(l.seen))
	}
	if ok, first := (*eventLimiter)(nil).allow("x"); !ok || first {
		t.Error("a nil limiter refused")
	}
}
