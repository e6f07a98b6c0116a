package rotation

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/tlsboot/tlsboot/certstore"
	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/internal/testpki"
)

// *certstore.Store is the Store the agent uses.
var _ Store = (*certstore.Store)(nil)

// testCA signs like kube-controller-manager: NotBefore = now - 5m,
// NotAfter = now + ttl (short-lived).
type testCA struct{ *testpki.CA }

func newCA(t *testing.T) *testCA { return &testCA{testpki.NewCA(t)} }

// issue returns a PEM certificate for pub with the given names.
func (ca *testCA) issue(t *testing.T, pub crypto.PublicKey, subject pkix.Name, dns []string, ips []net.IP, now time.Time, ttl time.Duration) []byte {
	t.Helper()
	return ca.Issue(t, testpki.Spec{Key: pub, Subject: subject, DNSNames: dns, IPs: ips,
		NotBefore: now.Add(-5 * time.Minute), NotAfter: now.Add(ttl)}).CertPEM
}

// storeCert puts a new certificate for node into store, issued at now.
func (ca *testCA) storeCert(t *testing.T, store *certstore.Store, node string, now time.Time, ttl time.Duration) {
	t.Helper()
	key, err := csr.GenerateKey(csr.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := csr.MarshalPrivateKeyPEM(key)
	req := csr.NodeClient(node, key.Public())
	if _, err := store.Update(ca.issue(t, key.Public(), req.Subject, nil, nil, now, ttl), keyPEM); err != nil {
		t.Fatal(err)
	}
}

// signer answers CSRs created in a fake clientset, like a controller.
type signer struct {
	ca    *testCA
	clock *clocktesting.FakeClock
	ttl   time.Duration
	// decide returns how to answer a CSR: "sign", "deny", "dropSANs",
	// "ca" (a CA certificate) or "foreign" (signed by another CA).
	decide func(n int) string

	mu    sync.Mutex // guards names
	names []string   // CSRs seen, in order
}

func (s *signer) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.names...)
}

// watch signs CSRs until ctx ends.
func (s *signer) watch(ctx context.Context, t *testing.T, client kubernetes.Interface) {
	w, err := client.CertificatesV1().CertificateSigningRequests().Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Error(err)
		return
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-w.ResultChan():
			if obj, ok := ev.Object.(*certificatesv1.CertificateSigningRequest); ok && ev.Type == watch.Added {
				// The fake clientset's watch hands out the object its
				// tracker stores and lists to other readers: answer
				// on a copy (writing the shared one was a data race
				// that -race -count=20 caught).
				s.answer(ctx, t, client, obj.DeepCopy())
			}
		}
	}
}

func (s *signer) answer(ctx context.Context, t *testing.T, client kubernetes.Interface, obj *certificatesv1.CertificateSigningRequest) {
	s.mu.Lock()
	s.names = append(s.names, obj.Name)
	n := len(s.names)
	s.mu.Unlock()
	block, _ := pem.Decode(obj.Spec.Request)
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Error(err)
		return
	}
	cond := certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "Test"}
	switch s.decide(n) {
	case "deny":
		cond.Type = certificatesv1.CertificateDenied
	case "dropSANs":
		obj.Status.Certificate = s.ca.issue(t, req.PublicKey, req.Subject, nil, nil, s.clock.Now(), s.ttl)
	case "ca": // a CA certificate for the requested key and names
		obj.Status.Certificate = s.ca.Issue(t, testpki.Spec{Key: req.PublicKey, Subject: req.Subject, DNSNames: req.DNSNames, IPs: req.IPAddresses,
			NotBefore: s.clock.Now().Add(-5 * time.Minute), NotAfter: s.clock.Now().Add(s.ttl), IsCA: true,
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}).CertPEM
	case "foreign": // a faithful certificate from another CA
		obj.Status.Certificate = newCA(t).issue(t, req.PublicKey, req.Subject, req.DNSNames, req.IPAddresses, s.clock.Now(), s.ttl)
	default:
		obj.Status.Certificate = s.ca.issue(t, req.PublicKey, req.Subject, req.DNSNames, req.IPAddresses, s.clock.Now(), s.ttl)
	}
	obj.Status.Conditions = append(obj.Status.Conditions, cond)
	if _, err := client.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
		t.Error(err)
	}
}

// events collects hook calls.
type events struct {
	rotated chan Reason
	failed  chan Failure
}

func newEvents() *events {
	return &events{rotated: make(chan Reason, 100), failed: make(chan Failure, 100)}
}

func (e *events) hooks() Hooks {
	return Hooks{
		Rotated: func(_ string, r Reason, _ time.Duration) { e.rotated <- r },
		Failed:  func(_ string, f Failure, _ error) { e.failed <- f },
	}
}

func (e *events) wantRotated(t *testing.T, want Reason) {
	t.Helper()
	select {
	case got := <-e.rotated:
		if got != want {
			t.Fatalf("rotated for %q, want %q", got, want)
		}
	case f := <-e.failed:
		t.Fatalf("failed (%s), want rotated for %q", f, want)
	case <-time.After(30 * time.Second):
		t.Fatalf("no rotation for %q", want)
	}
}

func (e *events) wantFailed(t *testing.T, want Failure) {
	t.Helper()
	select {
	case got := <-e.failed:
		if got != want {
			t.Fatalf("failed with %q, want %q", got, want)
		}
	case r := <-e.rotated:
		t.Fatalf("rotated (%s), want failure %q", r, want)
	case <-time.After(30 * time.Second):
		t.Fatalf("no failure %q", want)
	}
}

// waitSleeping waits until the manager (and nothing else) waits on the
// fake clock: the loop is asleep.
func waitSleeping(t *testing.T, clk *clocktesting.FakeClock) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !clk.HasWaiters() {
		if time.Now().After(deadline) {
			t.Fatal("the manager never went to sleep")
		}
		time.Sleep(time.Millisecond)
	}
}

// unauthorized makes every CSR create of client fail with 401 (which
// csrwait.Submit reports as a *csr.ServerError).
func unauthorized(client *fake.Clientset) {
	client.PrependReactor("create", "certificatesigningrequests", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewUnauthorized("certificate rejected")
	})
}

// errUnauthorized is a 401 as csrwait and the agent's Verify report it.
func errUnauthorized() error {
	return csr.ClassifyServerError(apierrors.NewUnauthorized("certificate rejected"), "https://api", "verifying", "")
}
