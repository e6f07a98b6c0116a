package rotation

import (
	"crypto"
	"crypto/tls"
	"time"
)

// Store is where a Manager keeps its certificate and the key of a request
// in progress. *certstore.Store implements it (the kubelet's layout); the
// Manager calls it from its own goroutine and, for Current, from New.
type Store interface {
	// Current returns the stored certificate with Leaf set, or an error
	// when there is none or it cannot be read (the Manager then obtains a
	// new one, through Options.Recover if set).
	Current() (*tls.Certificate, error)
	// Update stores a certificate chain and its key, atomically: Current
	// returns either the old pair or the new one, never a mix. It returns
	// the stored certificate with Leaf set.
	Update(certPEM, keyPEM []byte) (*tls.Certificate, error)
	// StoredAt returns when the certificate Current returns was stored,
	// an upper bound on when it was issued that places the lifetime of a
	// backdated certificate (see Plan). The Manager calls it after
	// Current, once per certificate; on error it assumes the signer
	// backdated by Policy.Backdate.
	StoredAt() (time.Time, error)
	// HasPendingKey reports whether a pending key (see LoadPendingKey) is
	// stored: one there at start makes the Manager resume the unfinished
	// request at once. On error the Manager does not resume.
	HasPendingKey() (bool, error)
	// CurrentPath names the stored certificate, for logs only.
	CurrentPath() string
	// PendingKeyPath names the pending key, for logs only.
	PendingKeyPath() string
	// LoadPendingKey returns the pending key: the key a request waits
	// with, kept so that a retry or a restart asks with the same key and
	// so re-attaches to the same CSR. If there is none it creates one with
	// generate and stores it durably before returning (created). One that
	// can never be used (does not parse, or is the current certificate's
	// key) is replaced, and replaced says why. One that is unsafe to use
	// (a link, another user's file, readable by others) is left alone and
	// reported as an error naming it.
	LoadPendingKey(generate func() (crypto.Signer, error)) (key crypto.Signer, keyPEM []byte, created bool, replaced string, err error)
	// DropPendingKey removes the pending key, once its certificate is
	// stored or its CSR can never be issued; a missing key is not an
	// error.
	DropPendingKey() error
}
