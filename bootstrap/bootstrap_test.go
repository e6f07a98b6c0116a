package bootstrap

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"

	"github.com/tlsboot/tlsboot/certstore"
	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/internal/testpki"
)

func validOptions() Options {
	return Options{KubeconfigPath: "k", BootstrapKubeconfigPath: "b", CertDir: "d", NodeName: "node-1"}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Options)
		wantErr string
	}{
		{"valid", func(*Options) {}, ""},
		{"no kubeconfig", func(o *Options) { o.KubeconfigPath = "" }, "kubeconfig path is required"},
		{"no bootstrap kubeconfig", func(o *Options) { o.BootstrapKubeconfigPath = "" }, "bootstrap kubeconfig path is required"},
		{"no cert dir", func(o *Options) { o.CertDir = "" }, "certificate directory is required"},
		{"no node name", func(o *Options) { o.NodeName = "" }, "node name is required"},
		{"bad node name", func(o *Options) { o.NodeName = "Node_1" }, `node name "Node_1" is not valid`},
		{"prefix with slash", func(o *Options) { o.CertPrefix = "a/b" }, "path separator"},
		{"short expiration", func(o *Options) { o.Expiration = time.Minute }, "at least 10m"},
		{"long expiration", func(o *Options) { o.Expiration = csr.MaxExpiration + time.Hour }, "too long"},
		{"bad key type", func(o *Options) { o.KeyType = "dsa" }, "key type"},
		{"negative timeout", func(o *Options) { o.WaitTimeout = -1 }, "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := validOptions()
			tt.mutate(&o)
			err := o.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// issue returns a node certificate for key valid in [notBefore, notAfter].
func issue(t *testing.T, key *ecdsa.PrivateKey, notBefore, notAfter time.Time) []byte {
	t.Helper()
	return testpki.NewCA(t).Issue(t, testpki.Spec{Key: key.Public(), Subject: testpki.Node("node-1"), NotBefore: notBefore, NotAfter: notAfter}).CertPEM
}

func newKey(t *testing.T) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key := testpki.Key(t, "ecdsa").(*ecdsa.PrivateKey)
	return key, testpki.KeyPEM(t, key)
}

// TestLoadKey: the current certificate's key is reused unless FreshKey;
// otherwise the store's pending key, which the store creates, reuses or
// replaces (corrupt, or the current certificate's own key) in one way for
// bootstrap and rotation.
func TestLoadKey(t *testing.T) {
	storedKey, storedPEM := newKey(t)
	tmpKey, tmpPEM := newKey(t)
	tests := []struct {
		name       string
		stored     bool   // a certificate (expired) is in the store
		freshKey   bool   // Options.FreshKey
		tmp        []byte // content of the temporary key, nil for none
		want       *ecdsa.PublicKey
		wantTmp    bool   // the key in use is the temporary key on disk
		wantLogged string // a level-0 line containing this
	}{
		{name: "store key wins over temp key", stored: true, tmp: tmpPEM, want: &storedKey.PublicKey},
		{name: "temp key reused", tmp: tmpPEM, want: &tmpKey.PublicKey, wantTmp: true},
		{name: "fresh key: temp key reused", stored: true, freshKey: true, tmp: tmpPEM, want: &tmpKey.PublicKey, wantTmp: true},
		{name: "new key generated and kept", wantTmp: true},
		{name: "fresh key: new key generated", stored: true, freshKey: true, wantTmp: true},
		{name: "corrupt temp key replaced", tmp: []byte("garbage"), wantTmp: true, wantLogged: "does not parse as a private key"},
		{name: "fresh key: temp key of the current certificate replaced", stored: true, freshKey: true, tmp: storedPEM, wantTmp: true,
			wantLogged: "is the key of the current certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			ctx := klog.NewContext(context.Background(), textlogger.NewLogger(textlogger.NewConfig(textlogger.Output(&logs), textlogger.Verbosity(0))))
			dir, opts, store := storeInTempDir(t)
			opts.FreshKey = tt.freshKey
			if tt.stored {
				if _, err := store.Update(issue(t, storedKey, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)), storedPEM); err != nil {
					t.Fatal(err)
				}
			}
			tmpPath := filepath.Join(dir, "kubelet-client.key.tmp")
			if tt.tmp != nil {
				if err := os.WriteFile(tmpPath, tt.tmp, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			key, keyPEM, err := loadKey(ctx, store, opts)
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := csr.ParsePrivateKeyPEM(keyPEM)
			if err != nil || !parsed.Public().(*ecdsa.PublicKey).Equal(key.Public()) {
				t.Fatalf("returned PEM does not hold the returned key: %v", err)
			}
			if tt.want != nil {
				mustEqual(t, key.Public(), tt.want)
			}
			if tt.wantTmp {
				onDisk, err := os.ReadFile(tmpPath)
				if err != nil || string(onDisk) != string(keyPEM) {
					t.Errorf("temporary key on disk is not the key in use: %v", err)
				}
				if fi, _ := os.Stat(tmpPath); fi.Mode().Perm() != 0o600 {
					t.Errorf("temporary key mode = %v, want 0600", fi.Mode().Perm())
				}
			}
			if tt.stored && tt.freshKey && key.Public().(*ecdsa.PublicKey).Equal(&storedKey.PublicKey) {
				t.Error("FreshKey reused the current certificate's key")
			}
			out := logs.String()
			if tt.wantLogged != "" && (strings.Count(out, "\n") != 1 || !strings.Contains(out, tt.wantLogged) || !strings.Contains(out, tmpPath)) {
				t.Errorf("log %q: want one line naming %s and %q", out, tmpPath, tt.wantLogged)
			}
			if tt.wantLogged == "" && out != "" {
				t.Errorf("unexpected level-0 log: %q", out)
			}
		})
	}
}

func mustEqual(t *testing.T, got any, want *ecdsa.PublicKey) {
	t.Helper()
	if k, ok := got.(*ecdsa.PublicKey); !ok || !k.Equal(want) {
		t.Errorf("key in use is not the expected one")
	}
}

// storeInTempDir returns valid options (defaults set) whose certificate
// directory is a new temporary directory, and the store opened on it.
func storeInTempDir(t *testing.T) (string, Options, *certstore.Store) {
	t.Helper()
	dir := t.TempDir()
	opts := validOptions()
	opts.CertDir = dir
	opts.setDefaults()
	store, err := certstore.Open(certstore.Options{Dir: dir, Prefix: opts.CertPrefix})
	if err != nil {
		t.Fatal(err)
	}
	return dir, opts, store
}
