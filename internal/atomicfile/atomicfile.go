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
	"strings"
	"syscall"
)

// Error is the error of a failed WriteFile, Symlink or (through NewError)
// a caller's own write: what was done to which file, and why. File is the
// file the caller named, never a temporary name. A full file system
// (ENOSPC, EDQUOT) is explained with what to do: free space where File
// lives (every write here leaves the previous file as it was, so running
// again then completes).
type Error struct {
	Op   string // "writing", "linking"
	File string
	Err  error
}

// NewError returns an *Error for op on file, unless err is nil or already
// an *Error.
func NewError(op, file string, err error) error {
	var e *Error
	if err == nil || errors.As(err, &e) {
		return err
	}
	return &Error{Op: op, File: file, Err: err}
}

func (e *Error) Error() string {
	// The cause without the path of the *fs.PathError or *os.LinkError,
	// which names the temporary file, or repeats File.
	cause := e.Err
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(cause, &pe):
		cause = pe.Err
	case errors.As(cause, &le):
		cause = le.Err
	}
	msg := e.Op + " " + e.File + ": " + cause.Error()
	if errors.Is(e.Err, syscall.ENOSPC) || errors.Is(e.Err, syscall.EDQUOT) {
		msg += "; free space on the file system that holds " + filepath.Dir(e.File)
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// WriteFile writes data to name like os.WriteFile, but atomically and
// durably. The file gets mode perm (not masked by the umask), set with
// fchmod on the temporary file this call created exclusively under a
// random name (os.CreateTemp: O_CREATE|O_EXCL), so no name another user
// could create in advance is ever written, and nothing is chmodded through a
// path. On error the target is left untouched, no temporary file remains,
// and the error is an *Error.
func WriteFile(name string, data []byte, perm os.FileMode) (err error) {
	defer func() { err = NewError("writing", name, err) }()
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
// name someone else created in advance is never used. The error is an
// *Error.
func Symlink(target, name string) (err error) {
	defer func() { err = NewError("linking", name, err) }()
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

// RemoveTemps removes the temporary files of name (.<base>.tmp-*) that a
// WriteFile or Symlink killed between creating and renaming them left
// behind; nothing else would ever remove them. Only regular files and
// links are removed. Call it only where name has one writer at a time: a
// concurrent WriteFile of name would lose its temporary file and fail
// (without touching name).
func RemoveTemps(name string) error {
	dir, base := filepath.Split(name)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	removed := false
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "."+base+".tmp-") || !(e.Type().IsRegular() || e.Type()&fs.ModeSymlink != 0) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		removed = true
	}
	if removed {
		return SyncDir(dir)
	}
	return nil
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
