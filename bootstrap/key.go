package bootstrap

import (
	"context"
	"crypto"
	"errors"
	"fmt"

	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/certstore"
	"github.com/tlsboot/tlsboot/csr"
)

// loadKey returns the key to request a certificate for: the current
// certificate's key if the store has one (unless opts.FreshKey), else the
// store's pending key <prefix>.key.tmp, created if missing. The pending key
// makes a retry after a failure or crash ask for a certificate for the same
// key, so it finds its own pending CSR by name. A pending key that can never
// be used is replaced by the store; one that is unsafe stops the run.
func loadKey(ctx context.Context, store *certstore.Store, opts Options) (crypto.Signer, []byte, error) {
	logger := klog.FromContext(ctx)
	if !opts.FreshKey {
		cur, err := store.Current()
		switch {
		case err == nil:
			if signer, keyPEM, err := csr.CertificateKey(cur); err == nil {
				logger.V(2).Info("Reusing the key of the current certificate", "path", store.CurrentPath())
				return signer, keyPEM, nil
			}
		case !errors.Is(err, certstore.ErrNoCertificate):
			return nil, nil, fmt.Errorf("%w: move it away to bootstrap a new certificate", err)
		}
	}
	key, keyPEM, created, replaced, err := store.LoadPendingKey(func() (crypto.Signer, error) { return csr.GenerateKey(opts.KeyType) })
	if err != nil {
		return nil, nil, err
	}
	path := store.PendingKeyPath()
	switch {
	case replaced != "":
		logger.Info("Replaced an unusable temporary key with a new one", "path", path, "reason", replaced, "key_type", opts.KeyType)
	case created:
		logger.V(1).Info("Generated a new private key", "path", path, "key_type", opts.KeyType)
	default:
		logger.V(1).Info("Reusing the key of an earlier, unfinished bootstrap", "path", path)
	}
	return key, keyPEM, nil
}
