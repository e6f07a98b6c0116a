package certstore

import (
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/internal/atomicfile"
)

// PendingKeyPath returns <dir>/<prefix>.key.tmp, the kubelet's name for the
// key that waits for its certificate (see LoadPendingKey). Dir is absolute.
func (s *Store) PendingKeyPath() string { return PendingKeyPath(s.dir, s.prefix) }

// PendingKeyPath is Store.PendingKeyPath for the store of prefix in dir,
// without opening it (for tools that only look, like `tlsboot status`).
func PendingKeyPath(dir, prefix string) string {
	return filepath.Join(dir, prefix+".key.tmp")
}

// HasPendingKey reports whether anything is at PendingKeyPath: the key of
// a request that has not finished (a failed or interrupted renewal or
// bootstrap). It neither reads the file nor follows a symbolic link, and
// says nothing about whether the key is usable or safe: a link or another
// user's file there counts too, so that a caller that resumes gets
// LoadPendingKey's error for it instead of never noticing it. An error
// other than the file not existing (for example a directory it may not
// search) is returned with the path; found is then false. It is safe for
// concurrent use with every method of s.
func (s *Store) HasPendingKey() (found bool, err error) { return HasPendingKey(s.dir, s.prefix) }

// HasPendingKey is Store.HasPendingKey for the store of prefix in dir,
// without opening it (for tools that only look, like `tlsboot status`).
func HasPendingKey(dir, prefix string) (found bool, err error) {
	_, err = os.Lstat(PendingKeyPath(dir, prefix))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("certstore: pending key: %w", err)
}

// LoadPendingKey returns the pending key: the private key that waits for
// its certificate in PendingKeyPath. Requesting a certificate for the same
// key after a failure or a restart gives the same deterministic CSR name, so
// a node re-attaches to its pending CSR instead of creating a second one.
//
// key is an *ecdsa.PrivateKey or an *rsa.PrivateKey and keyPEM its PEM as
// stored. When there is no pending key, generate is called (it must return
// an *ecdsa.PrivateKey or an *rsa.PrivateKey), and the new key is written
// atomically and durably with mode 0600 (internal/atomicfile.WriteFile)
// before it is returned, as "EC PRIVATE KEY" (SEC 1) or "RSA PRIVATE KEY"
// (PKCS #1) like client-go's keyutil; created is then true. A caller that
// sends a request for the key can therefore always find it again after a
// crash. The results never change after they are returned.
//
// An existing file is used when it is a safe private file (see below) that
// holds an ECDSA or RSA private key other than the current certificate's.
// A safe file that can never be used is replaced by a new key (created is
// true) and replaced says why, on one line without key material; nothing
// valid is lost. This package does not log: callers log replaced with
// PendingKeyPath. The cases:
//   - it does not parse as an ECDSA or RSA private key, or is larger than
//     atomicfile.MaxReadSize;
//   - it is the key of the current certificate: a crash after Update and
//     before DropPendingKey left it, and asking with it again would
//     re-attach to the CSR that issued the current certificate.
//
// A file that is not safe is never used, replaced or removed: a symbolic
// link (not followed), anything but a regular file (FIFO, directory,
// device), a file owned by another user, or one with group or other
// permission bits. Its error is one line that names the file, says why
// it is refused and what to do; it does not wrap fs.ErrNotExist. A
// certificate directory its group or everyone can write to (made so after
// Open) is refused as Open refuses it, also with nothing changed.
//
// Other errors (reading, generate's own, writing) name the file and wrap
// their cause: errors.Is(err, syscall.ENOSPC) (or EDQUOT) reports a full
// file system, and the message then says to free space there. On error
// the file is as it was.
//
// LoadPendingKey and DropPendingKey of one Store are serialised, so its
// concurrent callers get the same key and generate runs once. Two Stores
// (or processes) on the same directory and prefix are not coordinated:
// give each pending key one owner at a time.
// LoadPendingKey blocks on nothing but the file system and generate.
func (s *Store) LoadPendingKey(generate func() (crypto.Signer, error)) (key crypto.Signer, keyPEM []byte, created bool, replaced string, err error) {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	path := s.PendingKeyPath()
	if err := atomicfile.CheckDir(s.dir, "certificate directory"); err != nil {
		return nil, nil, false, "", fmt.Errorf("certstore: pending key %s: %w", path, err)
	}
	key, keyPEM, replaced, err = s.readPendingKey(path)
	if err != nil || key != nil {
		return key, keyPEM, false, "", err
	}
	if key, err = generate(); err != nil {
		return nil, nil, false, "", fmt.Errorf("certstore: pending key %s: %w", path, err)
	}
	if keyPEM, err = csr.MarshalPrivateKeyPEM(key); err != nil {
		return nil, nil, false, "", fmt.Errorf("certstore: pending key %s: %w", path, err)
	}
	if err := atomicfile.WriteFile(path, keyPEM, 0o600); err != nil {
		return nil, nil, false, "", fmt.Errorf("certstore: pending key: %w", err)
	}
	return key, keyPEM, true, replaced, nil
}

// readPendingKey returns the usable key at path, or no key and the reason
// the file that is there must be replaced (empty when it is missing), or an
// error for a file that must be left alone.
func (s *Store) readPendingKey(path string) (crypto.Signer, []byte, string, error) {
	data, err := atomicfile.ReadPrivateFile(path)
	var unsafe *atomicfile.UnsafeFileError
	var tooLarge *atomicfile.TooLargeError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, "", nil
	case errors.As(err, &unsafe):
		return nil, nil, "", fmt.Errorf("certstore: pending key %w", err)
	case errors.As(err, &tooLarge):
		// Ours and private (checked before the size), so replacing it
		// loses nothing a private key could be.
		return nil, nil, fmt.Sprintf("is larger than %d KiB, far more than any private key", tooLarge.Limit>>10), nil
	case err != nil:
		return nil, nil, "", fmt.Errorf("certstore: reading pending key: %w", err)
	}
	key, err := csr.ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, nil, "does not parse as a private key: " + err.Error(), nil
	}
	if cur, err := s.Current(); err == nil && publicEqual(key.Public(), cur.Leaf.PublicKey) {
		return nil, nil, "is the key of the current certificate " + s.CurrentPath() + " (left by a run that stopped after storing it)", nil
	}
	return key, data, "", nil
}

// DropPendingKey removes the pending key once its certificate is stored
// (after Update returned), so that the next request uses a new key. A
// missing file is not an error. A file that is not safe (see
// LoadPendingKey) is not removed, with the error LoadPendingKey gives for
// it. The removal is not fsynced: if a crash undoes
// it, the key is the current certificate's and LoadPendingKey replaces it.
func (s *Store) DropPendingKey() error {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	path := s.PendingKeyPath()
	// Read rather than Lstat so that "safe" means exactly what it means
	// to LoadPendingKey.
	_, err := atomicfile.ReadPrivateFile(path)
	var unsafe *atomicfile.UnsafeFileError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case errors.As(err, &unsafe):
		return fmt.Errorf("certstore: pending key %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("certstore: removing pending key: %w", err)
	}
	return nil
}

func publicEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
