package atomicfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReadFileLimit(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadFile(small); err != nil || string(got) != "hello" {
		t.Fatalf("ReadFile = %q, %v", got, err)
	}
	// At the limit is fine, one byte past it is not.
	exact := filepath.Join(dir, "exact")
	os.WriteFile(exact, bytes.Repeat([]byte("a"), MaxReadSize), 0o600)
	if got, err := ReadFile(exact); err != nil || len(got) != MaxReadSize {
		t.Fatalf("ReadFile(1 MiB) = %d bytes, %v", len(got), err)
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, bytes.Repeat([]byte("a"), MaxReadSize+1), 0o600)
	_, err := ReadFile(big)
	var tooLarge *TooLargeError
	if !errors.As(err, &tooLarge) || !strings.Contains(err.Error(), big) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("ReadFile(1 MiB + 1) error = %v, want a one-line *TooLargeError naming the file", err)
	}
	// A sparse file claiming 10 GiB is refused from its size, unread.
	sparse := filepath.Join(dir, "sparse")
	f, _ := os.Create(sparse)
	f.Truncate(10 << 30)
	f.Close()
	if _, err := ReadFile(sparse); !errors.As(err, &tooLarge) {
		t.Fatalf("ReadFile(10 GiB sparse) error = %v, want *TooLargeError", err)
	}
	// Symbolic links are followed by ReadFile (the store's -current.pem is one).
	link := filepath.Join(dir, "link")
	os.Symlink(small, link)
	if got, err := ReadFile(link); err != nil || string(got) != "hello" {
		t.Fatalf("ReadFile(link) = %q, %v", got, err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadFile(missing) error = %v, want fs.ErrNotExist", err)
	}
}

func TestReadFileRefusesFIFOWithoutBlocking(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := ReadFile(fifo); done <- err }()
	select {
	case err := <-done:
		var nr *NotRegularError
		if !errors.As(err, &nr) {
			t.Fatalf("ReadFile(fifo) error = %v, want *NotRegularError", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFile blocked on a FIFO")
	}
	if _, err := ReadFile(dir); err == nil {
		t.Fatal("ReadFile(directory) succeeded")
	}
}

// TestReadPrivateFile: a pending key is used only when it is a regular
// file, not a link, owned by the running user, with mode 0600; anything
// else is refused by name and left exactly as it was.
func TestReadPrivateFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.key")
	if err := os.WriteFile(good, []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadPrivateFile(good); err != nil || string(got) != "key" {
		t.Fatalf("ReadPrivateFile(0600) = %q, %v", got, err)
	}
	if _, err := ReadPrivateFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: error = %v, want fs.ErrNotExist", err)
	}

	setups := map[string]func(p string) error{
		"symlink to a private file": func(p string) error { return os.Symlink(good, p) },
		"dangling symlink":          func(p string) error { return os.Symlink(filepath.Join(dir, "nowhere"), p) },
		"mode 0644": func(p string) error {
			if err := os.WriteFile(p, []byte("key"), 0o600); err != nil {
				return err
			}
			return os.Chmod(p, 0o644)
		},
		"mode 0640": func(p string) error {
			if err := os.WriteFile(p, []byte("key"), 0o600); err != nil {
				return err
			}
			return os.Chmod(p, 0o640)
		},
		"other owner": func(p string) error {
			if err := os.WriteFile(p, []byte("key"), 0o600); err != nil {
				return err
			}
			return os.Lchown(p, os.Geteuid()+4242, -1)
		},
		"fifo":      func(p string) error { return syscall.Mkfifo(p, 0o600) },
		"directory": func(p string) error { return os.Mkdir(p, 0o700) },
	}
	for name, setup := range setups {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "kubelet-client.key.tmp")
			if err := setup(p); err != nil {
				if name == "other owner" {
					t.Skipf("cannot chown as uid %d: %v", os.Geteuid(), err)
				}
				t.Fatal(err)
			}
			before, _ := os.Lstat(p)
			done := make(chan error, 1)
			go func() { _, err := ReadPrivateFile(p); done <- err }()
			var err error
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("ReadPrivateFile blocked")
			}
			var unsafe *UnsafeFileError
			if !errors.As(err, &unsafe) || !strings.Contains(err.Error(), p) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error = %v, want a one-line *UnsafeFileError naming %s", err, p)
			}
			after, lerr := os.Lstat(p)
			if lerr != nil || after.Mode() != before.Mode() || !os.SameFile(before, after) || after.Sys().(*syscall.Stat_t).Uid != before.Sys().(*syscall.Stat_t).Uid {
				t.Errorf("the file was changed: before %v, after %v (%v)", before.Mode(), after, lerr)
			}
			if fi, _ := os.Stat(good); fi.Mode().Perm() != 0o600 {
				t.Errorf("the link target's mode changed to %v", fi.Mode())
			}
		})
	}
}

func TestCheckDir(t *testing.T) {
	for _, tt := range []struct {
		mode os.FileMode
		ok   bool
	}{{0o700, true}, {0o755, true}, {0o750, true}, {0o770, false}, {0o777, false}, {0o757, false}, {0o1777, false}} {
		dir := filepath.Join(t.TempDir(), "pki")
		os.Mkdir(dir, 0o700)
		if err := os.Chmod(dir, tt.mode); err != nil {
			t.Fatal(err)
		}
		err := CheckDir(dir, "certificate directory")
		var insecure *InsecureDirError
		if tt.ok != (err == nil) || (!tt.ok && (!errors.As(err, &insecure) || !strings.Contains(err.Error(), "chmod 700 "+dir))) {
			t.Errorf("mode %v: CheckDir = %v", tt.mode, err)
		}
		if fi, _ := os.Stat(dir); fi.Mode()&os.ModePerm != tt.mode&os.ModePerm {
			t.Errorf("mode %v: CheckDir changed the mode to %v", tt.mode, fi.Mode())
		}
	}
}

// TestSymlinkIgnoresPlantedTemporaryName: a link someone planted under the
// temporary name the old code always used is neither followed nor
// published; the new link gets a random name.
func TestSymlinkIgnoresPlantedTemporaryName(t *testing.T) {
	dir := t.TempDir()
	planted := filepath.Join(dir, ".current.pem.tmp-link")
	if err := os.Symlink("/etc/shadow", planted); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "pair.pem")
	os.WriteFile(target, []byte("x"), 0o600)
	name := filepath.Join(dir, "current.pem")
	if err := Symlink(target, name); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.Readlink(name); got != target {
		t.Errorf("link points to %q, want %q", got, target)
	}
	if got, _ := os.Readlink(planted); got != "/etc/shadow" {
		t.Errorf("the planted link was changed: %q", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("directory holds %d entries, want 3 (the planted link, the target, the link)", len(entries))
	}
}

// TestWriteFileThroughPlantedLinkDoesNotChmodTarget: replacing a name
// that is a symbolic link replaces the link; its target's content and mode
// are untouched.
func TestWriteFileThroughPlantedLinkDoesNotChmodTarget(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("victim"), 0o644)
	name := filepath.Join(dir, "kubeconfig")
	os.Symlink(victim, name)
	if err := WriteFile(name, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(victim); string(data) != "victim" {
		t.Errorf("victim content %q", data)
	}
	if fi, _ := os.Stat(victim); fi.Mode().Perm() != 0o644 {
		t.Errorf("victim mode %v, want 0644", fi.Mode())
	}
	if fi, _ := os.Lstat(name); !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s is %v, want a regular 0600 file", name, fi.Mode())
	}
}
