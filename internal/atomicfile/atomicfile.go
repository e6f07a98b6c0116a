// Package atomicfile writes files so that a reader, or the next run after a
// crash, sees either the old content or the new one, never a mix or an empty
// file: write a temporary file in the same directory, fsync it, rename it over
// the target, then fsync the directory so that the rename itself is durable.
//
// os.WriteFile truncates in place and client-go's helpers do not fsync the
// directory, which is why this small package exists.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFile writes data to name like os.WriteFile, but atomically and
// durably. The file gets mode perm (not masked by the umask), set with
// fchmod on the temporary file this call created exclusively under a
// random name (os.CreateTemp: O_CREATE|O_EXCL), so no name another user
// could create in advance is ever written, and nothing is chmodded through a
// path. On error the target is left untouched and no temporary file remains.
func WriteFile(name string, data []byte, perm os.FileMode) (err error) {
	dir, base := filepath.Split(name)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = write(f, data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, name); err != nil {
		return err
	}
	return SyncDir(dir)
}

// Symlink makes name a symbolic link to target, replacing whatever name was
// (a link or a regular file) with a single rename, and fsyncs the directory.
// The new link is first created under a random temporary name in the same
// directory; symlink(2) never follows or replaces an existing name, so a
// name someone else created in advance is never used.
func Symlink(target, name string) error {
	dir, base := filepath.Split(name)
	if dir == "" {
		dir = "."
	}
	var tmp string
	for tries := 0; ; tries++ {
		tmp = filepath.Join(dir, "."+base+".tmp-link-"+randomSuffix())
		err := symlink(target, tmp)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || tries >= 100 {
			return err
		}
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(dir)
}

// write and symlink are the two calls that take space on the file system.
// They are variables only so that tests without root, which cannot fill a
// small tmpfs, can inject ENOSPC (TestWriteFailures); nothing else sets
// them.
var (
	write   = (*os.File).Write
	symlink = os.Symlink
)

// randomSuffix returns 12 random hex digits.
func randomSuffix() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b[:])
}

// SyncDir fsyncs the directory dir, making renames and creations in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
