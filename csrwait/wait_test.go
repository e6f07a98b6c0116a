package csrwait

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/tlsboot/tlsboot/csr"
)

const (
	testName = "node-csr-test"
	testUID  = types.UID("uid-1")
)

// guard bounds how long a test waits for something that should happen at
// once, so that a bug fails the test instead of hanging it.
const guard = 30 * time.Second

var testCert = []byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n")

// object builds the CSR as the API server would show it.
func object(uid types.UID, cert []byte, conds ...certificatesv1.RequestConditionType) *certificatesv1.CertificateSigningRequest {
	obj := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: testName, UID: uid},
		Spec:       certificatesv1.CertificateSigningRequestSpec{SignerName: certificatesv1.KubeAPIServerClientKubeletSignerName},
		Status:     certificatesv1.CertificateSigningRequestStatus{Certificate: cert},
	}
	for _, c := range conds {
		obj.Status.Conditions = append(obj.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: c, Status: corev1.ConditionTrue, Reason: "Reason" + string(c), Message: "message for " + string(c),
		})
	}
	return obj
}

// harness runs Wait against a fake clientset whose watches the test drives.
type harness struct {
	client  *fake.Clientset
	watches chan *watch.RaceFreeFakeWatcher // each watch Wait opens, in order
	result  chan result
}

type result struct {
	cert []byte
	err  error
}

func newHarness(t *testing.T, initial *certificatesv1.CertificateSigningRequest) *harness {
	h := &harness{watches: make(chan *watch.RaceFreeFakeWatcher, 10), result: make(chan result, 1)}
	if initial != nil {
		h.client = fake.NewClientset(initial)
	} else {
		h.client = fake.NewClientset()
	}
	h.client.PrependWatchReactor("certificatesigningrequests", func(k8stesting.Action) (bool, watch.Interface, error) {
		w := watch.NewRaceFreeFake()
		h.watches <- w
		return true, w, nil
	})
	return h
}

func (h *harness) start(ctx context.Context, uid types.UID, opts Options) {
	go func() {
		cert, err := Wait(ctx, h.client, testName, uid, opts)
		h.result <- result{cert, err}
	}()
}

// nextWatch returns the next watch Wait opens; the list before it is done.
func (h *harness) nextWatch(t *testing.T) *watch.RaceFreeFakeWatcher {
	t.Helper()
	select {
	case w := <-h.watches:
		return w
	case r := <-h.result:
		t.Fatalf("Wait returned (%q, %v) before watching", r.cert, r.err)
	case <-time.After(guard):
		t.Fatal("Wait did not open a watch")
	}
	return nil
}

func (h *harness) wait(t *testing.T) result {
	t.Helper()
	select {
	case r := <-h.result:
		return r
	case <-time.After(guard):
		t.Fatal("Wait did not return")
	}
	return result{}
}

// step is something the test does on the current watch.
type step struct {
	event watch.EventType // Added, Modified, Deleted
	obj   *certificatesv1.CertificateSigningRequest
	drop  bool // close the watch after sending the event, and use the next one
}

func TestWait(t *testing.T) {
	pending := object(testUID, nil)
	tests := []struct {
		name       string
		initial    *certificatesv1.CertificateSigningRequest
		uid        types.UID
		steps      []step
		wantCert   bool
		wantKind   error
		wantReason string
		wantText   string
	}{
		{name: "issued before the wait", initial: object(testUID, testCert, certificatesv1.CertificateApproved), wantCert: true},
		{name: "issued", initial: pending, wantCert: true,
			steps: []step{{event: watch.Modified, obj: object(testUID, testCert, certificatesv1.CertificateApproved)}}},
		{name: "issued without approved condition", initial: pending, wantCert: true,
			steps: []step{{event: watch.Modified, obj: object(testUID, testCert)}}},
		{name: "approved then issued", initial: pending, wantCert: true,
			steps: []step{
				{event: watch.Modified, obj: object(testUID, nil, certificatesv1.CertificateApproved)},
				{event: watch.Modified, obj: object(testUID, testCert, certificatesv1.CertificateApproved)},
			}},
		{name: "watch dropped and resumed", initial: pending, wantCert: true,
			steps: []step{
				{event: watch.Modified, obj: object(testUID, nil, certificatesv1.CertificateApproved), drop: true},
				{event: watch.Modified, obj: object(testUID, testCert, certificatesv1.CertificateApproved)},
			}},
		{name: "empty uid accepts the first seen", initial: pending, uid: "-", wantCert: true,
			steps: []step{{event: watch.Modified, obj: object(testUID, testCert)}}},
		{name: "denied", initial: pending, wantKind: csr.ErrDenied, wantReason: "ReasonDenied",
			wantText: `certificate signing request node-csr-test was denied (reason "ReasonDenied": message for Denied); delete it with "kubectl delete csr node-csr-test"`,
			steps:    []step{{event: watch.Modified, obj: object(testUID, nil, certificatesv1.CertificateDenied)}}},
		{name: "denied before the wait", initial: object(testUID, nil, certificatesv1.CertificateDenied), wantKind: csr.ErrDenied, wantReason: "ReasonDenied"},
		{name: "failed", initial: pending, wantKind: csr.ErrFailed, wantReason: "ReasonFailed", wantText: "node-csr-test failed",
			steps: []step{{event: watch.Modified, obj: object(testUID, nil, certificatesv1.CertificateApproved, certificatesv1.CertificateFailed)}}},
		{name: "deleted", initial: pending, wantKind: csr.ErrDeleted, wantText: "node-csr-test was deleted; run again",
			steps: []step{{event: watch.Deleted, obj: pending}}},
		{name: "missing at start", wantKind: csr.ErrDeleted, wantText: "node-csr-test was deleted; run again"},
		{name: "replaced by another uid", initial: pending, wantKind: csr.ErrReplaced,
			wantText: "node-csr-test was replaced",
			steps:    []step{{event: watch.Modified, obj: object("uid-2", testCert, certificatesv1.CertificateApproved)}}},
		{name: "other uid at start", initial: object("uid-0", nil), wantKind: csr.ErrReplaced},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.initial)
			uid := testUID
			if tt.uid == "-" {
				uid = ""
			}
			h.start(context.Background(), uid, Options{})
			if len(tt.steps) > 0 {
				w := h.nextWatch(t)
				for _, s := range tt.steps {
					w.Action(s.event, s.obj)
					if s.drop {
						w.Stop()
						w = h.nextWatch(t)
					}
				}
			}
			r := h.wait(t)
			if tt.wantCert {
				if r.err != nil || string(r.cert) != string(testCert) {
					t.Fatalf("Wait() = %q, %v; want the certificate", r.cert, r.err)
				}
				return
			}
			var oe *csr.OutcomeError
			if !errors.Is(r.err, tt.wantKind) || !errors.As(r.err, &oe) || oe.Kind != tt.wantKind {
				t.Fatalf("Wait() error = %v, want *csr.OutcomeError of kind %v", r.err, tt.wantKind)
			}
			if oe.Name != testName || oe.Reason != tt.wantReason {
				t.Errorf("OutcomeError name %q reason %q, want %q %q", oe.Name, oe.Reason, testName, tt.wantReason)
			}
			if !strings.Contains(r.err.Error(), tt.wantText) {
				t.Errorf("error %q does not contain %q", r.err, tt.wantText)
			}
		})
	}
}

// TestWaitContextEnds: a deadline is a *csr.TimeoutError that says what
// to do; a cancellation is the context's error, saying what was awaited.
func TestWaitContextEnds(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		approved := object(testUID, nil, certificatesv1.CertificateApproved)
		approved.ResourceVersion = "7"
		h := newHarness(t, approved)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		t.Cleanup(cancel)
		// ForCSR knows the signer and the approval from the start.
		cert, err := ForCSR(ctx, h.client, approved, Options{})
		r := result{cert, err}
		var te *csr.TimeoutError
		if !errors.As(r.err, &te) || !errors.Is(r.err, context.DeadlineExceeded) {
			t.Fatalf("Wait() error = %v, want a *csr.TimeoutError", r.err)
		}
		// Waited is not checked beyond its sign: it depends on the load.
		if te.CSR != testName || te.Signer != certificatesv1.KubeAPIServerClientKubeletSignerName || !te.Approved || te.Waited < 0 {
			t.Errorf("TimeoutError = %+v, want CSR %s, its signer, approved, a wait not negative", te, testName)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		h := newHarness(t, object(testUID, nil))
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		h.start(ctx, testUID, Options{})
		h.nextWatch(t)
		cancel()
		r := h.wait(t)
		var te *csr.TimeoutError
		if !errors.Is(r.err, context.Canceled) || errors.As(r.err, &te) {
			t.Fatalf("Wait() error = %v, want context.Canceled and no *csr.TimeoutError", r.err)
		}
		if !strings.Contains(r.err.Error(), "waiting for certificate signing request node-csr-test") {
			t.Errorf("error %q does not say what it waited for", r.err)
		}
	})
}

// TestWaitRefused: a list or watch that the server refuses for good ends
// the wait with a *csr.ServerError; an unreachable server is retried.
func TestWaitRefused(t *testing.T) {
	gr := certificatesv1.Resource("certificatesigningrequests")
	tests := []struct {
		name     string
		verb     string
		err      error
		wantKind error
	}{
		{"list forbidden", "list", apierrors.NewForbidden(gr, "", errors.New("no")), csr.ErrForbidden},
		{"list unauthorized", "list", apierrors.NewUnauthorized("Unauthorized"), csr.ErrUnauthorized},
		{"watch forbidden", "watch", apierrors.NewForbidden(gr, "", errors.New("no")), csr.ErrForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := fake.NewClientset(object(testUID, nil))
			if tt.verb == "list" {
				client.PrependReactor("list", "certificatesigningrequests", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, tt.err
				})
			} else {
				client.PrependWatchReactor("certificatesigningrequests", func(k8stesting.Action) (bool, watch.Interface, error) {
					return true, nil, tt.err
				})
			}
			ctx, cancel := context.WithTimeout(context.Background(), guard)
			t.Cleanup(cancel)
			_, err := Wait(ctx, client, testName, testUID, Options{})
			var se *csr.ServerError
			if !errors.As(err, &se) || se.Kind != tt.wantKind || se.CSR != testName || !errors.Is(err, tt.err) {
				t.Fatalf("Wait() error = %v, want a *csr.ServerError of kind %v for %s", err, tt.wantKind, testName)
			}
		})
	}
	t.Run("unavailable is retried", func(t *testing.T) {
		client := fake.NewClientset(object(testUID, testCert))
		var lists atomic.Int32
		client.PrependReactor("list", "certificatesigningrequests", func(k8stesting.Action) (bool, runtime.Object, error) {
			if lists.Add(1) == 1 {
				return true, nil, apierrors.NewServiceUnavailable("starting")
			}
			return false, nil, nil
		})
		ctx, cancel := context.WithTimeout(context.Background(), guard)
		t.Cleanup(cancel)
		if cert, err := Wait(ctx, client, testName, testUID, Options{}); err != nil || string(cert) != string(testCert) {
			t.Fatalf("Wait() = %q, %v; want the certificate after a retry", cert, err)
		}
	})
}

// TestWaitDeletionSameEitherWay: a CSR deleted before the first list and
// one deleted during the watch give the same error, word for word.
func TestWaitDeletionSameEitherWay(t *testing.T) {
	missing := newHarness(t, nil)
	missing.start(context.Background(), testUID, Options{})
	before := missing.wait(t).err

	during := newHarness(t, object(testUID, nil))
	during.start(context.Background(), testUID, Options{})
	during.nextWatch(t).Action(watch.Deleted, object(testUID, nil))
	after := during.wait(t).err

	if before == nil || after == nil || before.Error() != after.Error() {
		t.Fatalf("deleted before the list: %v; during the watch: %v; want one error", before, after)
	}
	if !errors.Is(before, csr.ErrDeleted) || !errors.Is(after, csr.ErrDeleted) {
		t.Errorf("errors %v, %v are not csr.ErrDeleted", before, after)
	}
}

func TestWaitProgress(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	type call struct {
		name   string
		waited time.Duration
	}
	calls := make(chan call, 10)
	h := newHarness(t, object(testUID, nil))
	h.start(context.Background(), testUID, Options{
		Clock:            clk,
		ProgressInterval: time.Minute,
		Progress:         func(name string, waited time.Duration) { calls <- call{name, waited} },
	})
	next := func() call {
		t.Helper()
		select {
		case c := <-calls:
			return c
		case <-time.After(guard):
			t.Fatal("Progress was not called")
		}
		return call{}
	}
	if c := next(); c != (call{testName, 0}) {
		t.Fatalf("first Progress call = %+v, want %s after 0s", c, testName)
	}
	for _, want := range []time.Duration{time.Minute, 2 * time.Minute} {
		clk.Step(time.Minute)
		if c := next(); c != (call{testName, want}) {
			t.Fatalf("Progress call = %+v, want %s after %s", c, testName, want)
		}
	}
	w := h.nextWatch(t)
	w.Modify(object(testUID, testCert, certificatesv1.CertificateApproved))
	if r := h.wait(t); r.err != nil {
		t.Fatal(r.err)
	}
}

// TestHandle covers the state the timeout message reports, which the
// end-to-end tests cannot observe without racing the informer.
func TestHandle(t *testing.T) {
	w := &waiter{name: testName, uid: testUID}
	if got := w.state(); got != "to appear" {
		t.Errorf("state() = %q before any event", got)
	}
	steps := []struct {
		obj       *certificatesv1.CertificateSigningRequest
		wantState string
	}{
		{object(testUID, nil), "to be approved"},
		{object(testUID, nil, certificatesv1.CertificateApproved), "to be signed (approved, no certificate yet)"},
	}
	for _, s := range steps {
		cert, done, err := w.handle(watch.Event{Type: watch.Modified, Object: s.obj})
		if cert != nil || done || err != nil {
			t.Fatalf("handle() = %q, %t, %v; want pending", cert, done, err)
		}
		if got := w.state(); got != s.wantState {
			t.Errorf("state() = %q, want %q", got, s.wantState)
		}
	}
	other := object(testUID, testCert)
	other.Name = "someone-else"
	if _, done, err := w.handle(watch.Event{Type: watch.Modified, Object: other}); done || err != nil {
		t.Errorf("an event for another CSR ended the wait: %v", err)
	}
}

// TestWaitFromVersion covers the fast path: one watch from a known resource
// version, and the fall-back to list and watch when that watch ends.
func TestWaitFromVersion(t *testing.T) {
	pending := object(testUID, nil)
	issued := object(testUID, testCert, certificatesv1.CertificateApproved)
	gone := &metav1.Status{Status: metav1.StatusFailure, Code: 410, Reason: metav1.StatusReasonGone}
	tests := []struct {
		name      string
		first     func(w *watch.RaceFreeFakeWatcher)
		second    func(w *watch.RaceFreeFakeWatcher) // nil: no fall-back expected
		wantCert  bool
		wantKind  error
		wantLists int
	}{
		{name: "issued on the first watch, no list",
			first: func(w *watch.RaceFreeFakeWatcher) { w.Action(watch.Modified, issued) }, wantCert: true},
		{name: "deleted on the first watch",
			first: func(w *watch.RaceFreeFakeWatcher) { w.Action(watch.Deleted, pending) }, wantKind: csr.ErrDeleted},
		{name: "watch closes: list and watch again",
			first:  func(w *watch.RaceFreeFakeWatcher) { w.Stop() },
			second: func(w *watch.RaceFreeFakeWatcher) { w.Action(watch.Modified, issued) }, wantCert: true, wantLists: 1},
		{name: "resource version gone: list and watch again",
			first:  func(w *watch.RaceFreeFakeWatcher) { w.Error(gone) },
			second: func(w *watch.RaceFreeFakeWatcher) { w.Action(watch.Modified, issued) }, wantCert: true, wantLists: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, pending)
			h.start(context.Background(), testUID, Options{ResourceVersion: "42"})
			tt.first(h.nextWatch(t))
			if tt.second != nil {
				tt.second(h.nextWatch(t))
			}
			r := h.wait(t)
			if tt.wantCert && (r.err != nil || string(r.cert) != string(testCert)) {
				t.Fatalf("Wait() = %q, %v; want the certificate", r.cert, r.err)
			}
			if tt.wantKind != nil && !errors.Is(r.err, tt.wantKind) {
				t.Fatalf("Wait() error = %v, want %v", r.err, tt.wantKind)
			}
			lists := 0
			for _, a := range h.client.Actions() {
				if a.GetVerb() == "list" {
					lists++
				}
				if w, ok := a.(k8stesting.WatchAction); ok && a.GetVerb() == "watch" && lists == 0 {
					if rv := w.GetWatchRestrictions().ResourceVersion; rv != "42" {
						t.Errorf("first watch from resource version %q, want 42", rv)
					}
				}
			}
			if lists != tt.wantLists {
				t.Errorf("%d list calls, want %d", lists, tt.wantLists)
			}
		})
	}
}

func TestForCSR(t *testing.T) {
	t.Run("already issued: no request", func(t *testing.T) {
		h := newHarness(t, nil)
		cert, err := ForCSR(context.Background(), h.client, object(testUID, testCert, certificatesv1.CertificateApproved), Options{})
		if err != nil || string(cert) != string(testCert) || len(h.client.Actions()) != 0 {
			t.Fatalf("ForCSR = %q, %v with %d API calls; want the certificate and none", cert, err, len(h.client.Actions()))
		}
	})
	t.Run("already denied", func(t *testing.T) {
		h := newHarness(t, nil)
		if _, err := ForCSR(context.Background(), h.client, object(testUID, nil, certificatesv1.CertificateDenied), Options{}); !errors.Is(err, csr.ErrDenied) {
			t.Fatalf("ForCSR error = %v, want ErrDenied", err)
		}
	})
	t.Run("pending: watched from its version", func(t *testing.T) {
		pending := object(testUID, nil)
		pending.ResourceVersion = "7"
		h := newHarness(t, pending)
		go func() {
			cert, err := ForCSR(context.Background(), h.client, pending, Options{})
			h.result <- result{cert, err}
		}()
		h.nextWatch(t).Action(watch.Modified, object(testUID, testCert, certificatesv1.CertificateApproved))
		if r := h.wait(t); r.err != nil || string(r.cert) != string(testCert) {
			t.Fatalf("ForCSR = %q, %v", r.cert, r.err)
		}
		w, ok := h.client.Actions()[0].(k8stesting.WatchAction)
		if !ok || w.GetWatchRestrictions().ResourceVersion != "7" {
			t.Errorf("first call %v, want a watch from resource version 7", h.client.Actions()[0])
		}
	})
}
