package certstore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

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
// permission bits. The error wraps the *atomicfile.UnsafeFileError, which
// names the file and says what to do. A certificate directory its group or
// everyone can write to (made so after Open) gives an
// *atomicfile.InsecureDirError, also with nothing changed.
//
// Other errors (reading, generate's own, writing) name the file; on error
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
	if keyPEM, err = marshalPrivateKey(key); err != nil {
		return nil, nil, false, "", fmt.Errorf("certstore: pending key %s: %w", path, err)
	}
	if err := atomicfile.WriteFile(path, keyPEM, 0o600); err != nil {
		return nil, nil, false, "", fmt.Errorf("certstore: writing pending key %s: %w", path, err)
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
	key, err := parsePrivateKey(data)
	if err != nil {
		return nil, nil, "does not parse as a private key: " + err.Error(), nil
	}
	if cur, err := s.Current(); err == nil && publicEqual(key.Public(), cur.Leaf.PublicKey) {
		return nil, nil, "is the key of the current certificate " + s.CurrentPath() + " (left by a run that stopped after storing it)", nil
	}
	return key, data, "", nil
}

// DropPendingKey removes the pending key once its certificate is stored
// (after Update returned), so that the next request uses a new key. A missing file is not an error. A file
// that is not safe (see LoadPendingKey) is not removed: the error wraps the
// *atomicfile.UnsafeFileError. The removal is not fsynced: if a crash undoes
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

// PEM block types of private keys, the ones client-go's keyutil reads and
// writes.
const (
	blockEC    = "EC PRIVATE KEY"
	blockRSA   = "RSA PRIVATE KEY"
	blockPKCS8 = "PRIVATE KEY"
)

// parsePrivateKey returns the first private key block of data as an ECDSA
// or RSA key, the kinds the kubelet reads. Other blocks are skipped.
// Errors never contain key material.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	for n := 1; ; n++ {
		var block *pem.Block
		if block, data = pem.Decode(data); block == nil {
			return nil, errors.New("no private key PEM block")
		}
		if block.Type != blockEC && block.Type != blockRSA && block.Type != blockPKCS8 {
			continue
		}
		if _, ok := block.Headers["Proc-Type"]; ok {
			return nil, fmt.Errorf("PEM block %d (%s) is encrypted", n, block.Type)
		}
		key, err := parseKeyBlock(block)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d (%s): %w", n, block.Type, err)
		}
		return key, nil
	}
}

func parseKeyBlock(block *pem.Block) (crypto.Signer, error) {
	switch block.Type {
	case blockEC:
		return x509.ParseECPrivateKey(block.Bytes)
	case blockRSA:
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	switch key := key.(type) {
	case *ecdsa.PrivateKey:
		return key, nil
	case *rsa.PrivateKey:
		return key, nil
	}
	return nil, fmt.Errorf("key type %T is neither ECDSA nor RSA", key)
}

// marshalPrivateKey encodes key as client-go's keyutil does, so that the
// kubelet reads what this package writes.
func marshalPrivateKey(key crypto.Signer) ([]byte, error) {
	switch key := key.(type) {
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("encoding ECDSA key: %w", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: blockEC, Bytes: der}), nil
	case *rsa.PrivateKey:
		return pem.EncodeToMemory(&pem.Block{Type: blockRSA, Bytes: x509.MarshalPKCS1PrivateKey(key)}), nil
	}
	return nil, fmt.Errorf("generated key type %T is neither ECDSA nor RSA", key)
}

func publicEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
