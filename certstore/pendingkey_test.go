package certstore_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/tlsboot/tlsboot/certstore"
	"github.com/tlsboot/tlsboot/internal/atomicfile"
	"github.com/tlsboot/tlsboot/internal/testpki"
)

// keyGen returns a generator of ECDSA P-256 keys that counts its calls.
func keyGen(calls *atomic.Int32) func() (crypto.Signer, error) {
	return func() (crypto.Signer, error) {
		calls.Add(1)
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
}

func samePublic(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// pending is what LoadPendingKey returned.
type pending struct {
	key      crypto.Signer
	pem      []byte
	created  bool
	replaced string
}

func loadPending(s *certstore.Store, calls *atomic.Int32) (pending, error) {
	var p pending
	var err error
	p.key, p.pem, p.created, p.replaced, err = s.LoadPendingKey(keyGen(calls))
	return p, err
}

// wantPendingFile checks that the pending key file is a private regular
// file holding exactly k.pem.
func wantPendingFile(t *testing.T, s *certstore.Store, k pending) {
	t.Helper()
	fi, err := os.Lstat(s.PendingKeyPath())
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 || k.created && fi.Mode().Perm() != 0o600 {
		t.Errorf("pending key file has mode %v, want a private regular file (0600 when created)", fi.Mode())
	}
	data, err := os.ReadFile(s.PendingKeyPath())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, k.pem) {
		t.Error("pending key file does not hold the returned PEM")
	}
}

// TestPendingKeyPath: the kubelet's name, in the store's absolute directory.
func TestPendingKeyPath(t *testing.T) {
	dir := t.TempDir()
	s := open(t, certstore.Options{Dir: dir})
	if got, want := s.PendingKeyPath(), filepath.Join(dir, prefix+".key.tmp"); got != want {
		t.Errorf("PendingKeyPath = %q, want %q", got, want)
	}
}

// TestLoadPendingKey: one behaviour for every state of <prefix>.key.tmp,
// used by bootstrap and rotation alike. A usable key is reused; a safe file
// that can never be used is replaced, saying why; an unsafe one is left
// exactly as it is, with an error naming it.
func TestLoadPendingKey(t *testing.T) {
	ca := newIssuer(t)
	valid := testpki.Key(t, "ecdsa")
	validPEM := testpki.KeyPEM(t, valid)
	rsaKey := testpki.Key(t, "rsa")
	pkcs8, err := x509.MarshalPKCS8PrivateKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edPKCS8, err := x509.MarshalPKCS8PrivateKey(edKey)
	if err != nil {
		t.Fatal(err)
	}
	current := ca.leaf(t, "ecdsa", "system:node:n")

	type want int
	const (
		created want = iota
		reused
		replaced
		refused
	)
	tests := []struct {
		name       string
		setup      func(t *testing.T, s *certstore.Store, path string)
		want       want
		wantKey    crypto.PublicKey // for reused
		wantReason string           // for replaced; for refused, in the error
	}{
		{name: "missing", want: created},
		{name: "valid EC key", want: reused, wantKey: valid.Public(), setup: func(t *testing.T, s *certstore.Store, path string) {
			writeFile(t, path, validPEM, 0o600)
		}},
		{name: "valid PKCS #8 RSA key", want: reused, wantKey: rsaKey.Public(), setup: func(t *testing.T, s *certstore.Store, path string) {
			writeFile(t, path, pemBlock("PRIVATE KEY", pkcs8), 0o600)
		}},
		{name: "owner-only mode 0400", want: reused, wantKey: valid.Public(), setup: func(t *testing.T, s *certstore.Store, path string) {
			writeFile(t, path, validPEM, 0o400)
		}},
		{name: "valid key, another certificate is current", want: reused, wantKey: valid.Public(), setup: func(t *testing.T, s *certstore.Store, path string) {
			update(t, s, current)
			writeFile(t, path, validPEM, 0o600)
		}},
		{name: "garbage", want: replaced, wantReason: "does not parse as a private key", setup: func(t *testing.T, s *certstore.Store, path string) {
			writeFile(t, path, []byte("garbage"), 0o600)
		}},
		{name: "empty", want: replaced, wantReason: "does not parse as a private key", setup: func(t *testing.T, s *certstore.Store, path string) {
			writeFile(t, path, nil, 0o600)
		}},
		{name: "corrupt EC block", want: replaced, wantReason: "PEM block 1 (EC PRIVATE KEY)", setup: func(t *testing.T, s *certstore.Store, path string) {
			writeFile(t, path, []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"), 0o600)
		}},
		{name: "Ed25519 key", want: replaced, wantReason: "want ECDSA or RSA", setup: func(t *testing.T, s *certstore.Store, path string) {
			writeFile(t, path, pemBlock("PRIVATE KEY", edPKCS8), 0o600)
		}},
		{name: "larger than the read limit", want: replaced, wantReason: "larger than 1024 KiB", setup: func(t *testing.T, s *certstore.Store, path string) {
			writeFile(t, path, bytes.Repeat([]byte("A"), atomicfile.MaxReadSize+1), 0o600)
		}},
		{name: "stale: the current certificate's key", want: replaced, wantReason: "is the key of the current certificate", setup: func(t *testing.T, s *certstore.Store, path string) {
			update(t, s, current)
			writeFile(t, path, current.key, 0o600)
		}},
		{name: "symbolic link to a valid key", want: refused, wantReason: "is a symbolic link", setup: func(t *testing.T, s *certstore.Store, path string) {
			target := filepath.Join(t.TempDir(), "planted.key")
			writeFile(t, target, validPEM, 0o600)
			symlink(t, target, path)
		}},
		{name: "dangling symbolic link", want: refused, wantReason: "is a symbolic link", setup: func(t *testing.T, s *certstore.Store, path string) {
			symlink(t, filepath.Join(t.TempDir(), "will-be-created"), path)
		}},
		{name: "FIFO", want: refused, wantReason: "not a regular file (a named pipe)", setup: func(t *testing.T, s *certstore.Store, path string) {
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "directory", want: refused, wantReason: "not a regular file (a directory)", setup: func(t *testing.T, s *certstore.Store, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "mode 0644", want: refused, wantReason: "has mode 0644", setup: func(t *testing.T, s *certstore.Store, path string) {
			writeFile(t, path, validPEM, 0o644)
		}},
		{name: "garbage with mode 0640", want: refused, wantReason: "has mode 0640", setup: func(t *testing.T, s *certstore.Store, path string) {
			writeFile(t, path, []byte("garbage"), 0o640)
		}},
		{name: "owned by another user", want: refused, wantReason: "is owned by uid", setup: func(t *testing.T, s *certstore.Store, path string) {
			writeFile(t, path, validPEM, 0o600)
			if err := os.Lchown(path, os.Geteuid()+4242, -1); err != nil {
				t.Skipf("cannot chown as uid %d: %v", os.Geteuid(), err)
			}
		}},
		{name: "certificate directory made writable after Open", want: refused, wantReason: "chmod 700", setup: func(t *testing.T, s *certstore.Store, path string) {
			writeFile(t, path, validPEM, 0o600)
			if err := os.Chmod(s.Dir(), 0o777); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(s.Dir(), 0o700) })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t, certstore.Options{Dir: t.TempDir()})
			path := s.PendingKeyPath()
			if tt.setup != nil {
				tt.setup(t, s, path)
			}
			before := fileState(t, path)
			var calls atomic.Int32
			k, err := loadPending(s, &calls)

			if tt.want == refused {
				if err == nil {
					t.Fatal("LoadPendingKey succeeded")
				}
				msg := err.Error()
				if !strings.Contains(msg, path) || !strings.Contains(msg, tt.wantReason) || strings.Contains(msg, "\n") {
					t.Errorf("error %q does not name %s and %q on one line", msg, path, tt.wantReason)
				}
				var unsafe *atomicfile.UnsafeFileError
				var insecure *atomicfile.InsecureDirError
				if !errors.As(err, &unsafe) && !errors.As(err, &insecure) {
					t.Errorf("error %v is neither an *atomicfile.UnsafeFileError nor an *atomicfile.InsecureDirError", err)
				}
				if errors.Is(err, fs.ErrNotExist) {
					t.Errorf("error %v wraps fs.ErrNotExist: a caller would take it for no pending key", err)
				}
				if calls.Load() != 0 {
					t.Error("a key was generated")
				}
				if after := fileState(t, path); after != before {
					t.Errorf("the file changed: before %s, after %s", before, after)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadPendingKey: %v", err)
			}
			wantPendingFile(t, s, k)
			switch tt.want {
			case created, replaced:
				if !k.created || calls.Load() != 1 {
					t.Errorf("Created = %v after %d generate calls, want a new key from one call", k.created, calls.Load())
				}
				if tt.want == created && k.replaced != "" {
					t.Errorf("Replaced = %q for a missing file", k.replaced)
				}
				if tt.want == replaced && !strings.Contains(k.replaced, tt.wantReason) {
					t.Errorf("Replaced = %q, want it to contain %q", k.replaced, tt.wantReason)
				}
				if strings.Contains(k.replaced, "\n") || strings.Contains(k.replaced, "BEGIN") {
					t.Errorf("Replaced = %q is not one line free of key material", k.replaced)
				}
			case reused:
				if k.created || k.replaced != "" || calls.Load() != 0 {
					t.Errorf("Created = %v, Replaced = %q, %d generate calls: want the existing key reused", k.created, k.replaced, calls.Load())
				}
				if !samePublic(k.key.Public(), tt.wantKey) {
					t.Error("the returned key is not the stored one")
				}
				if after := fileState(t, path); after != before {
					t.Errorf("the file changed: before %s, after %s", before, after)
				}
			}
			if leftovers := tempLeftovers(t, s.Dir()); len(leftovers) > 0 {
				t.Errorf("temporary files left: %v", leftovers)
			}
			// The next call returns the same key without generating.
			again, err := loadPending(s, &calls)
			if err != nil || again.created || !bytes.Equal(again.pem, k.pem) {
				t.Errorf("second LoadPendingKey = %+v, %v: want the same key, not created", again, err)
			}
		})
	}
}

// TestLoadPendingKeyGenerateError: a failing or unusable generator leaves
// no file behind.
func TestLoadPendingKeyGenerateError(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for name, gen := range map[string]func() (crypto.Signer, error){
		"error":   func() (crypto.Signer, error) { return nil, errors.New("no entropy") },
		"ed25519": func() (crypto.Signer, error) { return ed, nil },
	} {
		t.Run(name, func(t *testing.T) {
			s := open(t, certstore.Options{Dir: t.TempDir()})
			key, _, _, _, err := s.LoadPendingKey(gen)
			if err == nil || key != nil || !strings.Contains(err.Error(), s.PendingKeyPath()) {
				t.Errorf("LoadPendingKey = %v, %v: want only an error naming the file", key, err)
			}
			if names := dirNames(t, s.Dir()); len(names) != 0 {
				t.Errorf("files left: %v", names)
			}
		})
	}
}

// TestLoadPendingKeyConcurrent: concurrent callers of one Store get one
// key, generated once.
func TestLoadPendingKeyConcurrent(t *testing.T) {
	s := open(t, certstore.Options{Dir: t.TempDir()})
	var calls atomic.Int32
	const n = 8
	keys := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := loadPending(s, &calls)
			if err != nil {
				t.Errorf("LoadPendingKey: %v", err)
				return
			}
			keys[i] = k.pem
		}()
	}
	wg.Wait()
	if calls.Load() != 1 {
		t.Errorf("generate called %d times, want 1", calls.Load())
	}
	for i := range keys {
		if !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("caller %d got another key", i)
		}
	}
}

// TestDropPendingKey: a missing key is fine, a safe one is removed, an
// unsafe one is left as it is with an error naming it.
func TestDropPendingKey(t *testing.T) {
	validPEM := testpki.KeyPEM(t, testpki.Key(t, "ecdsa"))
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string)
		wantErr string // empty: success and the file is gone
	}{
		{name: "missing"},
		{name: "valid", setup: func(t *testing.T, path string) { writeFile(t, path, validPEM, 0o600) }},
		{name: "garbage", setup: func(t *testing.T, path string) { writeFile(t, path, []byte("garbage"), 0o600) }},
		{name: "symbolic link", wantErr: "is a symbolic link", setup: func(t *testing.T, path string) {
			target := filepath.Join(t.TempDir(), "victim.key")
			writeFile(t, target, validPEM, 0o600)
			symlink(t, target, path)
		}},
		{name: "directory", wantErr: "not a regular file", setup: func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "mode 0644", wantErr: "has mode 0644", setup: func(t *testing.T, path string) { writeFile(t, path, validPEM, 0o644) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t, certstore.Options{Dir: t.TempDir()})
			path := s.PendingKeyPath()
			if tt.setup != nil {
				tt.setup(t, path)
			}
			before := fileState(t, path)
			err := s.DropPendingKey()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("DropPendingKey: %v", err)
				}
				if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("pending key still there: %v", err)
				}
				return
			}
			var unsafe *atomicfile.UnsafeFileError
			if !errors.As(err, &unsafe) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("DropPendingKey error = %v, want an *atomicfile.UnsafeFileError naming %s and %q", err, path, tt.wantErr)
			}
			if after := fileState(t, path); after != before {
				t.Errorf("the file changed: before %s, after %s", before, after)
			}
		})
	}
}

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, name string) {
	t.Helper()
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
}

func update(t *testing.T, s *certstore.Store, p pair) {
	t.Helper()
	if _, err := s.Update(p.cert, p.key); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

// fileState describes what is at path without following links: type,
// mode, owner, inode and (for a regular file) content.
func fileState(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return "missing"
	}
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	state := fmt.Sprintf("%v uid %d inode %d", fi.Mode(), st.Uid, st.Ino)
	if fi.Mode().IsRegular() {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		state += " content " + string(data)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		target, _ := os.Readlink(path)
		state += " -> " + target
	}
	return state
}

// tempLeftovers lists atomicfile's temporary files in dir.
func tempLeftovers(t *testing.T, dir string) []string {
	t.Helper()
	var left []string
	for _, n := range dirNames(t, dir) {
		if strings.Contains(n, ".tmp-") {
			left = append(left, n)
		}
	}
	return left
}

// TestHasPendingKey: anything at PendingKeyPath counts, unread and
// unfollowed, so that the caller that resumes hears LoadPendingKey's
// verdict on it; the read-only function agrees with the method.
func TestHasPendingKey(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string)
		want    bool
		wantErr bool
	}{
		{name: "none", setup: func(*testing.T, string) {}},
		{name: "a key", setup: func(t *testing.T, path string) { writeFile(t, path, []byte("x"), 0o600) }, want: true},
		{name: "unsafe: readable by others", setup: func(t *testing.T, path string) { writeFile(t, path, []byte("x"), 0o644) }, want: true},
		{name: "dangling link", setup: func(t *testing.T, path string) { symlink(t, path+".gone", path) }, want: true},
		{name: "directory", setup: func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, certstore.Options{Dir: dir})
			tt.setup(t, s.PendingKeyPath())
			before := fileState(t, s.PendingKeyPath())
			if got, err := s.HasPendingKey(); got != tt.want || err != nil {
				t.Errorf("Store.HasPendingKey = %v, %v; want %v", got, err, tt.want)
			}
			if got, err := certstore.HasPendingKey(dir, prefix); got != tt.want || err != nil {
				t.Errorf("HasPendingKey = %v, %v; want %v", got, err, tt.want)
			}
			if after := fileState(t, s.PendingKeyPath()); after != before {
				t.Errorf("the file changed: before %s, after %s", before, after)
			}
		})
	}
	t.Run("error", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		writeFile(t, file, nil, 0o600)
		if got, err := certstore.HasPendingKey(file, prefix); got || err == nil || !strings.Contains(err.Error(), file) {
			t.Errorf("HasPendingKey in a file = %v, %v; want an error naming it", got, err)
		}
	})
}
