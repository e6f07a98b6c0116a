package rotation

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/internal/atomicfile"
)

// TestUnsafeCertificateNotStored: a renewal answered with a CA certificate,
// or with a certificate that does not chain to Roots, fails as a template
// mismatch with a *csr.CertificateError naming the CSR, and the store keeps
// the old certificate.
func TestUnsafeCertificateNotStored(t *testing.T) {
	for _, answer := range []string{"ca", "foreign"} {
		t.Run(answer, func(t *testing.T) {
			f := newFixture(t)
			f.ca.storeCert(t, f.store, node, f.clk.Now(), 2*time.Minute)
			old, _ := f.store.Current()
			roots := x509.NewCertPool()
			roots.AddCert(f.ca.Cert)
			f.opts.Roots = func() (*x509.CertPool, error) { return roots, nil }
			f.signer.decide = func(int) string { return answer }
			lastFailure := f.captureFailures()
			f.start(t)
			f.noRotation(t)
			f.m.Trigger()
			f.ev.wantFailed(t, FailTemplate)
			err := lastFailure()
			var ce *csr.CertificateError
			if !errors.As(err, &ce) || ce.CSR == "" || ce.CSR != f.signer.seen()[0] {
				t.Fatalf("failure %v, want a *csr.CertificateError naming CSR %v", err, f.signer.seen())
			}
			want := map[string]csr.Problem{"ca": csr.ProblemCA, "foreign": csr.ProblemChain}[answer]
			if ce.Problem != want {
				t.Errorf("problem %q, want %q", ce.Problem, want)
			}
			cur, err := f.store.Current()
			if err != nil || cur.Leaf.SerialNumber.Cmp(old.Leaf.SerialNumber) != 0 {
				t.Errorf("the store no longer holds the old certificate: %v", err)
			}
		})
	}
}

// TestUnsafeTempKeyLeftAlone: a pending key that is a symbolic link (or
// 0644) is neither used, replaced nor removed: the renewal fails as a
// store failure naming it.
func TestUnsafeTempKeyLeftAlone(t *testing.T) {
	for _, kind := range []string{"symlink", "0644"} {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t)
			f.ca.storeCert(t, f.store, node, f.clk.Now(), 2*time.Minute)
			target := filepath.Join(t.TempDir(), "target")
			if err := os.WriteFile(target, []byte("not yours"), 0o644); err != nil {
				t.Fatal(err)
			}
			switch kind {
			case "symlink":
				if err := os.Symlink(target, f.store.PendingKeyPath()); err != nil {
					t.Fatal(err)
				}
			case "0644":
				if err := os.WriteFile(f.store.PendingKeyPath(), []byte("planted"), 0o600); err != nil {
					t.Fatal(err)
				}
				os.Chmod(f.store.PendingKeyPath(), 0o644)
			}
			before, _ := os.Lstat(f.store.PendingKeyPath())
			lastFailure := f.captureFailures()
			// A pending key at start resumes the renewal at once.
			f.start(t)
			f.ev.wantFailed(t, FailStore)
			err := lastFailure()
			var unsafe *atomicfile.UnsafeFileError
			if !errors.As(err, &unsafe) || unsafe.Path != f.store.PendingKeyPath() {
				t.Fatalf("failure %v, want an *atomicfile.UnsafeFileError naming the key", err)
			}
			after, err := os.Lstat(f.store.PendingKeyPath())
			if err != nil || !os.SameFile(before, after) || after.Mode() != before.Mode() {
				t.Errorf("the pending key was changed: %v", err)
			}
			if data, _ := os.ReadFile(target); string(data) != "not yours" {
				t.Error("the link's target was written")
			}
			if len(f.signer.seen()) != 0 {
				t.Error("a CSR was sent")
			}
		})
	}
}

// captureFailures wraps the fixture's Failed hook (call it before start) and
// returns a function that reports the error of the latest failure.
func (f *fixture) captureFailures() func() error {
	var mu sync.Mutex
	var failure error
	failed := f.opts.Hooks.Failed
	f.opts.Hooks.Failed = func(name string, fl Failure, err error) {
		mu.Lock()
		failure = err
		mu.Unlock()
		failed(name, fl, err)
	}
	return func() error {
		mu.Lock()
		defer mu.Unlock()
		return failure
	}
}
