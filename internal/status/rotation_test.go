package status

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/tlsboot/tlsboot/certstore"
	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/internal/testpki"
	"github.com/tlsboot/tlsboot/rotation"
)

// TestRotationWindowMatchesManager checks that `tlsboot status` shows the
// rotation window the agent's Manager uses: both take the stored time from
// the store, for a legacy .crt/.key pair as for a -current.pem pair. The
// stored time is set inside the signer's backdate, where it moves the
// deadline: a reader that cannot find it (zero) computes another window.
func TestRotationWindowMatchesManager(t *testing.T) {
	nb, na := now.Add(-10*time.Minute), now.Add(50*time.Minute)
	storedAt := nb.Add(2 * time.Minute) // within rotation.DefaultBackdate of nb
	tests := []struct {
		name string
		// put stores a certificate of is in dir and returns the file
		// whose time is the stored time.
		put func(t *testing.T, dir string, is testpki.Issued) string
	}{
		{name: "current pair", put: func(t *testing.T, dir string, is testpki.Issued) string {
			s, err := certstore.Open(certstore.Options{Dir: dir, Prefix: "kubelet-client"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Update(is.CertPEM, is.KeyPEM); err != nil {
				t.Fatal(err)
			}
			return s.CurrentPath() // Chtimes follows the link to the pair file
		}},
		{name: "legacy pair", put: func(t *testing.T, dir string, is testpki.Issued) string {
			crt := filepath.Join(dir, "kubelet-client.crt")
			if err := os.WriteFile(crt, is.CertPEM, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "kubelet-client.key"), is.KeyPEM, 0o600); err != nil {
				t.Fatal(err)
			}
			return crt
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			is := testpki.NewCA(t).Issue(t, testpki.Spec{NotBefore: nb, NotAfter: na})
			if err := os.Chtimes(tt.put(t, dir, is), storedAt, storedAt); err != nil {
				t.Fatal(err)
			}
			r, err := Collect(Options{CertDir: dir, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			c := r.Client()
			if c.State != StateValid {
				t.Fatalf("status: state %q (%s), want valid", c.State, c.Error)
			}
			for _, w := range []struct {
				name   string
				r      float64
				status time.Time
			}{{"earliest", 0, c.RotationFrom}, {"latest", 1, c.RotationBy}} {
				if got := managerDeadline(t, dir, w.r); !got.Equal(w.status) {
					t.Errorf("%s deadline: Manager %v, status %v", w.name, got.UTC(), w.status)
				}
			}
		})
	}
}

// managerDeadline runs a Manager on the client store in dir, with jitter
// r, until it reports the schedule of the stored certificate, and returns
// that schedule's deadline.
func managerDeadline(t *testing.T, dir string, r float64) time.Time {
	t.Helper()
	store, err := certstore.Open(certstore.Options{Dir: dir, Prefix: "kubelet-client"})
	if err != nil {
		t.Fatal(err)
	}
	reported := make(chan struct{}, 1)
	m, err := rotation.New(rotation.Options{
		Name:     "client",
		Store:    store,
		Template: func(pub crypto.PublicKey) csr.Request { return csr.NodeClient("n1", pub) },
		Client: func(context.Context) (kubernetes.Interface, error) {
			return nil, errors.New("this test never renews")
		},
		Clock: clocktesting.NewFakeClock(now),
		Rand:  func() float64 { return r },
		Hooks: rotation.Hooks{Current: func(_ string, cert *x509.Certificate) {
			if cert != nil {
				select {
				case reported <- struct{}{}:
				default:
				}
			}
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-reported:
	case <-done:
		t.Fatal("the Manager stopped before it reported a certificate")
	}
	return m.Status().Schedule.Deadline
}
