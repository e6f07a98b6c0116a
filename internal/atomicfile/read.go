package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
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

// InsecureDirError reports a directory that users other than its owner
// can write to: they could replace or plant the files tlsboot keeps there.
type InsecureDirError struct {
	Path string
	Mode fs.FileMode
	What string // e.g. "certificate directory"
}

func (e *InsecureDirError) Error() string {
	return fmt.Sprintf("%s %s is writable by its group or by everyone (mode %04o): anyone who can write there can replace the node's keys and certificates; tlsboot does not change it, make it private with 'chmod 700 %s' and run again",
		e.What, e.Path, e.Mode.Perm(), e.Path)
}

// CheckDir returns an *InsecureDirError when the directory dir (symbolic
// links followed) is group- or world-writable, and the error of stat
// otherwise, if any. It changes nothing.
func CheckDir(dir, what string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if fi.IsDir() && fi.Mode().Perm()&0o022 != 0 {
		return &InsecureDirError{Path: dir, Mode: fi.Mode(), What: what}
	}
	return nil
}
