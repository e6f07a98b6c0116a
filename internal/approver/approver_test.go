package approver

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/tlsboot/tlsboot/approval"
	"github.com/tlsboot/tlsboot/csr"
)

// tenSlash8 is a serving scope for the tests' node addresses.
var tenSlash8 = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}

var bootstrapUser = []string{"system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token"}

// newCSR builds a CSR from r as the requester user in groups.
func newCSR(t *testing.T, name string, r csr.Request, user string, groups []string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	key, err := csr.GenerateKey(csr.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	if r.SignerName == "" {
		r = csr.NodeClient(name, key.Public())
	}
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

// allowSARs makes the fake API server answer every SubjectAccessReview with
// allowed (or err) and counts them.
func allowSARs(client *fake.Clientset, allowed bool, err error) *atomic.Int32 {
	var n atomic.Int32
	client.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		n.Add(1)
		sar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview).DeepCopy()
		sar.Status.Allowed = allowed
		return true, sar, err
	})
	return &n
}

type harness struct {
	client   *fake.Clientset
	ctrl     *Controller
	recorder *record.FakeRecorder
	done     chan error
	cancel   context.CancelFunc

	mu        sync.Mutex // guards decisions
	decisions []approval.Decision
}

func start(t *testing.T, client *fake.Clientset, mutate func(*Options)) *harness {
	t.Helper()
	policy, err := approval.New(approval.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{client: client, recorder: record.NewFakeRecorder(100), done: make(chan error, 1)}
	opts := Options{Client: client, Policy: policy, Recorder: h.recorder, Workers: 2, MaxRetryDelay: 50 * time.Millisecond}
	opts.Hooks.Decided = func(_ string, d approval.Decision, _ time.Duration) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.decisions = append(h.decisions, d)
	}
	if mutate != nil {
		mutate(&opts)
	}
	if h.ctrl, err = New(opts); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	h.cancel = cancel
	go func() { h.done <- h.ctrl.Run(ctx, nil) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	h.cancel()
	if h.done != nil {
		<-h.done
		h.done = nil
	}
}

func (h *harness) create(t *testing.T, obj *certificatesv1.CertificateSigningRequest) {
	t.Helper()
	if _, err := h.client.CertificatesV1().CertificateSigningRequests().Create(t.Context(), obj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitCondition waits until the CSR carries a condition of typ.
func (h *harness) waitCondition(t *testing.T, name string, typ certificatesv1.RequestConditionType) certificatesv1.CertificateSigningRequestCondition {
	t.Helper()
	var got certificatesv1.CertificateSigningRequestCondition
	err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		obj, err := h.client.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range obj.Status.Conditions {
			if c.Type == typ {
				got = c
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("CSR %s never got condition %s: %v", name, typ, err)
	}
	return got
}

func TestApprovesAndRecordsEvent(t *testing.T) {
	client := fake.NewClientset()
	allowSARs(client, true, nil)
	h := start(t, client, nil)
	h.create(t, newCSR(t, "n1", csr.Request{}, "system:bootstrap:abcdef", bootstrapUser))
	c := h.waitCondition(t, "n1", certificatesv1.CertificateApproved)
	if c.Reason != approval.ReasonAutoApproved || c.Status != corev1.ConditionTrue {
		t.Errorf("condition %+v, want AutoApproved True", c)
	}
	if ev := <-h.recorder.Events; ev != "Normal AutoApproved "+c.Message {
		t.Errorf("event %q, want one with the approval message", ev)
	}
}

// A failing SubjectAccessReview is retried with backoff, reported to the
// hook, and the CSR is approved once the review answers.
func TestSubjectAccessReviewErrorIsRetried(t *testing.T) {
	client := fake.NewClientset()
	var calls atomic.Int32
	client.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if calls.Add(1) <= 2 {
			return true, nil, apierrors.NewServiceUnavailable("etcd is sad")
		}
		sar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview).DeepCopy()
		sar.Status.Allowed = true
		return true, sar, nil
	})
	var sarErrors atomic.Int32
	h := start(t, client, func(o *Options) {
		o.Hooks.SubjectAccessReview = func(_ bool, err error) {
			if err != nil {
				sarErrors.Add(1)
			}
		}
	})
	h.create(t, newCSR(t, "n1", csr.Request{}, "system:bootstrap:abcdef", bootstrapUser))
	h.waitCondition(t, "n1", certificatesv1.CertificateApproved)
	if sarErrors.Load() != 2 {
		t.Errorf("hook saw %d review errors, want 2", sarErrors.Load())
	}
}

// A conflicting write (someone else changed the CSR) is retried from the
// cache; a CSR deleted before the write is dropped.
func TestApprovalWriteConflictAndNotFound(t *testing.T) {
	client := fake.NewClientset()
	allowSARs(client, true, nil)
	var updates atomic.Int32
	client.PrependReactor("patch", "certificatesigningrequests", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "approval" {
			return false, nil, nil
		}
		name := a.(k8stesting.PatchAction).GetName()
		gr := schema.GroupResource{Group: "certificates.k8s.io", Resource: "certificatesigningrequests"}
		switch {
		case name == "gone":
			return true, nil, apierrors.NewNotFound(gr, name)
		case updates.Add(1) == 1:
			return true, nil, apierrors.NewConflict(gr, name, errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	h := start(t, client, nil)
	h.create(t, newCSR(t, "gone", csr.Request{}, "system:bootstrap:abcdef", bootstrapUser))
	h.create(t, newCSR(t, "n1", csr.Request{}, "system:bootstrap:abcdef", bootstrapUser))
	h.waitCondition(t, "n1", certificatesv1.CertificateApproved)
	h.stop()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.decisions) != 1 {
		t.Errorf("%d decisions reported, want 1 (the deleted CSR is not one)", len(h.decisions))
	}
}

// The API server filters informers by signer; the fake does not, which
// lets us check the guard that keeps other signers' CSRs untouched.
func TestOtherSignerUntouched(t *testing.T) {
	client := fake.NewClientset()
	allowSARs(client, true, nil)
	h := start(t, client, nil)
	priv, _ := csr.GenerateKey(csr.ECDSAP256)
	other := csr.NodeClient("n2", priv.Public())
	other.SignerName = certificatesv1.KubeAPIServerClientSignerName
	h.create(t, newCSR(t, "other", other, "system:bootstrap:abcdef", bootstrapUser))
	h.create(t, newCSR(t, "n1", csr.Request{}, "system:bootstrap:abcdef", bootstrapUser))
	h.waitCondition(t, "n1", certificatesv1.CertificateApproved)
	h.stop()
	for _, a := range client.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok && p.GetName() == "other" {
			t.Errorf("the approver wrote to a CSR of another signer: %v", a)
		}
		if u, ok := a.(k8stesting.UpdateAction); ok && a.GetVerb() == "update" && u.GetObject().(metav1.Object).GetName() == "other" {
			t.Errorf("the approver wrote to a CSR of another signer: %v", a)
		}
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	client := fake.NewClientset()
	allowSARs(client, true, nil)
	h := start(t, client, func(o *Options) { o.DryRun = true })
	h.create(t, newCSR(t, "n1", csr.Request{}, "system:bootstrap:abcdef", bootstrapUser))
	err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.decisions) == 1, nil
	})
	if err != nil {
		t.Fatal("no dry-run decision reported")
	}
	h.stop()
	for _, a := range client.Actions() {
		if a.GetVerb() == "update" || a.GetVerb() == "patch" || (a.GetVerb() == "create" && a.GetResource().Resource != "subjectaccessreviews" && a.GetResource().Resource != "certificatesigningrequests") {
			t.Errorf("dry run wrote: %s %s/%s", a.GetVerb(), a.GetResource().Resource, a.GetSubresource())
		}
	}
	if len(h.recorder.Events) != 0 {
		t.Errorf("dry run recorded %d events", len(h.recorder.Events))
	}
}

// A serving CSR whose Node is missing waits; past the pending timeout it is
// denied when the policy says so. The clock is fake: sync is called by hand.
func TestPendingTimeoutDenies(t *testing.T) {
	priv, _ := csr.GenerateKey(csr.ECDSAP256)
	obj := newCSR(t, "serving", csr.NodeServing("n1", priv.Public(), nil, []net.IP{net.ParseIP("10.0.0.1")}), "system:node:n1", []string{"system:nodes"})
	client := fake.NewClientset(obj)
	clk := clocktesting.NewFakeClock(obj.CreationTimestamp.Time)
	policy, _ := approval.New(approval.Options{PendingTimeout: time.Hour, DenyOnTimeout: true, AllowedIPs: tenSlash8})
	ctrl, err := New(Options{Client: client, Policy: policy, Clock: clk, Recorder: record.NewFakeRecorder(10)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for _, s := range ctrl.starts {
		s(ctx.Done())
	}
	waitSynced(t, ctrl)
	k := key{certificatesv1.KubeletServingSignerName, "serving"}
	if retry, err := ctrl.sync(ctx, k); !retry || err != nil {
		t.Fatalf("sync before the timeout = %v, %v; want a retry", retry, err)
	}
	if n := ctrl.Pending()[certificatesv1.KubeletServingSignerName]; n != 1 {
		t.Errorf("pending serving CSRs = %d, want 1", n)
	}
	clk.Step(time.Hour)
	if retry, err := ctrl.sync(ctx, k); retry || err != nil {
		t.Fatalf("sync after the timeout = %v, %v; want done", retry, err)
	}
	got, _ := client.CertificatesV1().CertificateSigningRequests().Get(ctx, "serving", metav1.GetOptions{})
	if len(got.Status.Conditions) != 1 || got.Status.Conditions[0].Type != certificatesv1.CertificateDenied || got.Status.Conditions[0].Reason != approval.ReasonPendingTimeout {
		t.Errorf("conditions %+v, want Denied PendingTimeout", got.Status.Conditions)
	}
}

func waitSynced(t *testing.T, c *Controller) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		for _, s := range c.synced {
			if !s() {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal("caches never synced")
	}
}

// A serving CSR that waits for its Node is decided when the Node appears,
// without waiting for a retry timer.
func TestNodeAppearingRequeues(t *testing.T) {
	priv, _ := csr.GenerateKey(csr.ECDSAP256)
	obj := newCSR(t, "serving", csr.NodeServing("n1", priv.Public(), nil, []net.IP{net.ParseIP("10.0.0.1")}), "system:node:n1", []string{"system:nodes"})
	client := fake.NewClientset()
	h := start(t, client, func(o *Options) {
		o.MaxRetryDelay = time.Hour
		o.Policy, _ = approval.New(approval.Options{AllowedIPs: tenSlash8})
		withServingCertificate(o) // apiserver_sans_test.go
	})
	h.create(t, obj)
	err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return h.ctrl.Ready() == nil, nil
	})
	if err != nil {
		t.Fatal("never ready")
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}}}}
	if _, err := client.CoreV1().Nodes().Create(t.Context(), node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitCondition(t, "serving", certificatesv1.CertificateApproved)
}

func TestOptionsValidate(t *testing.T) {
	policy, _ := approval.New(approval.Options{})
	client := fake.NewClientset()
	for _, o := range []Options{
		{Policy: policy},
		{Client: client},
		{Client: client, Policy: policy, Workers: -1},
		{Client: client, Policy: policy, SARCacheTTL: 2 * time.Minute},
		{Client: client, Policy: policy, Signers: []string{"example.com/other"}},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", o)
		}
	}
}
