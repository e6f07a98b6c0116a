package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestWriteFailures injects ENOSPC into the call of WriteFile or Symlink
// that takes space, as a full file system does (test/crash does it for
// real on a small tmpfs when it runs as root): the error wraps ENOSPC,
// names the file asked for (not the temporary one) and says what to do,
// the old content or link is intact, and no temporary file remains.
func TestWriteFailures(t *testing.T) {
	enospc := func(t *testing.T) {
		oldWrite, oldSymlink := write, symlink
		t.Cleanup(func() { write, symlink = oldWrite, oldSymlink })
		// The errors os returns on a full file system.
		write = func(f *os.File, _ []byte) (int, error) {
			return 0, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
		}
		symlink = func(oldname, newname string) error {
			return &os.LinkError{Op: "symlink", Old: oldname, New: newname, Err: syscall.ENOSPC}
		}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, target string) // the state that must survive
		do    func(target string) error
	}{
		{"WriteFile over a file", func(t *testing.T, target string) {
			if err := os.WriteFile(target, []byte("old"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, func(target string) error { return WriteFile(target, []byte("new"), 0o600) }},
		{"WriteFile, no file yet", func(*testing.T, string) {}, func(target string) error { return WriteFile(target, []byte("new"), 0o600) }},
		{"Symlink over a link", func(t *testing.T, target string) {
			if err := os.Symlink("old-target", target); err != nil {
				t.Fatal(err)
			}
		}, func(target string) error { return Symlink("new-target", target) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			target := filepath.Join(dir, "kubelet.conf")
			tt.setup(t, target)
			before := state(t, dir)
			enospc(t)
			err := tt.do(target)
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("error %v, want one wrapping ENOSPC", err)
			}
			want := target + ": no space left on device; free space on the file system that holds " + dir
			if !strings.HasSuffix(err.Error(), want) || strings.Contains(err.Error(), ".tmp-") {
				t.Errorf("error %q\ndoes not end in %q, or names a temporary file", err, want)
			}
			if after := state(t, dir); after != before {
				t.Errorf("directory changed by a failed write:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// state describes each entry of dir: name, and content or link target.
func state(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if target, err := os.Readlink(p); err == nil {
			b.WriteString(e.Name() + " -> " + target + "; ")
			continue
		}
		data, _ := os.ReadFile(p)
		b.WriteString(e.Name() + " = " + string(data) + "; ")
	}
	return b.String()
}
