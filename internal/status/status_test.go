package status

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsboot/tlsboot/certstore"
	"github.com/tlsboot/tlsboot/internal/testpki"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// store puts a node certificate valid in [nb, na] into a store of prefix
// in dir, as of clock at.
func store(t *testing.T, dir, prefix string, nb, na, at time.Time) {
	t.Helper()
	is := testpki.NewCA(t).Issue(t, testpki.Spec{NotBefore: nb, NotAfter: na, DNSNames: []string{"n1"}})
	s, err := certstore.Open(certstore.Options{Dir: dir, Prefix: prefix, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(is.CertPEM, is.KeyPEM); err != nil {
		t.Fatal(err)
	}
}

func TestCollect(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(t *testing.T, dir string)
		wantState string
		wantErr   string // Report.Err, "" for a valid client certificate
		check     func(t *testing.T, r *Report)
	}{
		{name: "empty directory", setup: func(*testing.T, string) {}, wantState: StateMissing, wantErr: "is missing"},
		{name: "valid, with a stale file and a pending key", setup: func(t *testing.T, dir string) {
			store(t, dir, "kubelet-client", now.Add(-48*time.Hour), now.Add(-24*time.Hour), now.Add(-48*time.Hour))
			store(t, dir, "kubelet-client", now.Add(-time.Hour), now.Add(23*time.Hour), now.Add(-time.Hour))
			os.WriteFile(filepath.Join(dir, "kubelet-client.key.tmp"), []byte("k"), 0o600)
		}, wantState: StateValid, check: func(t *testing.T, r *Report) {
			c := r.Client()
			if len(c.StaleFiles) != 1 || c.PendingKey == "" || c.SecondsLeft != 23*3600 {
				t.Errorf("stale %v, pending key %q, seconds left %d", c.StaleFiles, c.PendingKey, c.SecondsLeft)
			}
			if !c.RotationFrom.After(c.NotBefore) || c.RotationBy.Before(c.RotationFrom) || !c.RotationBy.Before(c.NotAfter) {
				t.Errorf("rotation window %v..%v outside %v..%v", c.RotationFrom, c.RotationBy, c.NotBefore, c.NotAfter)
			}
			if r.Certificates[1].State != StateMissing {
				t.Errorf("serving certificate state %q, want missing", r.Certificates[1].State)
			}
		}},
		{name: "expired", setup: func(t *testing.T, dir string) {
			store(t, dir, "kubelet-client", now.Add(-48*time.Hour), now.Add(-time.Hour), now.Add(-48*time.Hour))
		}, wantState: StateExpired, wantErr: "is expired"},
		{name: "not yet valid", setup: func(t *testing.T, dir string) {
			store(t, dir, "kubelet-client", now.Add(time.Hour), now.Add(48*time.Hour), now)
		}, wantState: StateNotYetValid, wantErr: "is not_yet_valid"},
		{name: "garbage", setup: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "kubelet-client-current.pem"), []byte("garbage"), 0o600)
		}, wantState: StateUnreadable, wantErr: "is unreadable"},
		{name: "legacy pair, read as the store reads it", setup: func(t *testing.T, dir string) {
			is := testpki.NewCA(t).Issue(t, testpki.Spec{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
			os.WriteFile(filepath.Join(dir, "kubelet-client.crt"), is.CertPEM, 0o600)
			os.WriteFile(filepath.Join(dir, "kubelet-client.key"), is.KeyPEM, 0o600)
		}, wantState: StateValid, check: func(t *testing.T, r *Report) {
			if c := r.Client(); c.Path != filepath.Join(r.CertDir, "kubelet-client.crt") {
				t.Errorf("path %q, want the legacy certificate", c.Path)
			}
		}},
		{name: "legacy certificate without its key", setup: func(t *testing.T, dir string) {
			is := testpki.NewCA(t).Issue(t, testpki.Spec{})
			os.WriteFile(filepath.Join(dir, "kubelet-client.crt"), is.CertPEM, 0o600)
		}, wantState: StateMissing, wantErr: "is missing"},
		{name: "serving certificate too", setup: func(t *testing.T, dir string) {
			store(t, dir, "kubelet-client", now.Add(-time.Hour), now.Add(time.Hour), now)
			store(t, dir, "kubelet-server", now.Add(-time.Hour), now.Add(time.Hour), now)
		}, wantState: StateValid, check: func(t *testing.T, r *Report) {
			if s := r.Certificates[1]; s.State != StateValid || len(s.DNSNames) != 1 {
				t.Errorf("serving: %+v", s)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			r, err := Collect(Options{CertDir: dir, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Client().State; got != tt.wantState {
				t.Fatalf("client state = %q, want %q", got, tt.wantState)
			}
			err = r.Err()
			if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Err() = %v, want %q", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

func TestCollectMissingDirectory(t *testing.T) {
	if _, err := Collect(Options{CertDir: filepath.Join(t.TempDir(), "nope")}); err == nil || !strings.Contains(err.Error(), "certificate directory") {
		t.Fatalf("Collect = %v, want an error naming the certificate directory", err)
	}
}
