package approver

import (
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2"
	clocktesting "k8s.io/utils/clock/testing"
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
		w.Event(csr, corev1.EventTypeNormal, "AutoApproved", "approved")
	}
	w.Event(&corev1.Node{}, corev1.EventTypeNormal, "Ignored", "not a CSR")
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
		e.InvolvedObject.APIVersion != "certificates.k8s.io/v1" || e.Reason != "AutoApproved" || e.Count != 1 {
		t.Errorf("event %+v", e)
	}
}
