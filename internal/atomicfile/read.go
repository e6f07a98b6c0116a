package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// MaxReadSize is the largest certificate, key or kubeconfig ReadFile and
// ReadPrivateFile accept: 1 MiB. A real one is a few KiB; anything near the
// limit was put there to exhaust memory.
const MaxReadSize = 1 << 20

// TooLargeError is returned by ReadFile and ReadPrivateFile for a file
// larger than the limit. Nothing past the limit is read.
type TooLargeError struct {
	Path  string
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s is larger than %d KiB, far more than any certificate, key or kubeconfig: refusing to read it; check what wrote it", e.Path, e.Limit>>10)
}

// NotRegularError is returned for something that is not a regular file (a
// directory, FIFO, socket or device). It is not opened for reading.
type NotRegularError struct {
	Path string
	Mode fs.FileMode
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("%s is not a regular file (%s)", e.Path, describeType(e.Mode))
}

// ReadFile reads the regular file name, following symbolic links (the
// certificate store's -current.pem is one), with a limit of MaxReadSize.
// FIFOs and devices are refused without blocking on them. Errors name the
// file.
func ReadFile(name string) ([]byte, error) {
	return readLimited(name, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, MaxReadSize, nil)
}

// UnsafeFileError reports a private file (a key) that tlsboot will not use
// because someone else could have written or read it: a symbolic link,
// something other than a regular file, a file owned by another user, or one
// with group or other permission bits. Nothing about the file is changed.
type UnsafeFileError struct {
	Path   string
	Reason string // e.g. "is a symbolic link", "has mode 0644"
}

func (e *UnsafeFileError) Error() string {
	return fmt.Sprintf("%s %s: tlsboot neither uses nor changes it; check who made it, then remove it or move it away and run again", e.Path, e.Reason)
}

// ReadPrivateFile reads a file that must be private to the running user,
// such as a pending private key: it is opened with O_NOFOLLOW (a symbolic
// link is refused, never followed), and the opened file itself (fstat, no
// second lookup of the name) must be a regular file owned by the effective
// user with no group or other permission bits. Otherwise the error is an
// *UnsafeFileError and nothing is changed: no chmod, no removal. The size
// limit is MaxReadSize. A missing file gives an error wrapping
// fs.ErrNotExist.
func ReadPrivateFile(name string) ([]byte, error) {
	return readLimited(name, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, MaxReadSize, func(st *syscall.Stat_t) error {
		mode := fs.FileMode(st.Mode & 0o777)
		switch euid := os.Geteuid(); {
		case int(st.Uid) != euid:
			return &UnsafeFileError{Path: name, Reason: fmt.Sprintf("is owned by uid %d, not by the user tlsboot runs as (uid %d)", st.Uid, euid)}
		case mode&0o077 != 0:
			return &UnsafeFileError{Path: name, Reason: fmt.Sprintf("has mode %04o, readable or writable by others (a private key must be 0600)", mode)}
		}
		return nil
	})
}

// readLimited opens name with flags, checks with fstat that it is a regular
// file (and passes check, if set), and reads at most limit bytes.
func readLimited(name string, flags int, limit int64, check func(*syscall.Stat_t) error) ([]byte, error) {
	fd, err := open(name, flags)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) && flags&syscall.O_NOFOLLOW != 0 {
			return nil, &UnsafeFileError{Path: name, Reason: "is a symbolic link"}
		}
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, &fs.PathError{Op: "fstat", Path: name, Err: err}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		mode := modeOf(st.Mode)
		if flags&syscall.O_NOFOLLOW != 0 {
			return nil, &UnsafeFileError{Path: name, Reason: "is not a regular file (" + describeType(mode) + ")"}
		}
		return nil, &NotRegularError{Path: name, Mode: mode}
	}
	if check != nil {
		if err := check(&st); err != nil {
			return nil, err
		}
	}
	if st.Size > limit {
		return nil, &TooLargeError{Path: name, Limit: limit}
	}
	// The file may grow between fstat and read: read one byte past the
	// limit to notice.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	if int64(len(data)) > limit {
		return nil, &TooLargeError{Path: name, Limit: limit}
	}
	return data, nil
}

// open is syscall.Open retried on EINTR.
func open(name string, flags int) (int, error) {
	for {
		fd, err := syscall.Open(name, flags, 0)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

func modeOf(m uint32) fs.FileMode {
	switch m & syscall.S_IFMT {
	case syscall.S_IFDIR:
		return fs.ModeDir
	case syscall.S_IFIFO:
		return fs.ModeNamedPipe
	case syscall.S_IFSOCK:
		return fs.ModeSocket
	case syscall.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFBLK:
		return fs.ModeDevice
	case syscall.S_IFLNK:
		return fs.ModeSymlink
	}
	return fs.ModeIrregular
}

func describeType(m fs.FileMode) string {
	switch {
	case m&fs.ModeDir != 0:
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "not a regular file"
}

// InsecureDirError reports a directory tlsboot keeps files in that another
// user could change: they could replace or plant the files tlsboot keeps
// there. Path is the directory checked; Unsafe is what is wrong with it, or
// with a symbolic link or parent directory on its way from /.
type InsecureDirError struct {
	Path string
	Mode fs.FileMode // of Unsafe
	What string      // e.g. "certificate directory"
	// Unsafe is the path found unsafe: Path, the directory a symbolic
	// link Path leads to, a parent of either, or such a link itself.
	Unsafe string
	// Kind says what is wrong with Unsafe.
	Kind InsecureKind
	// Owner is Unsafe's owner (uid); EUID the user tlsboot runs as.
	Owner, EUID int
}

// InsecureKind is what InsecureDirError found.
type InsecureKind int

const (
	// DirWritable: the directory is group- or world-writable.
	DirWritable InsecureKind = iota
	// DirOwner: the directory is owned by another user than the
	// effective user or root.
	DirOwner
	// ParentWritable: a directory above it (or holding a symbolic link on
	// the way) is group- or world-writable without the sticky bit, so
	// other users can rename the entry away and put their own in its place.
	ParentWritable
	// ParentOwner: a directory above it is owned by another user than the
	// effective user or root, who can do the same.
	ParentOwner
	// LinkOwner: a symbolic link on the way is owned by another user than
	// the effective user or root.
	LinkOwner
)

func (e *InsecureDirError) Error() string {
	unsafe := e.Unsafe
	if unsafe == "" {
		unsafe = e.Path
	}
	const risk = "anyone who can change it can replace the node's keys and certificates; tlsboot does not change it"
	switch e.Kind {
	case DirOwner:
		return fmt.Sprintf("%s %s is owned by uid %d, not by the user tlsboot runs as (uid %d) or root: %s, give it to this user with 'chown %d %s' (or use another directory) and run again",
			e.What, e.describe(unsafe), e.Owner, e.EUID, risk, e.EUID, unsafe)
	case ParentWritable:
		return fmt.Sprintf("%s %s is inside %s, writable by its group or by everyone without the sticky bit (mode %04o): %s, run 'chmod go-w %s' (or use another directory) and run again",
			e.What, e.Path, unsafe, e.Mode.Perm(), risk, unsafe)
	case ParentOwner:
		return fmt.Sprintf("%s %s is inside %s, owned by uid %d, not by the user tlsboot runs as (uid %d) or root: %s, run 'chown %d %s' (or use a directory outside it) and run again",
			e.What, e.Path, unsafe, e.Owner, e.EUID, risk, e.EUID, unsafe)
	case LinkOwner:
		return fmt.Sprintf("%s %s leads through the symbolic link %s, owned by uid %d, not by the user tlsboot runs as (uid %d) or root: %s, replace the link with one this user owns (or use the real directory) and run again",
			e.What, e.Path, unsafe, e.Owner, e.EUID, risk)
	}
	return fmt.Sprintf("%s %s is writable by its group or by everyone (mode %04o): anyone who can write there can replace the node's keys and certificates; tlsboot does not change it, make it private with 'chmod 700 %s' and run again",
		e.What, e.describe(unsafe), e.Mode.Perm(), unsafe)
}

// describe names the directory checked, and where a link led.
func (e *InsecureDirError) describe(unsafe string) string {
	if unsafe == e.Path {
		return e.Path
	}
	return e.Path + " (" + unsafe + ")"
}

// maxLinks bounds the symbolic links CheckDir follows, as the kernel does
// (ELOOP after 40).
const maxLinks = 40

// CheckDir returns an *InsecureDirError when a user other than the effective
// user and root could replace the files of the directory dir, the way ssh's
// StrictModes judges a home directory:
//   - dir must be owned by the effective user or root, and be neither group-
//     nor world-writable;
//   - every directory above it, up to /, must be owned by the effective
//     user or root, and be group- or world-writable only with the sticky
//     bit (as /tmp is: there nobody else can rename our entry);
//   - dir may be a symbolic link (/var/lib/kubelet/pki is on some systems)
//     owned by the effective user or root, whose parents pass the same
//     check; the directory it leads to is then checked as above.
//
// A dir that is not a directory passes (its user fails on it with a clearer
// error); the error of lstat is returned as is (fs.ErrNotExist included).
// CheckDir changes nothing.
func CheckDir(dir, what string) error {
	euid := os.Geteuid()
	path, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	fail := func(unsafe string, fi fs.FileInfo, kind InsecureKind) error {
		return &InsecureDirError{Path: dir, What: what, Unsafe: unsafe, Mode: fi.Mode(), Kind: kind, Owner: ownerOf(fi), EUID: euid}
	}
	for links := 0; ; links++ {
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			if !fi.IsDir() {
				return nil
			}
			if !trusted(fi, euid) {
				return fail(displayed(dir, path), fi, DirOwner)
			}
			if fi.Mode().Perm()&0o022 != 0 {
				return fail(displayed(dir, path), fi, DirWritable)
			}
			return checkParents(path, euid, fail)
		}
		if links == maxLinks {
			return &fs.PathError{Op: "lstat", Path: dir, Err: syscall.ELOOP}
		}
		if !trusted(fi, euid) {
			return fail(path, fi, LinkOwner)
		}
		// Whoever can write the link's directory can replace the link.
		if err := checkParents(path, euid, fail); err != nil {
			return err
		}
		target, err := os.Readlink(path)
		if err != nil {
			return err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		path = filepath.Clean(target)
	}
}

// displayed is the path to name for dir once links were followed to path:
// dir as the caller wrote it when nothing was followed.
func displayed(dir, path string) string {
	if abs, err := filepath.Abs(dir); err == nil && abs == path {
		return dir
	}
	return path
}

// checkParents checks every directory above path (symbolic links among them
// resolved: the real directories are what can be written), up to /.
func checkParents(path string, euid int, fail func(string, fs.FileInfo, InsecureKind) error) error {
	parent, err := filepath.EvalSymlinks(filepath.Dir(path))
	if err != nil {
		return err
	}
	for p := parent; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		switch {
		case !trusted(fi, euid):
			return fail(p, fi, ParentOwner)
		case fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0:
			return fail(p, fi, ParentWritable)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// trusted: fi is owned by the effective user or root.
func trusted(fi fs.FileInfo, euid int) bool {
	uid := ownerOf(fi)
	return uid == euid || uid == 0
}

// ownerOf is fi's owner (uid), or -1 when the system does not say.
func ownerOf(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}
