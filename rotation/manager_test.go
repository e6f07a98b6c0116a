package rotation

import (
	"context"
	"crypto"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/tlsboot/tlsboot/certstore"
	"github.com/tlsboot/tlsboot/csr"
)

const node = "node-a"

type fixture struct {
	clk       *clocktesting.FakeClock
	ca        *testCA
	store     *certstore.Store
	client    *fake.Clientset
	signer    *signer
	ev        *events
	opts      Options
	m         *Manager
	recovered atomic.Int32
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{clk: clocktesting.NewFakeClock(time.Now()), ca: newCA(t), client: fake.NewClientset(), ev: newEvents()}
	dir := t.TempDir()
	var err error
	if f.store, err = certstore.Open(certstore.Options{Dir: dir, Prefix: "kubelet-client"}); err != nil {
		t.Fatal(err)
	}
	f.signer = &signer{ca: f.ca, clock: f.clk, ttl: 2 * time.Minute, decide: func(int) string { return "sign" }}
	f.opts = Options{
		Name:     "client",
		Store:    f.store,
		Template: func(pub crypto.PublicKey) csr.Request { return csr.NodeClient(node, pub) },
		Client:   func(context.Context) (kubernetes.Interface, error) { return f.client, nil },
		Recover: func(context.Context) (time.Duration, error) {
			f.recovered.Add(1)
			f.ca.storeCert(t, f.store, node, f.clk.Now(), 2*time.Minute)
			return time.Second, nil
		},
		Clock: f.clk,
		Rand:  func() float64 { return 0.5 },
		Hooks: f.ev.hooks(),
	}
	return f
}

// start runs the manager (f.m, or a new one for f.opts) and the signer
// until the test ends.
func (f *fixture) start(t *testing.T) {
	t.Helper()
	if f.m == nil {
		f.newManager(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { f.signer.watch(ctx, t, f.client) })
	wg.Go(func() { f.m.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func (f *fixture) noRotation(t *testing.T) {
	t.Helper()
	waitSleeping(t, f.clk)
	select {
	case r := <-f.ev.rotated:
		t.Fatalf("unexpected rotation (%s)", r)
	case fl := <-f.ev.failed:
		t.Fatalf("unexpected failure (%s)", fl)
	default:
	}
}

// TestRotatesAtDeadlineWithoutLoop: a 2m certificate backdated by 5m, as
// kube-controller-manager issues it, is renewed at 80% of 2m (r = 0.5), not
// at once, and the renewed one is not due at once either.
func TestRotatesAtDeadlineWithoutLoop(t *testing.T) {
	f := newFixture(t)
	f.ca.storeCert(t, f.store, node, f.clk.Now(), 2*time.Minute)
	old, _ := f.store.Current()
	f.start(t)
	f.noRotation(t)
	f.clk.Step(95 * time.Second) // deadline is at 96s
	f.noRotation(t)
	f.clk.Step(2 * time.Second)
	f.ev.wantRotated(t, ReasonDue)
	f.noRotation(t)
	cur, _ := f.store.Current()
	if cur.Leaf.SerialNumber.Cmp(old.Leaf.SerialNumber) == 0 {
		t.Fatal("the store still holds the old certificate")
	}
	if cur.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(old.Leaf.PublicKey) {
		t.Error("renewed with the old key; want a new key by default")
	}
	if _, err := os.Stat(f.store.PendingKeyPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary key left after success: %v", err)
	}
	if st := f.m.Status(); !st.Schedule.Deadline.After(f.clk.Now()) {
		t.Errorf("next deadline %v is not after now %v", st.Schedule.Deadline, f.clk.Now())
	}
}

// TestRecoversAfterClockJumps: expiry noticed after a jump forward (a node
// powered off past expiry) and a certificate not yet valid after a jump
// back are both recovered with Recover.
func TestRecoversAfterClockJumps(t *testing.T) {
	f := newFixture(t)
	f.ca.storeCert(t, f.store, node, f.clk.Now(), 2*time.Minute)
	f.start(t)
	f.noRotation(t)
	f.clk.Step(24 * time.Hour)
	f.ev.wantRotated(t, ReasonExpired)
	f.noRotation(t)
	// Back by an hour: the new certificate's NotBefore is in the future.
	// A fake timer set in wall time does not fire when time goes back
	// (a real one, on the monotonic clock, would, at the latest after
	// MaxSleep), so wake the loop; validity beats the forced renewal.
	f.clk.SetTime(f.clk.Now().Add(-time.Hour))
	f.m.Trigger()
	f.ev.wantRotated(t, ReasonNotYetValid)
	if got := f.recovered.Load(); got != 2 {
		t.Errorf("Recover called %d times, want 2", got)
	}
}

func TestUnauthorizedReBootstraps(t *testing.T) {
	f := newFixture(t)
	f.ca.storeCert(t, f.store, node, f.clk.Now(), time.Hour)
	unauthorized(f.client)
	f.start(t)
	f.noRotation(t)
	f.m.Trigger()
	f.ev.wantFailed(t, FailUnauthorized)
	f.ev.wantRotated(t, ReasonUnauthorized)
	if f.recovered.Load() != 1 {
		t.Error("Recover was not called")
	}
}

func TestVerifyUnauthorizedAtStart(t *testing.T) {
	f := newFixture(t)
	f.ca.storeCert(t, f.store, node, f.clk.Now(), time.Hour)
	f.opts.Verify = func(context.Context) error { return fmt.Errorf("checking: %w", errUnauthorized()) }
	f.start(t)
	f.ev.wantRotated(t, ReasonUnauthorized)
}

// TestTemplateMismatchBacksOff: a signer that drops the SANs gets one CSR,
// then the manager waits out its backoff (no hot loop), and asks again with
// a new key, so a new CSR name.
func TestTemplateMismatchBacksOff(t *testing.T) {
	f := newFixture(t)
	f.opts.Name, f.opts.Recover = "serving", nil
	f.opts.Template = func(pub crypto.PublicKey) csr.Request {
		return csr.NodeServing(node, pub, []string{"node-a.example"}, []net.IP{net.ParseIP("10.0.0.1")})
	}
	f.signer.decide = func(n int) string {
		if n == 1 {
			return "dropSANs"
		}
		return "sign"
	}
	var mismatches atomic.Int32
	f.opts.Hooks.TemplateMismatch = func(string) { mismatches.Add(1) }
	f.start(t)
	f.ev.wantFailed(t, FailTemplate)
	f.noRotation(t)
	if n := len(f.signer.seen()); n != 1 || mismatches.Load() != 1 {
		t.Fatalf("%d CSRs and %d mismatches before the backoff ran out, want 1 and 1", n, mismatches.Load())
	}
	if cur, err := f.store.Current(); err == nil {
		t.Fatalf("a mismatching certificate was stored: %v", cur.Leaf.Subject)
	}
	f.clk.Step(DefaultInitialBackoff * 2)
	f.ev.wantRotated(t, ReasonMissing)
	if seen := f.signer.seen(); len(seen) != 2 || seen[0] == seen[1] {
		t.Errorf("CSRs %v: want two with different names", seen)
	}
}

func TestDeniedDiscardsKeyAndRetries(t *testing.T) {
	f := newFixture(t)
	f.ca.storeCert(t, f.store, node, f.clk.Now(), time.Hour)
	f.signer.decide = func(n int) string {
		if n == 1 {
			return "deny"
		}
		return "sign"
	}
	f.start(t)
	f.noRotation(t)
	f.m.Trigger()
	f.ev.wantFailed(t, FailDenied)
	if _, err := os.Stat(f.store.PendingKeyPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary key of a denied CSR kept: %v", err)
	}
	f.noRotation(t)
	f.clk.Step(DefaultInitialBackoff * 2)
	f.ev.wantRotated(t, ReasonForced)
}

func TestNoCredentials(t *testing.T) {
	f := newFixture(t)
	f.opts.Recover = func(context.Context) (time.Duration, error) {
		return 0, fmt.Errorf("bootstrap kubeconfig /x does not exist: %w", ErrNoCredentials)
	}
	var recovering atomic.Bool
	f.opts.Hooks.Recovering = func(_ string, on bool) { recovering.Store(on) }
	f.start(t)
	f.ev.wantFailed(t, FailNoCredentials)
	f.noRotation(t)
	if st := f.m.Status(); !errors.Is(st.LastError, ErrNoCredentials) || !st.Recovering || !recovering.Load() {
		t.Errorf("status %+v, recovering hook %v: want the missing credentials reported", st, recovering.Load())
	}
	f.clk.Step(DefaultInitialBackoff * 2)
	f.ev.wantFailed(t, FailNoCredentials)
}

func TestSANChangeRenews(t *testing.T) {
	f := newFixture(t)
	f.opts.Name, f.opts.Recover = "serving", nil
	key, _ := csr.GenerateKey(csr.ECDSAP256)
	keyPEM, _ := csr.MarshalPrivateKeyPEM(key)
	subject := pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}
	old := f.ca.issue(t, key.Public(), subject, nil, []net.IP{net.ParseIP("10.0.0.1")}, f.clk.Now(), time.Hour)
	if _, err := f.store.Update(old, keyPEM); err != nil {
		t.Fatal(err)
	}
	f.opts.Template = func(pub crypto.PublicKey) csr.Request {
		return csr.NodeServing(node, pub, nil, []net.IP{net.ParseIP("10.0.0.2")})
	}
	f.start(t)
	f.ev.wantRotated(t, ReasonTemplate)
	f.noRotation(t)
	cur, _ := f.store.Current()
	if ips := cur.Leaf.IPAddresses; len(ips) != 1 || !ips[0].Equal(net.ParseIP("10.0.0.2")) {
		t.Errorf("IPs %v, want [10.0.0.2]", ips)
	}
}

func TestBackoff(t *testing.T) {
	m := &Manager{opts: Options{InitialBackoff: 5 * time.Second, MaxBackoff: time.Minute, Rand: func() float64 { return 0.5 }}}
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{1, 5 * time.Second}, {2, 10 * time.Second}, {3, 20 * time.Second}, {4, 40 * time.Second}, {5, time.Minute}, {50, time.Minute}} {
		if got := m.backoff(tc.n); got != tc.want {
			t.Errorf("backoff(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

// TestClassify: every Failure label, read from the typed errors of package
// csr however deeply they are wrapped (a renewal's own, or those of a
// recovery through bootstrap), from ErrNoCredentials and from the store.
func TestClassify(t *testing.T) {
	server := func(kind error) error {
		return &csr.ServerError{Kind: kind, Server: "https://api", Op: "creating certificate signing request", Err: errors.New("x")}
	}
	recovering := func(err error) error {
		return fmt.Errorf("recovering a certificate that is expired: %w", fmt.Errorf("bootstrap: %w", err))
	}
	timeout := &csr.TimeoutError{CSR: "node-csr-x", Signer: "kubernetes.io/kube-apiserver-client-kubelet", Waited: time.Hour}
	unusable := &csr.CertificateError{CSR: "node-csr-x", Problem: csr.ProblemNames, Detail: "CN"}
	for _, tc := range []struct {
		name string
		err  error
		want Failure
	}{
		{"unreachable", server(csr.ErrUnreachable), FailUnreachable},
		{"server TLS verification", server(csr.ErrTLS), FailUnreachable},
		{"unauthorized", server(csr.ErrUnauthorized), FailUnauthorized},
		{"unauthorized at verify", fmt.Errorf("checking: %w", errUnauthorized()), FailUnauthorized},
		{"forbidden", server(csr.ErrForbidden), FailForbidden},
		{"denied", &csr.OutcomeError{Name: "x", Kind: csr.ErrDenied}, FailDenied},
		{"failed", &csr.OutcomeError{Name: "x", Kind: csr.ErrFailed}, FailFailed},
		{"deleted", &csr.OutcomeError{Name: "x", Kind: csr.ErrDeleted}, FailDeleted},
		{"replaced", &csr.OutcomeError{Name: "x", Kind: csr.ErrReplaced}, FailDeleted},
		{"conflict", &csr.ConflictError{Name: "x", Diffs: []string{"signer"}}, FailConflict},
		{"timeout", timeout, FailTimeout},
		{"recovery timed out", recovering(timeout), FailTimeout},
		{"template mismatch", unusable, FailTemplate},
		{"recovery issued an unusable certificate", recovering(unusable), FailTemplate},
		{"identity rejected", &csr.IdentityError{CSR: "x", Unauthorized: true}, FailIdentity},
		{"recovery identity rejected", recovering(&csr.IdentityError{CSR: "x", User: "system:node:b"}), FailIdentity},
		{"recovery denied", recovering(&csr.OutcomeError{Name: "x", Kind: csr.ErrDenied}), FailDenied},
		{"recovery unreachable", recovering(server(csr.ErrUnreachable)), FailUnreachable},
		{"no credentials", fmt.Errorf("x: %w", ErrNoCredentials), FailNoCredentials},
		{"store", storeError{errors.New("certstore: writing")}, FailStore},
		{"untyped", errors.New("kubeconfig /x: no server"), FailOther},
		{"bare deadline", fmt.Errorf("waiting: %w", context.DeadlineExceeded), FailOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.err); got != tc.want {
				t.Errorf("classify(%v) = %s, want %s", tc.err, got, tc.want)
			}
		})
	}
}

// TestRecoveryFailureLabels: a recovery that fails is labelled by what
// failed inside it, and an unusable issued certificate also fires the
// TemplateMismatch hook (both were "unreachable" and silent before).
func TestRecoveryFailureLabels(t *testing.T) {
	for _, tc := range []struct {
		name           string
		err            error
		want           Failure
		wantMismatches int32
	}{
		{"bootstrap timed out", &csr.TimeoutError{CSR: "node-csr-x", Waited: time.Minute}, FailTimeout, 0},
		{"bootstrap got an unusable certificate", &csr.CertificateError{CSR: "node-csr-x", Problem: csr.ProblemCA}, FailTemplate, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.opts.Recover = func(context.Context) (time.Duration, error) {
				return 0, fmt.Errorf("bootstrap: %w", tc.err)
			}
			var mismatches atomic.Int32
			f.opts.Hooks.TemplateMismatch = func(string) { mismatches.Add(1) }
			f.start(t) // empty store: recovery at once
			f.ev.wantFailed(t, tc.want)
			waitSleeping(t, f.clk) // the backoff: the hooks of the attempt have run
			if got := mismatches.Load(); got != tc.wantMismatches {
				t.Errorf("TemplateMismatch fired %d times, want %d", got, tc.wantMismatches)
			}
		})
	}
}
