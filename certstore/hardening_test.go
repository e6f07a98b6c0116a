package certstore_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlsboot/tlsboot/certstore"
	"github.com/tlsboot/tlsboot/internal/atomicfile"
)

// TestOpenRefusesWritableDirectory: a certificate directory its group or
// everyone can write to is refused with one line that names it and says
// what to do, and its mode is left as the operator set it.
func TestOpenRefusesWritableDirectory(t *testing.T) {
	for _, mode := range []os.FileMode{0o770, 0o777, 0o703, 0o1777} {
		dir := filepath.Join(t.TempDir(), "pki")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		_, err := certstore.Open(certstore.Options{Dir: dir, Prefix: prefix})
		var insecure *atomicfile.InsecureDirError
		if !errors.As(err, &insecure) {
			t.Fatalf("mode %v: Open error = %v, want *atomicfile.InsecureDirError", mode, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, dir) || !strings.Contains(msg, "chmod 700") || strings.Contains(msg, "\n") {
			t.Errorf("mode %v: error %q does not name the directory and the fix on one line", mode, msg)
		}
		fi, _ := os.Stat(dir)
		if fi.Mode()&(os.ModePerm|os.ModeSticky) != mode&(os.ModePerm|os.ModeSticky) {
			t.Errorf("mode %v: Open changed the directory's mode to %v", mode, fi.Mode())
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("mode %v: Open wrote %d entries into the refused directory", mode, len(entries))
		}
	}
	// 0755 and 0750 are not writable by others: accepted as they are.
	for _, mode := range []os.FileMode{0o755, 0o750, 0o700} {
		dir := filepath.Join(t.TempDir(), "pki")
		os.Mkdir(dir, 0o700)
		os.Chmod(dir, mode)
		if _, err := certstore.Open(certstore.Options{Dir: dir, Prefix: prefix}); err != nil {
			t.Errorf("mode %v: Open error = %v", mode, err)
		}
		if fi, _ := os.Stat(dir); fi.Mode().Perm() != mode {
			t.Errorf("mode %v: Open changed the mode to %v", mode, fi.Mode())
		}
	}
}

// TestOpenCreatesPrivateDirectory: a directory the store creates is 0700.
func TestOpenCreatesPrivateDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "pki")
	if _, err := certstore.Open(certstore.Options{Dir: dir, Prefix: prefix}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("created directory has mode %v, want 0700", fi.Mode())
	}
}

// TestCurrentRefusesHugeFile: a -current.pem (or legacy pair) larger than
// 1 MiB is not read into memory: one line naming the file.
func TestCurrentRefusesHugeFile(t *testing.T) {
	for _, name := range []string{prefix + "-current.pem", prefix + ".crt"} {
		dir := t.TempDir()
		s, err := certstore.Open(certstore.Options{Dir: dir, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		if name == prefix+".crt" {
			os.WriteFile(filepath.Join(dir, prefix+".key"), []byte("key"), 0o600)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, bytes.Repeat([]byte("A"), atomicfile.MaxReadSize+1), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err = s.Current()
		var tooLarge *atomicfile.TooLargeError
		if !errors.As(err, &tooLarge) || !strings.Contains(err.Error(), path) || errors.Is(err, certstore.ErrNoCertificate) {
			t.Errorf("%s: Current error = %v, want *atomicfile.TooLargeError naming the file", name, err)
		}
	}
}
