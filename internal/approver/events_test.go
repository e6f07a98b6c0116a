package approver

import (
	"slices"
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
		csr := &certificatesv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{Name: "csr-" + string(rune('a'+i%26)) + time.Duration(i).String(), UID: "u"}}
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
