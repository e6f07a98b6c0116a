package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFile(t *testing.T) {
	tests := []struct {
		name     string
		existing []byte
		data     []byte
		perm     os.FileMode
	}{
		{name: "new file", data: []byte("hello"), perm: 0o600},
		{name: "replace", existing: []byte("old content that is longer"), data: []byte("new"), perm: 0o644},
		{name: "empty", existing: []byte("x"), data: nil, perm: 0o600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f")
			if tt.existing != nil {
				if err := os.WriteFile(p, tt.existing, 0o666); err != nil {
					t.Fatal(err)
				}
			}
			if err := WriteFile(p, tt.data, tt.perm); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(tt.data) {
				t.Errorf("content = %q, want %q", got, tt.data)
			}
			fi, _ := os.Stat(p)
			if fi.Mode().Perm() != tt.perm {
				t.Errorf("mode = %v, want %v", fi.Mode().Perm(), tt.perm)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries, want only the target", len(entries))
			}
		})
	}
}

func TestWriteFileFailureLeavesTarget(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "f") // parent missing: CreateTemp fails
	if err := WriteFile(p, []byte("x"), 0o600); err == nil {
		t.Fatal("WriteFile into a missing directory succeeded")
	}
	// Target is a directory: rename fails, the temp file must be gone.
	target := filepath.Join(dir, "d")
	if err := os.MkdirAll(filepath.Join(target, "child"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(target, []byte("x"), 0o600); err == nil {
		t.Fatal("WriteFile over a non-empty directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after a failed write, want 1", len(entries))
	}
}

func TestSymlink(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "current")
	for _, target := range []string{"a", "b"} {
		if err := Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		got, err := os.Readlink(link)
		if err != nil || got != target {
			t.Fatalf("Readlink = %q, %v; want %q", got, err, target)
		}
	}
	// A regular file in the way is replaced.
	os.Remove(link)
	if err := os.WriteFile(link, []byte("regular"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Symlink("c", link); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.Readlink(link); got != "c" {
		t.Fatalf("Readlink = %q, want c", got)
	}
}

// TestRemoveTemps removes what a WriteFile or Symlink killed before its
// rename leaves, and nothing else: not the file, not another file's
// temporary files, not a directory of that name.
func TestRemoveTemps(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "kubelet.conf")
	mk := func(name string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mk("kubelet.conf")
	mk(".kubelet.conf.tmp-123")
	mk(".kubelet.conf.tmp-456")
	mk(".other.conf.tmp-123")
	mk(".kubelet.conf.bak")
	if err := os.Symlink("kubelet.conf", filepath.Join(dir, ".kubelet.conf.tmp-link-abc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, ".kubelet.conf.tmp-dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := RemoveTemps(target); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	want := []string{".kubelet.conf.bak", ".kubelet.conf.tmp-dir", ".other.conf.tmp-123", "kubelet.conf"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("left %v, want %v", got, want)
	}
}
