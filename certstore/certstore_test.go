package certstore_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/util/certificate"

	"github.com/tlsboot/tlsboot/certstore"
	"github.com/tlsboot/tlsboot/internal/testpki"
)

const prefix = "kubelet-client"

// A Store can stand in for client-go's file store.
var _ certificate.FileStore = (*certstore.Store)(nil)

// t0 is the first timestamp tests use; its file name is prefix-2026-11-27-01-02-03.pem.
var t0 = time.Date(2026, 11, 27, 1, 2, 3, 0, time.UTC)

// pair is a generated certificate chain and key in PEM.
type pair struct {
	cert, key []byte
	leaf      *x509.Certificate
}

// issuer is a CA that signs leaves.
type issuer struct{ *testpki.CA }

func newIssuer(t testing.TB) *issuer { return &issuer{testpki.NewCA(t)} }

// leaf issues a client certificate for cn with a fresh key of kind "ecdsa",
// "rsa" or "ec-sec1" (ECDSA in "EC PRIVATE KEY" form, after an
// "EC PARAMETERS" block like openssl writes). The chain is leaf then CA.
func (ca *issuer) leaf(t testing.TB, kind, cn string) pair {
	t.Helper()
	keyKind := "ecdsa"
	if kind == "rsa" {
		keyKind = "rsa"
	}
	key := testpki.Key(t, keyKind)
	is := ca.Issue(t, testpki.Spec{Key: key.Public(), Subject: pkix.Name{CommonName: cn, Organization: []string{"system:nodes"}},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(24 * time.Hour)})
	keyPEM := testpki.KeyPEM(t, key)
	if kind == "ec-sec1" {
		b, err := x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		keyPEM = append(pemBlock("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}), pemBlock("EC PRIVATE KEY", b)...)
	}
	return pair{cert: append(is.CertPEM, ca.PEM()...), key: keyPEM, leaf: is.Cert}
}

func pemBlock(typ string, b []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})
}

// clock returns a Now function that starts at t0 and advances by step on
// every call; step 0 makes every call return the same second.
func clock(step time.Duration) func() time.Time {
	var mu sync.Mutex
	now := t0
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t := now
		now = now.Add(step)
		return t
	}
}

func open(t *testing.T, opts certstore.Options) *certstore.Store {
	t.Helper()
	if opts.Prefix == "" {
		opts.Prefix = prefix
	}
	if opts.Now == nil {
		opts.Now = clock(time.Second)
	}
	if opts.OnPruneError == nil {
		opts.OnPruneError = func(err error) { t.Errorf("prune error: %v", err) }
	}
	s, err := certstore.Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// wantCurrent checks that s.Current returns p's leaf with a usable key.
func wantCurrent(t *testing.T, s *certstore.Store, p pair) {
	t.Helper()
	got, err := s.Current()
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	checkCert(t, got, p)
}

func checkCert(t *testing.T, got *tls.Certificate, p pair) {
	t.Helper()
	if got.Leaf == nil || !bytes.Equal(got.Leaf.Raw, p.leaf.Raw) {
		t.Fatalf("leaf is not the expected certificate (serial %v)", p.leaf.SerialNumber)
	}
	if len(got.Certificate) != 2 {
		t.Errorf("chain has %d certificates, want 2", len(got.Certificate))
	}
	pub := got.PrivateKey.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool })
	if !pub.Equal(got.Leaf.PublicKey) {
		t.Errorf("private key does not match leaf")
	}
}

// dirNames lists dir's entries, sorted.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func linkTarget(t *testing.T, s *certstore.Store) string {
	t.Helper()
	target, err := os.Readlink(s.CurrentPath())
	if err != nil {
		t.Fatal(err)
	}
	return target
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts certstore.Options
		ok   bool
	}{
		{"minimal", certstore.Options{Dir: "d", Prefix: "p"}, true},
		{"keep", certstore.Options{Dir: "d", Prefix: "p", Keep: 1}, true},
		{"no dir", certstore.Options{Prefix: "p"}, false},
		{"no prefix", certstore.Options{Dir: "d"}, false},
		{"slash in prefix", certstore.Options{Dir: "d", Prefix: "a/b"}, false},
		{"dot prefix", certstore.Options{Dir: "d", Prefix: ".p"}, false},
		{"negative keep", certstore.Options{Dir: "d", Prefix: "p", Keep: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "certstore: ") {
				t.Errorf("error %q lacks package prefix", err)
			}
		})
	}
}

func TestEmptyStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	s := open(t, certstore.Options{Dir: dir})
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v, want 0700", fi.Mode().Perm())
	}
	if _, err := s.Current(); !errors.Is(err, certstore.ErrNoCertificate) {
		t.Fatalf("Current() error = %v, want ErrNoCertificate", err)
	}
	if files, err := s.Files(); err != nil || len(files) != 0 {
		t.Fatalf("Files() = %v, %v; want none", files, err)
	}
	if want := filepath.Join(dir, prefix+"-current.pem"); s.CurrentPath() != want {
		t.Errorf("CurrentPath() = %q, want %q", s.CurrentPath(), want)
	}
}

func TestRoundTrip(t *testing.T) {
	ca := newIssuer(t)
	for _, kind := range []string{"ecdsa", "rsa", "ec-sec1"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, certstore.Options{Dir: dir})
			p := ca.leaf(t, kind, "system:node:a")
			got, err := s.Update(p.cert, p.key)
			if err != nil {
				t.Fatalf("Update: %v", err)
			}
			checkCert(t, got, p)
			wantCurrent(t, s, p)

			name := filepath.Join(dir, prefix+"-2026-11-27-01-02-03.pem")
			if target := linkTarget(t, s); target != name {
				t.Errorf("link target = %q, want absolute %q", target, name)
			}
			fi, err := os.Stat(name)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("file mode = %v, want 0600", fi.Mode().Perm())
			}
			if names := dirNames(t, dir); len(names) != 2 {
				t.Errorf("directory holds %v, want the pair and the link only", names)
			}
		})
	}
}

func TestUpdateRejects(t *testing.T) {
	ca := newIssuer(t)
	good := ca.leaf(t, "ecdsa", "good")
	other := ca.leaf(t, "ecdsa", "other")
	rsaPair := ca.leaf(t, "rsa", "rsa")
	badChain := append(bytes.Clone(good.cert), pemBlock("CERTIFICATE", []byte("not DER"))...)
	tests := []struct {
		name      string
		cert, key []byte
		wantErr   string
	}{
		{"key mismatch", good.cert, other.key, "private key does not match"},
		{"key of other type", good.cert, rsaPair.key, "private key type does not match"},
		{"garbage cert", []byte("garbage"), good.key, "no certificate found"},
		{"garbage key", good.cert, []byte("garbage"), "no private key found"},
		{"empty", nil, nil, "no certificate found"},
		{"cert in key slot", good.cert, good.cert, "no private key found"},
		{"bad third certificate", badChain, good.key, "certificate 3"},
		{"truncated key", good.cert, good.key[:len(good.key)/2], "no private key found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, certstore.Options{Dir: dir})
			if _, err := s.Update(tt.cert, tt.key); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Update() error = %v, want one containing %q", err, tt.wantErr)
			}
			if names := dirNames(t, dir); len(names) != 0 {
				t.Errorf("rejected update left %v", names)
			}
			if _, err := certstore.ParsePair(tt.cert, tt.key); err == nil {
				t.Errorf("ParsePair accepted what Update rejected")
			}
		})
	}
}

func TestSameSecond(t *testing.T) {
	ca := newIssuer(t)
	dir := t.TempDir()
	s := open(t, certstore.Options{Dir: dir, Now: clock(0)})
	var last pair
	for range 3 {
		last = ca.leaf(t, "ecdsa", "n")
		if _, err := s.Update(last.cert, last.key); err != nil {
			t.Fatal(err)
		}
	}
	wantCurrent(t, s, last)
	files, err := s.Files()
	if err != nil {
		t.Fatal(err)
	}
	ts := "2026-11-27-01-02-03"
	want := []string{
		filepath.Join(dir, prefix+"-"+ts+"-2.pem"),
		filepath.Join(dir, prefix+"-"+ts+"-1.pem"),
		filepath.Join(dir, prefix+"-"+ts+".pem"),
	}
	if !slices.Equal(files, want) {
		t.Errorf("Files() = %q, want %q", files, want)
	}
	if target := linkTarget(t, s); target != want[0] {
		t.Errorf("link target = %q, want %q", target, want[0])
	}
}

// TestSameSecondAfterPrune checks that a counter freed by pruning is not
// reused, which would make the newest file sort as older.
func TestSameSecondAfterPrune(t *testing.T) {
	ca := newIssuer(t)
	dir := t.TempDir()
	s := open(t, certstore.Options{Dir: dir, Now: clock(0), Keep: 1})
	for range 3 {
		p := ca.leaf(t, "ecdsa", "n")
		if _, err := s.Update(p.cert, p.key); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := s.Files()
	if want := []string{filepath.Join(dir, prefix+"-2026-11-27-01-02-03-2.pem")}; !slices.Equal(files, want) {
		t.Errorf("Files() = %q, want %q", files, want)
	}
}

func TestConcurrentUpdates(t *testing.T) {
	ca := newIssuer(t)
	dir := t.TempDir()
	s := open(t, certstore.Options{Dir: dir, Now: clock(0), Keep: 100})
	pairs := make([]pair, 8)
	for i := range pairs {
		pairs[i] = ca.leaf(t, "ecdsa", fmt.Sprint(i))
	}
	var wg sync.WaitGroup
	for _, p := range pairs {
		wg.Go(func() {
			if _, err := s.Update(p.cert, p.key); err != nil {
				t.Error(err)
			}
			if _, err := s.Current(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if files, _ := s.Files(); len(files) != len(pairs) {
		t.Errorf("got %d files, want %d", len(files), len(pairs))
	}
}

func TestPrune(t *testing.T) {
	ca := newIssuer(t)
	tests := []struct {
		name      string
		keep      int
		step      time.Duration // clock step; negative: the clock goes backwards
		updates   int
		wantFiles int
	}{
		{"default keeps 5", 0, time.Second, 8, 5},
		{"keep 2", 2, time.Minute, 4, 2},
		{"fewer than keep", 0, time.Second, 3, 3},
		// The newest write sorts oldest by name; it is current, so it stays
		// in addition to the 2 newest names.
		{"clock backwards keeps current", 2, -time.Second, 4, 3},
	}
	foreign := []string{
		"kubelet-server-2026-11-27-01-02-03.pem",
		"kubelet-server-current.pem",
		prefix + "-2026-01-01-00-00-00.pem.bak",
		prefix + "-2026-01-01-00-00-00-01.pem",
		prefix + "-backup.pem",
		prefix + ".crt",
		"kubelet-2026-01-01-00-00-00.pem",
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, name := range foreign {
				if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s := open(t, certstore.Options{Dir: dir, Keep: tt.keep, Now: clock(tt.step)})
			var last pair
			for i := range tt.updates {
				last = ca.leaf(t, "ecdsa", fmt.Sprint(i))
				if _, err := s.Update(last.cert, last.key); err != nil {
					t.Fatal(err)
				}
			}
			wantCurrent(t, s, last)
			files, err := s.Files()
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != tt.wantFiles {
				t.Errorf("kept %d files %q, want %d", len(files), files, tt.wantFiles)
			}
			if !slices.Contains(files, linkTarget(t, s)) {
				t.Errorf("current target %q was pruned", linkTarget(t, s))
			}
			for _, name := range foreign {
				if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
					t.Errorf("foreign file %s: %v", name, err)
				}
			}
		})
	}
}

func TestPruneError(t *testing.T) {
	ca := newIssuer(t)
	dir := t.TempDir()
	var pruneErrs []error
	s := open(t, certstore.Options{Dir: dir, Keep: 1, OnPruneError: func(err error) { pruneErrs = append(pruneErrs, err) }})
	// A non-empty directory with a pair file's name cannot be removed.
	old := filepath.Join(dir, prefix+"-2000-01-01-00-00-00.pem")
	if err := os.MkdirAll(filepath.Join(old, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	p := ca.leaf(t, "ecdsa", "a")
	if _, err := s.Update(p.cert, p.key); err != nil {
		t.Fatalf("Update failed because of pruning: %v", err)
	}
	wantCurrent(t, s, p)
	if len(pruneErrs) != 0 {
		t.Errorf("directories are not pair files, yet pruning reported %v", pruneErrs)
	}
}

func TestRegularFileAtCurrent(t *testing.T) {
	ca := newIssuer(t)
	dir := t.TempDir()
	first := ca.leaf(t, "ecdsa", "first")
	if err := os.WriteFile(filepath.Join(dir, prefix+"-current.pem"), append(first.cert, first.key...), 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, certstore.Options{Dir: dir})
	wantCurrent(t, s, first)

	second := ca.leaf(t, "ecdsa", "second")
	if _, err := s.Update(second.cert, second.key); err != nil {
		t.Fatalf("Update over a regular file: %v", err)
	}
	wantCurrent(t, s, second)
	if fi, _ := os.Lstat(s.CurrentPath()); fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("-current.pem is still a regular file")
	}
}

func TestCorruptCurrent(t *testing.T) {
	ca := newIssuer(t)
	p := ca.leaf(t, "ecdsa", "a")
	other := ca.leaf(t, "ecdsa", "b")
	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"garbage", []byte("garbage"), "no certificate found"},
		{"empty", nil, "no certificate found"},
		{"cert only", p.cert, "no private key found"},
		{"key only", p.key, "no certificate found"},
		{"mismatch", append(bytes.Clone(p.cert), other.key...), "tls: private key does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			target := filepath.Join(dir, prefix+"-2026-11-27-01-02-03.pem")
			if err := os.WriteFile(target, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, filepath.Join(dir, prefix+"-current.pem")); err != nil {
				t.Fatal(err)
			}
			s := open(t, certstore.Options{Dir: dir})
			_, err := s.Current()
			if err == nil {
				t.Fatal("Current() succeeded on a corrupt file")
			}
			want := "certstore: " + s.CurrentPath() + ": " + tt.wantErr
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("Current() error = %q, want prefix %q", err, want)
			}
			if errors.Is(err, certstore.ErrNoCertificate) {
				t.Errorf("a corrupt file is not ErrNoCertificate")
			}
		})
	}
}

func TestLegacyFallback(t *testing.T) {
	ca := newIssuer(t)
	p := ca.leaf(t, "rsa", "legacy")
	tests := []struct {
		name    string
		files   map[string][]byte
		wantErr error // nil: p is current
	}{
		{"both", map[string][]byte{prefix + ".crt": p.cert, prefix + ".key": p.key}, nil},
		{"crt only", map[string][]byte{prefix + ".crt": p.cert}, certstore.ErrNoCertificate},
		{"key only", map[string][]byte{prefix + ".key": p.key}, certstore.ErrNoCertificate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s := open(t, certstore.Options{Dir: dir})
			if tt.wantErr == nil {
				wantCurrent(t, s, p)
			} else if _, err := s.Current(); !errors.Is(err, tt.wantErr) {
				t.Errorf("Current() error = %v, want %v", err, tt.wantErr)
			}
		})
	}

	t.Run("corrupt names both files", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, prefix+".crt"), p.cert, 0o600)
		os.WriteFile(filepath.Join(dir, prefix+".key"), []byte("junk"), 0o600)
		s := open(t, certstore.Options{Dir: dir})
		_, err := s.Current()
		if err == nil || !strings.Contains(err.Error(), prefix+".key: no private key found") {
			t.Errorf("Current() error = %v, want it to name the key file", err)
		}
	})

	t.Run("current wins", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, prefix+".crt"), p.cert, 0o600)
		os.WriteFile(filepath.Join(dir, prefix+".key"), p.key, 0o600)
		s := open(t, certstore.Options{Dir: dir})
		q := ca.leaf(t, "ecdsa", "new")
		if _, err := s.Update(q.cert, q.key); err != nil {
			t.Fatal(err)
		}
		wantCurrent(t, s, q)
	})
}

// writePairFile writes p as a timestamped pair file named for ts.
func writePairFile(t *testing.T, dir, ts string, p pair) string {
	t.Helper()
	name := filepath.Join(dir, prefix+"-"+ts+".pem")
	if err := os.WriteFile(name, append(bytes.Clone(p.cert), p.key...), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestRecoverDangling(t *testing.T) {
	ca := newIssuer(t)
	older := ca.leaf(t, "ecdsa", "older")
	newer := ca.leaf(t, "ecdsa", "newer")

	t.Run("repointed to newest valid", func(t *testing.T) {
		dir := t.TempDir()
		writePairFile(t, dir, "2026-11-27-01-00-00", older)
		want := writePairFile(t, dir, "2026-11-27-01-00-01", newer)
		// Newest by name, but corrupt: skipped.
		os.WriteFile(filepath.Join(dir, prefix+"-2026-11-27-01-00-02.pem"), []byte("half a file"), 0o600)
		cur := filepath.Join(dir, prefix+"-current.pem")
		os.Symlink(filepath.Join(dir, prefix+"-2026-11-27-01-00-03.pem"), cur)

		s := open(t, certstore.Options{Dir: dir})
		wantCurrent(t, s, newer)
		if target := linkTarget(t, s); target != want {
			t.Errorf("link target = %q, want %q", target, want)
		}
	})

	t.Run("nothing to point at", func(t *testing.T) {
		dir := t.TempDir()
		missing := filepath.Join(dir, prefix+"-2026-11-27-01-00-03.pem")
		os.Symlink(missing, filepath.Join(dir, prefix+"-current.pem"))
		s := open(t, certstore.Options{Dir: dir})
		_, err := s.Current()
		if !errors.Is(err, certstore.ErrNoCertificate) {
			t.Fatalf("Current() error = %v, want ErrNoCertificate", err)
		}
		if !strings.Contains(err.Error(), "points to missing "+missing) {
			t.Errorf("error %q does not explain the dangling link", err)
		}
		if target := linkTarget(t, s); target != missing {
			t.Errorf("link changed to %q", target)
		}
	})
}

func TestRecoverClientGoUpdated(t *testing.T) {
	ca := newIssuer(t)
	older := ca.leaf(t, "ecdsa", "older")
	newer := ca.leaf(t, "ecdsa", "newer")
	tests := []struct {
		name    string
		current string // "missing", "older", "dangling"
		want    pair
	}{
		// client-go crashed after removing -current.pem, before renaming.
		{"current missing", "missing", newer},
		// client-go crashed after creating -updated.pem, before removing -current.pem.
		{"current present", "older", older},
		{"current dangling", "dangling", newer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			oldName := writePairFile(t, dir, "2026-11-27-01-00-00", older)
			newName := writePairFile(t, dir, "2026-11-27-01-00-01", newer)
			cur := filepath.Join(dir, prefix+"-current.pem")
			switch tt.current {
			case "older":
				os.Symlink(oldName, cur)
			case "dangling":
				os.Symlink(filepath.Join(dir, "gone.pem"), cur)
			}
			updated := filepath.Join(dir, prefix+"-updated.pem")
			os.Symlink(newName, updated)

			s := open(t, certstore.Options{Dir: dir})
			wantCurrent(t, s, tt.want)
			if _, err := os.Lstat(updated); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("-updated.pem remains: %v", err)
			}
		})
	}
}

func TestRecoverLeftovers(t *testing.T) {
	ca := newIssuer(t)
	p := ca.leaf(t, "ecdsa", "a")
	dir := t.TempDir()
	name := writePairFile(t, dir, "2026-11-27-01-00-00", p)
	os.Symlink(name, filepath.Join(dir, prefix+"-current.pem"))
	ours := []string{
		"." + prefix + "-current.pem.tmp-link",
		"." + prefix + "-2026-11-27-01-00-01.pem.tmp-12345",
		prefix + "-2026-11-27-01-00-02.pem", // empty: an unwritten reservation
		// LoadPendingKey's atomic write, killed before its rename
		// (found by test/crash: they were never removed and piled up)
		"." + prefix + ".key.tmp.tmp-12345",
	}
	theirs := []string{
		".kubelet-server-current.pem.tmp-link",
		".kubelet-server-2026-11-27-01-00-01.pem.tmp-12345",
		".kubelet-server.key.tmp.tmp-12345",
		"." + prefix + "-notes.tmp-1",
		"." + prefix + ".key.tmp-1", // not the pending key's temporary file
		"." + prefix + "x.key.tmp.tmp-1",
	}
	for _, n := range append(slices.Clone(ours), theirs...) {
		var data []byte
		if strings.HasPrefix(n, ".") {
			data = []byte("partial")
		}
		if err := os.WriteFile(filepath.Join(dir, n), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, certstore.Options{Dir: dir})
	wantCurrent(t, s, p)
	for _, n := range ours {
		if _, err := os.Lstat(filepath.Join(dir, n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("leftover %s not removed", n)
		}
	}
	for _, n := range theirs {
		if _, err := os.Lstat(filepath.Join(dir, n)); err != nil {
			t.Errorf("foreign file %s: %v", n, err)
		}
	}
}

func TestInterop(t *testing.T) {
	ca := newIssuer(t)

	t.Run("client-go reads ours", func(t *testing.T) {
		dir := t.TempDir()
		s := open(t, certstore.Options{Dir: dir})
		p := ca.leaf(t, "ecdsa", "ours")
		if _, err := s.Update(p.cert, p.key); err != nil {
			t.Fatal(err)
		}
		cg, err := certificate.NewFileStore(prefix, dir, dir, "", "")
		if err != nil {
			t.Fatal(err)
		}
		if cg.CurrentPath() != s.CurrentPath() {
			t.Errorf("CurrentPath: client-go %q, ours %q", cg.CurrentPath(), s.CurrentPath())
		}
		got, err := cg.Current()
		if err != nil {
			t.Fatalf("client-go Current: %v", err)
		}
		checkCert(t, got, p)

		// client-go can rotate on top of our store.
		q := ca.leaf(t, "rsa", "theirs")
		if _, err := cg.Update(q.cert, q.key); err != nil {
			t.Fatalf("client-go Update: %v", err)
		}
		wantCurrent(t, s, q)
	})

	t.Run("we read client-go's", func(t *testing.T) {
		dir := t.TempDir()
		cg, err := certificate.NewFileStore(prefix, dir, dir, "", "")
		if err != nil {
			t.Fatal(err)
		}
		// Not "ec-sec1": client-go writes only the first PEM block of the
		// key input, which would be EC PARAMETERS.
		p := ca.leaf(t, "ecdsa", "theirs")
		if _, err := cg.Update(p.cert, p.key); err != nil {
			t.Fatalf("client-go Update: %v", err)
		}
		s := open(t, certstore.Options{Dir: dir, Now: time.Now})
		wantCurrent(t, s, p)
		if files, _ := s.Files(); len(files) != 1 {
			t.Errorf("Files() = %q, want client-go's one file", files)
		}

		q := ca.leaf(t, "ecdsa", "ours")
		if _, err := s.Update(q.cert, q.key); err != nil {
			t.Fatal(err)
		}
		got, err := cg.Current()
		if err != nil {
			t.Fatalf("client-go Current: %v", err)
		}
		checkCert(t, got, q)
	})
}

// TestReadCurrent: the read-only twin of Current reads -current.pem or the
// legacy pair, says which, and changes nothing, not even what Open would
// repair.
func TestReadCurrent(t *testing.T) {
	ca := newIssuer(t)
	p, q := ca.leaf(t, "ecdsa", "current"), ca.leaf(t, "rsa", "legacy")

	t.Run("current", func(t *testing.T) {
		dir := t.TempDir()
		s := open(t, certstore.Options{Dir: dir})
		update(t, s, p)
		cert, path, err := certstore.ReadCurrent(dir, prefix)
		if err != nil || path != s.CurrentPath() || path != certstore.CurrentPath(dir, prefix) {
			t.Fatalf("ReadCurrent = %v, %q; want %s", err, path, s.CurrentPath())
		}
		checkCert(t, cert, p)
	})
	t.Run("legacy", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, prefix+".crt"), q.cert, 0o600)
		writeFile(t, filepath.Join(dir, prefix+".key"), q.key, 0o600)
		cert, path, err := certstore.ReadCurrent(dir, prefix)
		if err != nil || path != filepath.Join(dir, prefix+".crt") {
			t.Fatalf("ReadCurrent = %v, %q; want the legacy certificate", err, path)
		}
		checkCert(t, cert, q)
	})
	t.Run("dangling link is not repaired", func(t *testing.T) {
		dir := t.TempDir()
		writePairFile(t, dir, "2026-11-27-01-02-03", p)
		symlink(t, filepath.Join(dir, prefix+"-2026-11-27-09-09-09.pem"), filepath.Join(dir, prefix+"-current.pem"))
		before := dirNames(t, dir)
		target, _ := os.Readlink(filepath.Join(dir, prefix+"-current.pem"))
		_, _, err := certstore.ReadCurrent(dir, prefix)
		if !errors.Is(err, certstore.ErrNoCertificate) || !strings.Contains(err.Error(), "points to missing") {
			t.Errorf("ReadCurrent error = %v, want ErrNoCertificate naming the missing target", err)
		}
		after, _ := os.Readlink(filepath.Join(dir, prefix+"-current.pem"))
		if !slices.Equal(before, dirNames(t, dir)) || after != target {
			t.Error("ReadCurrent changed the directory")
		}
	})
	t.Run("invalid prefix", func(t *testing.T) {
		if _, _, err := certstore.ReadCurrent(t.TempDir(), "../x"); err == nil {
			t.Error("ReadCurrent accepted a prefix with a separator")
		}
	})
}

// TestStoredAt: the stored time is that of the file Current reads (the
// link's target, not the link; the legacy .crt, not its .key), and the
// read-only function agrees with the method.
func TestStoredAt(t *testing.T) {
	ca := newIssuer(t)
	p, q := ca.leaf(t, "ecdsa", "current"), ca.leaf(t, "rsa", "legacy")
	at, other := t0.Add(-time.Hour), t0.Add(-2*time.Hour)
	chtimes := func(t *testing.T, path string, at time.Time) {
		t.Helper()
		if err := os.Chtimes(path, at, at); err != nil { // follows a link
			t.Fatal(err)
		}
	}
	legacy := func(t *testing.T, dir string) {
		writeFile(t, filepath.Join(dir, prefix+".crt"), q.cert, 0o600)
		writeFile(t, filepath.Join(dir, prefix+".key"), q.key, 0o600)
		chtimes(t, filepath.Join(dir, prefix+".crt"), at)
		chtimes(t, filepath.Join(dir, prefix+".key"), other)
	}
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		open    bool // also check the method of an opened Store
		wantErr error
		anyErr  bool
	}{
		{name: "current pair: its file, not the link", open: true, setup: func(t *testing.T, dir string) {
			s := open(t, certstore.Options{Dir: dir, Now: clock(time.Second)})
			update(t, s, q)
			chtimes(t, s.CurrentPath(), other)
			update(t, s, p)
			chtimes(t, s.CurrentPath(), at)
		}},
		{name: "legacy pair: the .crt", open: true, setup: legacy},
		{name: "dangling link: the legacy pair, as Current", setup: func(t *testing.T, dir string) {
			legacy(t, dir)
			symlink(t, filepath.Join(dir, prefix+"-2026-11-27-09-09-09.pem"), filepath.Join(dir, prefix+"-current.pem"))
		}},
		{name: "legacy certificate without its key", setup: func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, prefix+".crt"), q.cert, 0o600)
		}, wantErr: certstore.ErrNoCertificate},
		{name: "empty", setup: func(*testing.T, string) {}, wantErr: certstore.ErrNoCertificate},
		{name: "not a directory", setup: func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "file"), nil, 0o600)
		}, anyErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			if tt.anyErr {
				dir = filepath.Join(dir, "file")
			}
			got, err := certstore.StoredAt(dir, prefix)
			switch {
			case tt.anyErr:
				if err == nil || errors.Is(err, certstore.ErrNoCertificate) || !strings.Contains(err.Error(), dir) {
					t.Fatalf("StoredAt = %v, %v; want an error naming %s", got, err, dir)
				}
				return
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("StoredAt = %v, %v; want %v", got, err, tt.wantErr)
				}
				return
			case err != nil || !got.Equal(at):
				t.Fatalf("StoredAt = %v, %v; want %v", got, err, at)
			}
			if tt.open {
				if got, err := open(t, certstore.Options{Dir: dir}).StoredAt(); err != nil || !got.Equal(at) {
					t.Errorf("Store.StoredAt = %v, %v; want %v", got, err, at)
				}
			}
		})
	}
	if _, err := certstore.StoredAt(t.TempDir(), "../x"); err == nil {
		t.Error("StoredAt accepted a prefix with a separator")
	}
}
