package rotation

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/csrwait"
)

// renew obtains and stores a new certificate for reason.
func (m *Manager) renew(ctx context.Context, reason Reason) error {
	logger := klog.FromContext(ctx)
	logger.Info("Renewing certificate", "reason", reason)
	if reason.unusable() && m.opts.Recover != nil {
		return m.recover(ctx, reason)
	}
	err := m.request(ctx, reason)
	if err != nil && m.opts.Recover != nil && classify(err) == FailUnauthorized {
		if m.opts.Hooks.Failed != nil {
			m.opts.Hooks.Failed(m.opts.Name, FailUnauthorized, err)
		}
		logger.Info("The API server rejected the current certificate, re-bootstrapping with the bootstrap credentials", "err", err)
		m.unauthorized = true
		return m.recover(ctx, ReasonUnauthorized)
	}
	return err
}

// recover replaces the certificate through Options.Recover.
func (m *Manager) recover(ctx context.Context, reason Reason) error {
	m.setRecovering(true)
	issuance, err := m.opts.Recover(ctx)
	if err != nil {
		return fmt.Errorf("recovering a certificate that is %s: %w", describe(reason), err)
	}
	cur, err := m.opts.Store.Current()
	if err != nil {
		return storeError{fmt.Errorf("reading the recovered certificate: %w", err)}
	}
	m.unauthorized = false
	m.observe(ctx, cur, m.opts.Clock.Now())
	m.setRecovering(false)
	m.rotated(ctx, reason, issuance, cur.Leaf)
	return nil
}

func describe(r Reason) string {
	switch r {
	case ReasonMissing:
		return "missing or unusable"
	case ReasonExpired:
		return "expired"
	case ReasonNotYetValid:
		return "not yet valid (check the clock)"
	case ReasonUnauthorized:
		return "rejected by the API server"
	}
	return string(r)
}

func (m *Manager) setRecovering(on bool) {
	changed := false
	m.update(func(s *Status) { changed, s.Recovering = s.Recovering != on, on })
	if changed && m.opts.Hooks.Recovering != nil {
		m.opts.Hooks.Recovering(m.opts.Name, on)
	}
}

func (m *Manager) rotated(ctx context.Context, reason Reason, issuance time.Duration, leaf *x509.Certificate) {
	klog.FromContext(ctx).Info("Certificate rotated", "reason", reason, "path", m.opts.Store.CurrentPath(),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339), "issuance", issuance.Round(time.Millisecond).String())
	if m.opts.Hooks.Rotated != nil {
		m.opts.Hooks.Rotated(m.opts.Name, reason, issuance)
	}
}

// request renews with the node's current client certificate.
func (m *Manager) request(ctx context.Context, reason Reason) error {
	client, err := m.opts.Client(ctx)
	if err != nil {
		return fmt.Errorf("building a client with the current client certificate: %w", err)
	}
	var roots *x509.CertPool
	if m.opts.Roots != nil {
		if roots, err = m.opts.Roots(); err != nil {
			return fmt.Errorf("reading the CA that issued certificates must chain to: %w", err)
		}
	}
	key, keyPEM, err := m.key(ctx)
	if err != nil {
		return err
	}
	req := m.opts.Template(key.Public())
	name := ""
	if !m.opts.ReuseKey {
		if name, err = req.Name(key.Public()); err != nil {
			return err
		}
	}
	certPEM, issuance, err := m.obtain(ctx, client, name, req, key, keyPEM, roots, m.waitLimit())
	if err != nil {
		return err
	}
	cert, err := m.opts.Store.Update(certPEM, keyPEM)
	if err != nil {
		return storeError{fmt.Errorf("storing the issued certificate: %w", err)}
	}
	m.dropPendingKey(ctx)
	m.unauthorized = false
	m.observe(ctx, cert, m.opts.Clock.Now())
	m.rotated(ctx, reason, issuance, cert.Leaf)
	return nil
}

// obtain submits the CSR, waits for its certificate, checks it against
// the request and has Confirm confirm it. It returns the time from
// submission to issuance.
func (m *Manager) obtain(ctx context.Context, client kubernetes.Interface, name string, req csr.Request, key crypto.Signer, keyPEM []byte, roots *x509.CertPool, limit time.Duration) ([]byte, time.Duration, error) {
	logger := klog.FromContext(ctx)
	submitted := m.opts.Clock.Now()
	obj, created, err := csrwait.Submit(ctx, client, name, req, key)
	if err != nil {
		m.discardIfFinal(ctx, err)
		return nil, 0, err
	}
	logger.Info("Certificate signing request submitted", "csr", obj.Name, "reattached", !created, "signer", req.SignerName)
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	// The progress ticker runs on the real clock: it only paces log lines.
	certPEM, err := csrwait.ForCSR(wctx, client, obj, csrwait.Options{
		Progress: csrwait.LogProgress(logger),
	})
	if err != nil {
		// A *csr.TimeoutError when limit passed: the CSR may still be
		// issued, so the pending key stays to re-attach to it.
		m.discardIfFinal(ctx, err)
		return nil, 0, err
	}
	issuance := m.opts.Clock.Since(submitted)
	if _, err := csr.CheckIssued(obj.Name, certPEM, key, req, m.opts.Clock.Now(), roots); err != nil {
		// The next attempt must not re-attach to this CSR and get the
		// same certificate again: a new key gives a new CSR name.
		m.dropPendingKey(ctx)
		return nil, 0, err
	}
	if m.opts.Confirm != nil {
		if err := m.opts.Confirm(ctx, obj.Name, certPEM, keyPEM); err != nil {
			// A rejected certificate is final for this CSR, as above; a
			// server that did not answer is asked again with the same
			// key, which re-attaches to this CSR.
			var id *csr.IdentityError
			if errors.As(err, &id) {
				m.dropPendingKey(ctx)
			}
			return nil, 0, err
		}
	}
	return certPEM, issuance, nil
}

// waitLimit bounds the wait for issuance by WaitTimeout and by the expiry
// of the certificate in use: once that has expired, waiting on with it is
// pointless, and the client certificate must turn to recovery instead.
func (m *Manager) waitLimit() time.Duration {
	limit := m.opts.WaitTimeout
	if cur := m.Status().Certificate; cur != nil {
		if left := cur.NotAfter.Sub(m.opts.Clock.Now()); left > 0 && left < limit {
			limit = left
		}
	}
	return limit
}

// discardIfFinal drops the pending key when its CSR can never be issued
// (denied, failed, deleted, replaced, conflicting), so that the next attempt
// asks again under a new name instead of finding the same dead CSR.
func (m *Manager) discardIfFinal(ctx context.Context, err error) {
	var outcome *csr.OutcomeError
	var conflict *csr.ConflictError
	if errors.As(err, &outcome) || errors.As(err, &conflict) {
		m.dropPendingKey(ctx)
	}
}

// dropPendingKey removes the pending key; with ReuseKey there is none of
// this Manager's to remove. A failure is logged, not returned: the renewal
// it follows has its own outcome, and the next LoadPendingKey replaces a
// stale key or reports an unsafe one.
func (m *Manager) dropPendingKey(ctx context.Context) {
	if m.opts.ReuseKey {
		return
	}
	if err := m.opts.Store.DropPendingKey(); err != nil {
		klog.FromContext(ctx).Info("Could not remove the pending key", "path", m.opts.Store.PendingKeyPath(), "err", err)
	}
}

// key returns the key to request with: the current one with ReuseKey, else
// the store's pending key, created if missing (see Store.LoadPendingKey for
// which existing key is used, replaced or refused).
func (m *Manager) key(ctx context.Context) (crypto.Signer, []byte, error) {
	if m.opts.ReuseKey {
		cur, err := m.opts.Store.Current()
		if err != nil {
			return nil, nil, fmt.Errorf("reusing the current key: %w", err)
		}
		signer, keyPEM, err := csr.CertificateKey(cur)
		if err != nil {
			return nil, nil, fmt.Errorf("reusing the current key: %w", err)
		}
		return signer, keyPEM, nil
	}
	key, keyPEM, created, replaced, err := m.opts.Store.LoadPendingKey(func() (crypto.Signer, error) {
		return csr.GenerateKey(m.opts.KeyType)
	})
	if err != nil {
		return nil, nil, storeError{err}
	}
	logger := klog.FromContext(ctx)
	switch path := m.opts.Store.PendingKeyPath(); {
	case replaced != "":
		logger.Info("Replaced an unusable temporary key with a new one", "path", path, "reason", replaced)
	case !created:
		logger.V(1).Info("Reusing the key of an unfinished renewal", "path", path)
	}
	return key, keyPEM, nil
}
