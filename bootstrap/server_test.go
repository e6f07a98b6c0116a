package bootstrap

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/tlsboot/tlsboot/csr"
)

var (
	csrResource   = schema.GroupResource{Group: "certificates.k8s.io", Resource: "certificatesigningrequests"}
	errRefused    = errors.New("dial tcp 127.0.0.1:6443: connect: connection refused")
	errUnknownCA  = fmt.Errorf("Get \"https://api:6443/healthz\": tls: failed to verify certificate: %w", x509.UnknownAuthorityError{})
	unauthorized  = apierrors.NewUnauthorized("Unauthorized")
	forbidden     = apierrors.NewForbidden(csrResource, "", errors.New("user cannot create"))
	internalError = apierrors.NewInternalError(errors.New("etcd timeout"))
)

// testServer returns a server on a fake clientset and a fake clock, whose
// /healthz and /readyz answer with the given functions (nil: success).
func testServer(t *testing.T, healthz, readyz func() error) (*server, *fake.Clientset, *clocktesting.FakeClock) {
	t.Helper()
	client := fake.NewClientset()
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	s := &server{host: "https://api:6443", bootstrapPath: "/etc/bootstrap.conf", client: client, clock: clk}
	s.healthz = func(context.Context) error {
		if healthz == nil {
			return nil
		}
		return healthz()
	}
	s.readyz = func(context.Context) error {
		if readyz == nil {
			return nil
		}
		return readyz()
	}
	return s, client, clk
}

// drive steps clk by d whenever at least waiters timers wait on it, until
// done is closed. The code under test decides when it waits; the test only
// moves time, so nothing depends on how fast the machine is.
func drive(clk *clocktesting.FakeClock, waiters int, d time.Duration, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		default:
		}
		if clk.Waiters() >= waiters {
			clk.Step(d)
		}
		runtime.Gosched()
	}
}

// failCreates makes the first n creates of CSRs fail with err (all of them
// for n < 0) and counts every create.
func failCreates(client *fake.Clientset, n int, err error) *atomic.Int32 {
	var calls atomic.Int32
	client.PrependReactor("create", "certificatesigningrequests", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
		c := int(calls.Add(1))
		if n < 0 || c <= n {
			return true, nil, err
		}
		return false, nil, nil
	})
	return &calls
}

func nodeRequest(t *testing.T) (csr.Request, crypto.Signer, string) {
	t.Helper()
	key, _ := newKey(t)
	req := csr.NodeClient("node-1", key.Public())
	name, err := req.Name(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return req, key, name
}

// TestSubmit: what submit retries (on the fake clock, with backoff), what
// stops it at once, and re-attaching to a CSR that exists.
func TestSubmit(t *testing.T) {
	tests := []struct {
		name        string
		fail        int   // failing creates, -1 for all
		err         error // their error
		readyz      error // /readyz's answer to a 401
		existing    func(req csr.Request, key crypto.Signer, name string) *certificatesv1.CertificateSigningRequest
		wantCreates int32
		wantCreated bool
		wantErr     error // errors.Is target; nil for success
		wantAs      any   // errors.As target, if any
	}{
		{name: "created", wantCreates: 1, wantCreated: true},
		{name: "retried on 500", fail: 3, err: internalError, wantCreates: 4, wantCreated: true},
		{name: "retried while unreachable", fail: 2, err: errRefused, wantCreates: 3, wantCreated: true},
		{name: "retried on 401 while not ready", fail: 2, err: unauthorized, readyz: internalError, wantCreates: 3, wantCreated: true},
		{name: "401 when ready", fail: -1, err: unauthorized, wantCreates: 1, wantErr: csr.ErrUnauthorized},
		{name: "403", fail: -1, err: forbidden, wantCreates: 1, wantErr: csr.ErrForbidden},
		{name: "TLS verification", fail: -1, err: errUnknownCA, wantCreates: 1, wantErr: csr.ErrTLS},
		{name: "invalid", fail: -1, err: apierrors.NewInvalid(schema.GroupKind{Group: "certificates.k8s.io", Kind: "CertificateSigningRequest"}, "x", nil), wantCreates: 1},
		{name: "re-attached", wantCreates: 1, existing: func(req csr.Request, key crypto.Signer, name string) *certificatesv1.CertificateSigningRequest {
			obj, err := req.Object(name, key)
			if err != nil {
				panic(err)
			}
			return obj
		}},
		{name: "conflict", wantCreates: 1, wantAs: new(*csr.ConflictError), existing: func(req csr.Request, key crypto.Signer, name string) *certificatesv1.CertificateSigningRequest {
			obj, err := req.Object(name, key)
			if err != nil {
				panic(err)
			}
			obj.Spec.SignerName = "example.com/other"
			return obj
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var readyz func() error
			if tt.readyz != nil {
				readyz = func() error { return tt.readyz }
			}
			s, client, clk := testServer(t, nil, readyz)
			req, key, name := nodeRequest(t)
			if tt.existing != nil {
				if _, err := client.CertificatesV1().CertificateSigningRequests().Create(context.Background(), tt.existing(req, key, name), metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				client.ClearActions()
			}
			creates := failCreates(client, tt.fail, tt.err)

			done := make(chan struct{})
			var obj *certificatesv1.CertificateSigningRequest
			var created bool
			var err error
			go func() {
				defer close(done)
				obj, created, err = s.submit(context.Background(), name, req, key)
			}()
			drive(clk, 1, retryBackoff.Cap, done)

			if got := creates.Load(); got != tt.wantCreates {
				t.Errorf("%d creates, want %d", got, tt.wantCreates)
			}
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("submit error = %v, want %v", err, tt.wantErr)
				}
			case tt.wantAs != nil:
				if !errors.As(err, tt.wantAs) {
					t.Errorf("submit error = %v, want %T", err, tt.wantAs)
				}
			case tt.name == "invalid":
				if !apierrors.IsInvalid(err) {
					t.Errorf("submit error = %v, want 422 Invalid", err)
				}
			default:
				if err != nil {
					t.Fatalf("submit: %v", err)
				}
				if obj == nil || obj.Name != name || created != tt.wantCreated {
					t.Errorf("submit = %v, created %v; want %s, created %v", obj, created, name, tt.wantCreated)
				}
			}
		})
	}
}

// TestSubmitGivesUp: while the server stays down, submit retries until
// the request's wait timeout runs out on the clock, then says so with the
// last failure.
func TestSubmitGivesUp(t *testing.T) {
	s, client, clk := testServer(t, nil, nil)
	req, key, name := nodeRequest(t)
	creates := failCreates(client, -1, errRefused)
	ctx, stop := withClockTimeout(context.Background(), clk, 10*time.Minute, waitTimeoutCause)
	t.Cleanup(stop)
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		_, _, err = s.submit(ctx, name, req, key)
	}()
	drive(clk, 2, retryBackoff.Cap, done)
	if err == nil || !strings.Contains(err.Error(), "gave up") || !strings.Contains(err.Error(), "connection refused") ||
		!errors.Is(err, csr.ErrUnreachable) || !errors.Is(err, ErrWaitTimeout) || strings.Contains(err.Error(), " --") {
		t.Errorf("submit error = %v, want ErrWaitTimeout with the last failure, naming no flag", err)
	}
	// Backoff from 0.5s doubling to a 30s cap: about 25 tries in 10m, not hundreds.
	if n := creates.Load(); n < 10 || n > 40 {
		t.Errorf("%d creates in 10 minutes, want backoff", n)
	}
}

// TestPermanent: which errors end a run at once. A 401 depends on the
// server's readiness: retried while it is not ready, believed once it is,
// and believed after unauthorizedGrace when it will not say.
func TestPermanent(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		readyz error
		want   bool
	}{
		{"401, server ready", unauthorized, nil, true},
		{"401, server not ready", unauthorized, internalError, false},
		{"401, server unreachable", unauthorized, errRefused, false},
		{"403", forbidden, nil, true},
		{"TLS verification", errUnknownCA, nil, true},
		{"500", internalError, nil, false},
		{"429", apierrors.NewTooManyRequests("slow down", 1), nil, false},
		{"timeout", apierrors.NewTimeoutError("slow", 1), nil, false},
		{"connection refused", errRefused, nil, false},
		{"bad request", apierrors.NewBadRequest("no"), nil, true},
		{"denied", &csr.OutcomeError{Name: "x", Kind: csr.ErrDenied}, nil, true},
		{"conflict", &csr.ConflictError{Name: "x"}, nil, true},
		{"unusable certificate", &csr.CertificateError{CSR: "x", Problem: csr.ProblemCA}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, _ := testServer(t, nil, func() error { return tt.readyz })
			err := csr.ClassifyServerError(tt.err, s.host, "creating certificate signing request", "x")
			if got := s.permanent(context.Background(), err); got != tt.want {
				t.Errorf("permanent(%v) = %v, want %v", err, got, tt.want)
			}
		})
	}

	t.Run("401, readiness refused, then the grace runs out", func(t *testing.T) {
		s, _, clk := testServer(t, nil, func() error { return unauthorized })
		err := csr.ClassifyServerError(unauthorized, s.host, "", "")
		if s.permanent(context.Background(), err) {
			t.Fatal("first 401 is permanent")
		}
		clk.Step(unauthorizedGrace - time.Second)
		if s.permanent(context.Background(), err) {
			t.Fatal("401 permanent before the grace ran out")
		}
		clk.Step(time.Second)
		if !s.permanent(context.Background(), err) {
			t.Fatal("401 still retried after the grace")
		}
	})
}

// TestWaitForServer: /healthz is polled on the clock until it answers; a
// server that stays silent is tried anyway after ServerWait; an answer
// that can never become a success ends the wait at once.
func TestWaitForServer(t *testing.T) {
	tests := []struct {
		name       string
		failures   int // failing probes before success, -1 for all
		err        error
		wantProbes int32 // exact; 0 means "more than 1"
		wantErr    error
	}{
		{"answers at once", 0, nil, 1, nil},
		{"answers after three failures", 3, errRefused, 4, nil},
		{"answers after 500s", 2, internalError, 3, nil},
		{"never answers: tried anyway", -1, errRefused, 0, nil},
		{"TLS verification fails", -1, errUnknownCA, 1, csr.ErrTLS},
		{"403", -1, forbidden, 1, csr.ErrForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var probes atomic.Int32
			healthz := func() error {
				n := int(probes.Add(1))
				if tt.failures < 0 || n <= tt.failures {
					return tt.err
				}
				return nil
			}
			s, _, clk := testServer(t, healthz, nil)
			done := make(chan struct{})
			var err error
			go func() {
				defer close(done)
				err = s.waitForServer(context.Background(), time.Minute)
			}()
			// Step only while the deadline and the next probe both wait, by
			// more than the longest jittered interval.
			drive(clk, 2, healthzInterval*3/2, done)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("waitForServer = %v, want %v", err, tt.wantErr)
			}
			got := probes.Load()
			if tt.wantProbes != 0 && got != tt.wantProbes || tt.wantProbes == 0 && (got < 2 || got > 31) {
				t.Errorf("%d probes, want %d (0: a minute's worth)", got, tt.wantProbes)
			}
		})
	}

	t.Run("ctx ends", func(t *testing.T) {
		s, _, _ := testServer(t, func() error { return errRefused }, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.waitForServer(ctx, time.Minute); !errors.Is(err, context.Canceled) {
			t.Errorf("waitForServer = %v, want context.Canceled", err)
		}
	})
}

// TestExplain: server errors name the bootstrap kubeconfig and say what to
// do, on one line.
func TestExplain(t *testing.T) {
	s, _, _ := testServer(t, nil, nil)
	tests := []struct {
		err  error
		want []string
	}{
		{unauthorized, []string{"401 Unauthorized", "invalid or expired", "kubeadm token create", "/etc/bootstrap.conf"}},
		{forbidden, []string{"403 Forbidden", "system:node-bootstrapper", "/etc/bootstrap.conf"}},
		{errUnknownCA, []string{"TLS verification", "unknown authority", "certificate-authority", "/etc/bootstrap.conf"}},
	}
	for _, tt := range tests {
		err := s.explain(csr.ClassifyServerError(tt.err, s.host, "creating certificate signing request", "node-csr-x"))
		msg := err.Error()
		for _, w := range tt.want {
			if !strings.Contains(msg, w) || strings.Contains(msg, "\n") {
				t.Errorf("%q does not contain %q on one line", msg, w)
			}
		}
	}
	plain := errors.New("other")
	if got := s.explain(plain); got != plain {
		t.Errorf("explain changed %v to %v", plain, got)
	}
}
