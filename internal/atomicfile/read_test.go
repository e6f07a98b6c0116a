package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
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
	}{{0o700, true}, {0o755, true}, {0o750, true}, {0o770, false}, {0o777, false}, {0o757, false}, {os.ModeSticky | 0o777, false}} {
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

// otherUID plays another local user: nobody.
const otherUID = 65534

// TestCheckDirOwnersAndParents: like ssh's StrictModes, a directory another
// user owns, or one inside a directory another user could rename it out of
// (theirs, or writable by others without the sticky bit), is refused, and so
// is a symbolic link another user owns; a safe link and a sticky /tmp are
// fine. Nothing is changed.
func TestCheckDirOwnersAndParents(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another user (uid 65534)")
	}
	mkdir := func(t *testing.T, path string, mode os.FileMode, uid int) string {
		t.Helper()
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(path, uid, 0); err != nil {
			t.Fatal(err)
		}
		return path
	}
	symlink := func(t *testing.T, target, path string, uid int) string {
		t.Helper()
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(path, uid, 0); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for _, tt := range []struct {
		name string
		// setup returns the directory to check and the path the error names.
		setup func(t *testing.T, base string) (dir, unsafe string)
		kind  InsecureKind // when unsafe is not ""
		want  []string     // in the error, besides the two paths
	}{
		{name: "root's 0755 directory", setup: func(t *testing.T, base string) (string, string) {
			return mkdir(t, filepath.Join(base, "pki"), 0o755, 0), ""
		}},
		{name: "directory owned by another user, mode 0755", setup: func(t *testing.T, base string) (string, string) {
			d := mkdir(t, filepath.Join(base, "pki"), 0o755, otherUID)
			return d, d
		}, kind: DirOwner, want: []string{"owned by uid 65534", "chown 0 "}},
		{name: "parent owned by another user", setup: func(t *testing.T, base string) (string, string) {
			p := mkdir(t, filepath.Join(base, "home"), 0o755, otherUID)
			return mkdir(t, filepath.Join(p, "pki"), 0o700, 0), p
		}, kind: ParentOwner, want: []string{"owned by uid 65534", "chown 0 "}},
		{name: "grandparent world-writable without the sticky bit", setup: func(t *testing.T, base string) (string, string) {
			g := mkdir(t, filepath.Join(base, "shared"), 0o777, 0)
			p := mkdir(t, filepath.Join(g, "kubelet"), 0o755, 0)
			return mkdir(t, filepath.Join(p, "pki"), 0o700, 0), g
		}, kind: ParentWritable, want: []string{"mode 0777", "chmod go-w "}},
		{name: "parent group-writable", setup: func(t *testing.T, base string) (string, string) {
			p := mkdir(t, filepath.Join(base, "kubelet"), 0o775, 0)
			return mkdir(t, filepath.Join(p, "pki"), 0o700, 0), p
		}, kind: ParentWritable, want: []string{"mode 0775"}},
		{name: "sticky world-writable parent, as /tmp", setup: func(t *testing.T, base string) (string, string) {
			p := mkdir(t, filepath.Join(base, "tmp"), os.ModeSticky|0o777, 0)
			return mkdir(t, filepath.Join(p, "pki"), 0o700, 0), ""
		}},
		{name: "root's link to a safe directory", setup: func(t *testing.T, base string) (string, string) {
			real := mkdir(t, filepath.Join(base, "data"), 0o700, 0)
			return symlink(t, real, filepath.Join(base, "pki"), 0), ""
		}},
		{name: "relative link to a safe directory", setup: func(t *testing.T, base string) (string, string) {
			mkdir(t, filepath.Join(base, "data"), 0o700, 0)
			return symlink(t, "data", filepath.Join(base, "pki"), 0), ""
		}},
		{name: "link owned by another user", setup: func(t *testing.T, base string) (string, string) {
			real := mkdir(t, filepath.Join(base, "data"), 0o700, 0)
			l := symlink(t, real, filepath.Join(base, "pki"), otherUID)
			return l, l
		}, kind: LinkOwner, want: []string{"symbolic link", "owned by uid 65534"}},
		{name: "root's link to another user's directory", setup: func(t *testing.T, base string) (string, string) {
			real := mkdir(t, filepath.Join(base, "data"), 0o755, otherUID)
			return symlink(t, real, filepath.Join(base, "pki"), 0), real
		}, kind: DirOwner, want: []string{"owned by uid 65534"}},
		{name: "root's link to a directory inside another user's", setup: func(t *testing.T, base string) (string, string) {
			p := mkdir(t, filepath.Join(base, "home"), 0o755, otherUID)
			real := mkdir(t, filepath.Join(p, "pki"), 0o700, 0)
			return symlink(t, real, filepath.Join(base, "pki"), 0), p
		}, kind: ParentOwner},
		{name: "root's link in a world-writable directory", setup: func(t *testing.T, base string) (string, string) {
			real := mkdir(t, filepath.Join(base, "data"), 0o700, 0)
			w := mkdir(t, filepath.Join(base, "w"), 0o777, 0)
			return symlink(t, real, filepath.Join(w, "pki"), 0), w
		}, kind: ParentWritable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			dir, unsafe := tt.setup(t, base)
			before := snapshot(t, base)
			err := CheckDir(dir, "certificate directory")
			if unsafe == "" {
				if err != nil {
					t.Fatalf("CheckDir = %v, want nil", err)
				}
			} else {
				var insecure *InsecureDirError
				if !errors.As(err, &insecure) {
					t.Fatalf("CheckDir = %v, want an *InsecureDirError", err)
				}
				msg := err.Error()
				if insecure.Kind != tt.kind || insecure.Unsafe != unsafe || insecure.Path != dir {
					t.Errorf("got kind %d about %s (path %s), want kind %d about %s (path %s)", insecure.Kind, insecure.Unsafe, insecure.Path, tt.kind, unsafe, dir)
				}
				for _, want := range append([]string{"certificate directory " + dir, unsafe}, tt.want...) {
					if !strings.Contains(msg, want) {
						t.Errorf("error %q does not say %q", msg, want)
					}
				}
				if strings.Contains(msg, "\n") {
					t.Errorf("error %q is more than one line", msg)
				}
			}
			if after := snapshot(t, base); after != before {
				t.Errorf("CheckDir changed files:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
	t.Run("missing directory", func(t *testing.T) {
		if err := CheckDir(filepath.Join(t.TempDir(), "absent"), "certificate directory"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("CheckDir = %v, want fs.ErrNotExist", err)
		}
	})
}

// snapshot lists the modes and owners under base.
func snapshot(t *testing.T, base string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v %d; ", path, fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
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

// checkDirChildEnv names the directory TestCheckDirAsOrdinaryUser prepared,
// for the copy of this test binary it runs as another user.
const checkDirChildEnv = "TLSBOOT_CHECKDIR_CHILD"

// TestCheckDirAsOrdinaryUser: for an ordinary user (uid 65534, run with
// setpriv), its own directories and root's are trusted, another user's
// (uid 1234) are not, whether the directory itself or a parent.
func TestCheckDirAsOrdinaryUser(t *testing.T) {
	if os.Getenv(checkDirChildEnv) != "" {
		t.Skip("the child runs TestCheckDirChild")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run as another user")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv to run as another user")
	}
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	child := filepath.Join(base, "atomicfile.test")
	if err := os.WriteFile(child, data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct {
		path string
		uid  int
	}{
		{"own", otherUID}, {"root", 0}, {"other", 1234},
		{"ownhome", otherUID}, {"ownhome/pki", otherUID},
		{"otherhome", 1234}, {"otherhome/pki", otherUID},
	} {
		p := filepath.Join(base, d.path)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, d.uid, d.uid); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(setpriv, "--reuid", fmt.Sprint(otherUID), "--regid", fmt.Sprint(otherUID), "--clear-groups",
		child, "-test.run", "^TestCheckDirChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), checkDirChildEnv+"="+base)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestCheckDirChild") {
		t.Fatalf("as uid %d: %v\n%s", otherUID, err, out)
	}
}

// TestCheckDirChild is TestCheckDirAsOrdinaryUser's other half.
func TestCheckDirChild(t *testing.T) {
	base := os.Getenv(checkDirChildEnv)
	if base == "" {
		t.Skip("run by TestCheckDirAsOrdinaryUser")
	}
	if os.Geteuid() != otherUID {
		t.Fatalf("running as uid %d, want %d", os.Geteuid(), otherUID)
	}
	for _, tt := range []struct {
		dir  string
		kind InsecureKind
		ok   bool
	}{
		{dir: "own", ok: true}, {dir: "root", ok: true}, {dir: "ownhome/pki", ok: true},
		{dir: "other", kind: DirOwner}, {dir: "otherhome/pki", kind: ParentOwner},
	} {
		err := CheckDir(filepath.Join(base, tt.dir), "certificate directory")
		var insecure *InsecureDirError
		switch {
		case tt.ok && err != nil:
			t.Errorf("%s: CheckDir = %v, want nil", tt.dir, err)
		case !tt.ok && (!errors.As(err, &insecure) || insecure.Kind != tt.kind || !strings.Contains(err.Error(), "uid 1234") || !strings.Contains(err.Error(), "(uid 65534)")):
			t.Errorf("%s: CheckDir = %v, want kind %d naming uid 1234 and uid 65534", tt.dir, err, tt.kind)
		}
	}
}
