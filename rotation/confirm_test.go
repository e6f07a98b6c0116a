package rotation

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsboot/tlsboot/csr"
)

// TestConfirm: an issued certificate is stored only once Confirm accepts
// it. One the API server rejects is not stored, the current certificate
// stays, the failure is identity_rejected and the pending key is dropped,
// so that the next attempt asks under a new CSR; one the server could not
// be asked about keeps the pending key, so that the next attempt
// re-attaches to the same CSR and asks again.
func TestConfirm(t *testing.T) {
	unreachable := &csr.ServerError{Kind: csr.ErrUnreachable, Err: errors.New("connection refused")}
	for _, tc := range []struct {
		name     string
		first    error // Confirm's answer to the first certificate; later ones are accepted
		want     Failure
		sameName bool // the second attempt re-attaches to the first CSR
	}{
		{"rejected", &csr.IdentityError{CSR: "x", Unauthorized: true}, FailIdentity, false},
		{"another identity", &csr.IdentityError{CSR: "x", User: "system:node:other"}, FailIdentity, false},
		{"server unreachable", unreachable, FailUnreachable, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.ca.storeCert(t, f.store, node, f.clk.Now(), time.Hour)
			old, _ := f.store.Current()
			var calls atomic.Int32
			var names [2]atomic.Value
			f.opts.Confirm = func(_ context.Context, name string, certPEM, keyPEM []byte) error {
				n := calls.Add(1)
				if n <= 2 {
					names[n-1].Store(name)
				}
				if len(certPEM) == 0 || len(keyPEM) == 0 {
					t.Errorf("Confirm got %d bytes of certificate and %d of key", len(certPEM), len(keyPEM))
				}
				if n == 1 {
					return tc.first
				}
				return nil
			}
			f.start(t)
			f.noRotation(t)
			f.m.Trigger()
			f.ev.wantFailed(t, tc.want)
			if cur, err := f.store.Current(); err != nil || !cur.Leaf.Equal(old.Leaf) {
				t.Fatalf("the current certificate changed after a refused one (%v)", err)
			}
			_, err := os.Stat(f.store.PendingKeyPath())
			if kept := err == nil; kept != tc.sameName {
				t.Errorf("pending key kept %v, want %v", kept, tc.sameName)
			}
			f.noRotation(t)
			f.clk.Step(DefaultInitialBackoff * 2)
			f.ev.wantRotated(t, ReasonForced)
			first, second := names[0].Load(), names[1].Load()
			if (first == second) != tc.sameName {
				t.Errorf("CSRs %v then %v: same name %v, want %v", first, second, first == second, tc.sameName)
			}
			if cur, _ := f.store.Current(); cur.Leaf.Equal(old.Leaf) {
				t.Error("the confirmed certificate was not stored")
			}
		})
	}
}
