package bootstrap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/identity"
	"github.com/tlsboot/tlsboot/internal/testpki"
)

// answerReviews makes client answer SelfSubjectReviews with answer: the
// user and groups it returns, or its error. A fake clientset has one
// identity for every request, so this stands for what the API server says
// of the issued certificate; test/e2e checks the real server.
func answerReviews(client *fake.Clientset, answer func() (authenticationv1.UserInfo, error)) {
	client.PrependReactor("create", "selfsubjectreviews", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
		u, err := answer()
		if err != nil {
			return true, nil, err
		}
		return true, &authenticationv1.SelfSubjectReview{Status: authenticationv1.SelfSubjectReviewStatus{UserInfo: u}}, nil
	})
}

// asNode answers SelfSubjectReviews as system:node:<name> in system:nodes.
func asNode(client *fake.Clientset, name string) {
	answerReviews(client, func() (authenticationv1.UserInfo, error) {
		return authenticationv1.UserInfo{Username: "system:node:" + name, Groups: []string{"system:nodes", "system:authenticated"}}, nil
	})
}

// TestRunConfirmsIdentity: the issued certificate is stored only once the
// API server authenticates it as system:node:<name> in system:nodes. One
// it rejects (401), takes for someone else, or cannot confirm is not
// stored and no kubeconfig is written; a rejected one also drops the
// pending key, so that the next run asks with a new key under a new CSR
// instead of fetching the same certificate again (issue 17, the recovery
// loop). An API server that does not answer the confirmation at first is
// asked again, and the certificate then stored.
func TestRunConfirmsIdentity(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "authentication.k8s.io", Resource: "selfsubjectreviews"}, "", errors.New("no"))
	notFound := apierrors.NewNotFound(schema.GroupResource{Group: "authentication.k8s.io", Resource: "selfsubjectreviews"}, "")
	node := authenticationv1.UserInfo{Username: "system:node:node-1", Groups: []string{"system:nodes"}}
	for _, tc := range []struct {
		name    string
		answers []any // UserInfo or error, in order; the last one repeats
		check   func(error) bool
		keyKept bool
	}{
		{"confirmed", []any{node}, func(err error) bool { return err == nil }, false},
		{"rejected (401)", []any{apierrors.NewUnauthorized("Unauthorized")}, func(err error) bool {
			var id *csr.IdentityError
			return errors.As(err, &id) && id.Unauthorized && strings.Contains(err.Error(), "401 Unauthorized")
		}, false},
		{"another node", []any{authenticationv1.UserInfo{Username: "system:node:node-2", Groups: []string{"system:nodes"}}}, func(err error) bool {
			var id *csr.IdentityError
			return errors.As(err, &id) && id.User == "system:node:node-2" && strings.Contains(err.Error(), `as "system:node:node-2"`)
		}, false},
		{"not in system:nodes", []any{authenticationv1.UserInfo{Username: "system:node:node-1", Groups: []string{"system:authenticated"}}}, func(err error) bool {
			var id *csr.IdentityError
			return errors.As(err, &id) && strings.Contains(err.Error(), "not as system:node:node-1 in system:nodes")
		}, false},
		{"forbidden", []any{forbidden}, func(err error) bool {
			return errors.Is(err, csr.ErrForbidden) && strings.Contains(err.Error(), "may not create selfsubjectreviews")
		}, true},
		{"not served", []any{notFound}, func(err error) bool {
			var ns *identity.NotServedError
			return errors.As(err, &ns)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset()
			fakeSigner(t, client, testpki.NewCA(t))
			opts := fakeOptions(t, client, testpki.NewCA(t))
			var n atomic.Int32 // reviews answered
			answerReviews(client, func() (authenticationv1.UserInfo, error) {
				a := tc.answers[min(int(n.Add(1))-1, len(tc.answers)-1)]
				if err, ok := a.(error); ok {
					return authenticationv1.UserInfo{}, err
				}
				return a.(authenticationv1.UserInfo), nil
			})
			_, err := Run(klog.NewContext(context.Background(), klog.Background()), opts)
			if !tc.check(err) {
				t.Fatalf("Run error = %v", err)
			}
			if err != nil {
				if line := err.Error(); !strings.Contains(line, "node-csr-") || strings.Contains(line, "\n") {
					t.Errorf("error %q does not name the CSR on one line", line)
				}
			}
			if got := int(n.Load()); got < len(tc.answers) {
				t.Errorf("%d SelfSubjectReviews, want %d", got, len(tc.answers))
			}
			_, kerr := os.Stat(opts.KubeconfigPath)
			_, cerr := os.Stat(filepath.Join(opts.CertDir, "kubelet-client-current.pem"))
			if stored := kerr == nil && cerr == nil; stored != (err == nil) {
				t.Errorf("kubeconfig and certificate stored %v (%v, %v), want %v", stored, kerr, cerr, err == nil)
			}
			_, perr := os.Stat(filepath.Join(opts.CertDir, "kubelet-client.key.tmp"))
			if kept := perr == nil; kept != tc.keyKept {
				t.Errorf("pending key kept %v, want %v", kept, tc.keyKept)
			}
		})
	}
}

// TestConfirmRetries: an API server that does not answer the
// confirmation is asked again after a pause on the clock, until it
// answers; one that stays silent until the wait timeout ends the run with
// ErrWaitTimeout and the last failure, naming the CSR.
func TestConfirmRetries(t *testing.T) {
	unavailable := apierrors.NewServiceUnavailable("starting")
	node := authenticationv1.UserInfo{Username: "system:node:node-1", Groups: []string{"system:nodes"}}
	for _, tc := range []struct {
		name     string
		failures int // reviews answered 503 before the node's identity; -1: all
	}{
		{"answers after two failures", 2},
		{"never answers", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, client, clk := testServer(t, nil, nil)
			s.cluster = &rest.Config{Host: s.host}
			s.newClient = func(*rest.Config) (kubernetes.Interface, error) { return client, nil }
			var n atomic.Int32
			answerReviews(client, func() (authenticationv1.UserInfo, error) {
				if i := int(n.Add(1)); tc.failures < 0 || i <= tc.failures {
					return authenticationv1.UserInfo{}, unavailable
				}
				return node, nil
			})
			ctx, stop := withClockTimeout(context.Background(), clk, 10*time.Minute, waitTimeoutCause)
			t.Cleanup(stop)
			done := make(chan struct{})
			var err error
			go func() {
				defer close(done)
				err = s.confirm(ctx, "node-csr-x", "node-1", []byte("cert"), []byte("key"))
			}()
			drive(clk, 2, time.Second, done) // the wait timeout and the pause
			if tc.failures >= 0 {
				if err != nil || int(n.Load()) != tc.failures+1 {
					t.Fatalf("confirm = %v after %d reviews, want success after %d", err, n.Load(), tc.failures+1)
				}
				return
			}
			if !errors.Is(err, ErrWaitTimeout) || !errors.Is(err, csr.ErrUnreachable) || !strings.Contains(err.Error(), "node-csr-x") {
				t.Fatalf("confirm = %v, want ErrWaitTimeout with the last failure, naming the CSR", err)
			}
			// Backoff from 0.5 s to a 30 s cap: about 25 reviews in 10 minutes.
			if got := n.Load(); got < 10 || got > 40 {
				t.Errorf("%d reviews in 10 minutes, want backoff", got)
			}
		})
	}
}

// TestRunClientCAFile: with ClientCAFile, an issued certificate must also
// chain to that file's CA; one from another CA is refused as
// csr.ProblemChain before the API server is asked, and the pending key is
// dropped.
func TestRunClientCAFile(t *testing.T) {
	signerCA, other := testpki.NewCA(t), testpki.NewCA(t)
	for _, tc := range []struct {
		name string
		file *testpki.CA
		ok   bool
	}{
		{"signer's CA", signerCA, true},
		{"another CA", other, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset()
			fakeSigner(t, client, signerCA)
			opts := fakeOptions(t, client, testpki.NewCA(t)) // the server's CA is a third one
			opts.ClientCAFile = filepath.Join(t.TempDir(), "client-ca.crt")
			if err := os.WriteFile(opts.ClientCAFile, tc.file.PEM(), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Run(context.Background(), opts)
			var ce *csr.CertificateError
			switch {
			case tc.ok && err != nil:
				t.Fatalf("Run = %v", err)
			case !tc.ok && (!errors.As(err, &ce) || ce.Problem != csr.ProblemChain):
				t.Fatalf("Run error = %v, want %q", err, csr.ProblemChain)
			}
			if _, err := os.Stat(filepath.Join(opts.CertDir, "kubelet-client.key.tmp")); !os.IsNotExist(err) {
				t.Errorf("pending key after the run: %v", err)
			}
		})
	}
	opts := fakeOptions(t, fake.NewClientset(), signerCA)
	opts.ClientCAFile = filepath.Join(t.TempDir(), "missing.crt")
	var re *csr.RootsError
	if _, err := Run(context.Background(), opts); !errors.As(err, &re) || re.File != opts.ClientCAFile {
		t.Errorf("Run with a missing ClientCAFile = %v, want a *csr.RootsError naming it", err)
	}
}
