package rotation

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"time"

	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/csr"
)

// next decides what the loop does now: renew for a reason, or sleep for
// the returned duration (reason empty).
func (m *Manager) next(ctx context.Context) (Reason, time.Duration) {
	now := m.opts.Clock.Now()
	first := !m.started
	m.started = true
	if reason := m.inspect(ctx, now); reason != "" {
		m.takeTrigger() // the renewal for reason is the one asked for
		return reason, 0
	}
	if m.takeTrigger() {
		klog.FromContext(ctx).Info("Renewal requested")
		return ReasonForced, 0
	}
	if m.retry == ReasonForced || m.retry == ReasonResume {
		return m.retry, 0
	}
	if first && m.pendingKeyExists(ctx) {
		return ReasonResume, 0
	}
	if wait := m.known.schedule.Deadline.Sub(now); wait > 0 {
		klog.FromContext(ctx).V(4).Info("Sleeping until the next deadline", "sleep", min(wait, m.opts.MaxSleep).String())
		return "", min(wait, m.opts.MaxSleep)
	}
	return ReasonDue, 0
}

// takeTrigger reports whether a Trigger is pending and clears it. A
// wake-up still queued is dropped too: it belongs to the same request.
func (m *Manager) takeTrigger() bool {
	select {
	case <-m.wake:
	default:
	}
	return m.forced.Swap(false)
}

// inspect loads the current certificate and returns why it cannot stay,
// or "" when it can until its deadline.
func (m *Manager) inspect(ctx context.Context, now time.Time) Reason {
	logger := klog.FromContext(ctx)
	cur, err := m.opts.Store.Current()
	if err != nil {
		// Said once per distinct error, not at every retry.
		if msg := err.Error(); msg != m.storeErr {
			m.storeErr = msg
			logger.Info("No usable certificate in the store, obtaining one", "err", err)
		}
		m.observe(ctx, nil, time.Time{})
		return ReasonMissing
	}
	m.storeErr = ""
	m.observe(ctx, cur, time.Time{})
	switch leaf := cur.Leaf; {
	case now.Before(leaf.NotBefore):
		return ReasonNotYetValid
	case now.After(leaf.NotAfter):
		return ReasonExpired
	case m.unauthorized:
		return ReasonUnauthorized
	}
	if m.opts.Usable != nil {
		if err := m.opts.Usable(); err != nil {
			logger.Info("The certificate is not usable as configured", "err", err)
			return ReasonMissing
		}
	}
	if err := m.mismatch(cur); err != nil {
		logger.Info("The certificate no longer matches what is wanted", "diff", err.Error())
		return ReasonTemplate
	}
	return ""
}

// mismatch compares the current certificate's subject and SANs with what
// Template asks for now (for example after --node-ip changed).
func (m *Manager) mismatch(cur *tls.Certificate) error {
	key, ok := cur.PrivateKey.(crypto.Signer)
	if !ok {
		return errors.New("its private key cannot sign")
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cur.Leaf.Raw})
	// csr.Check also checks validity at the time given; validity was
	// checked above, so check names only, at a time inside the window.
	_, err := csr.Check(certPEM, key, m.opts.Template(key.Public()), cur.Leaf.NotBefore, nil)
	return err
}

// observe records the certificate in use: in memory (see Current) and, for
// a new certificate, its schedule, with a fresh jitter sample, logged once.
// issuedAt is when it was stored if the caller knows (zero: ask the
// store's StoredAt). A nil cert (the store has none) leaves the one in memory alone.
func (m *Manager) observe(ctx context.Context, cert *tls.Certificate, issuedAt time.Time) {
	m.setCurrent(ctx, cert)
	var leaf *x509.Certificate
	serial := "none"
	if cert != nil {
		leaf = cert.Leaf
		serial = leaf.SerialNumber.String()
	}
	if serial == m.known.serial {
		return
	}
	if leaf == nil {
		m.known = certInfo{serial: serial}
		m.report(nil, Schedule{})
		return
	}
	if issuedAt.IsZero() {
		issuedAt = m.storedAt(ctx)
	}
	info := certInfo{serial: serial, issuedAt: issuedAt, r: m.opts.Rand()}
	info.schedule = Plan(leaf.NotBefore, leaf.NotAfter, issuedAt, m.opts.Policy, info.r)
	m.known = info
	s := info.schedule
	klog.FromContext(ctx).Info("Certificate in use", "subject", leaf.Subject.String(),
		"not_before", leaf.NotBefore.UTC().Format(time.RFC3339), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339),
		"lifetime", s.Lifetime().Round(time.Second).String(), "renew_at", s.Deadline.UTC().Format(time.RFC3339))
	if s.Clamped {
		klog.FromContext(ctx).Info("The renew-before floor is longer than half the certificate's lifetime; renewing at half instead",
			"renew_before", m.opts.Policy.RenewBefore.String(), "lifetime", s.Lifetime().Round(time.Second).String())
	}
	m.report(leaf, s)
}

func (m *Manager) report(leaf *x509.Certificate, s Schedule) {
	m.update(func(st *Status) { st.Certificate, st.Schedule = leaf, s })
	if m.opts.Hooks.Current != nil {
		m.opts.Hooks.Current(m.opts.Name, leaf)
	}
}

// storedAt returns when the store says the current certificate was
// stored, a good bound on when it was issued; zero if unknown.
func (m *Manager) storedAt(ctx context.Context) time.Time {
	t, err := m.opts.Store.StoredAt()
	if err != nil {
		klog.FromContext(ctx).Info("Could not tell when the certificate was stored; assuming its signer backdated it", "err", err)
		return time.Time{}
	}
	return t
}

// pendingKeyExists reports whether an unfinished renewal or bootstrap left
// its key behind. Anything there counts (see Store.HasPendingKey), so that
// the renewal it starts reports an unusable one instead of leaving it
// unnoticed.
func (m *Manager) pendingKeyExists(ctx context.Context) bool {
	found, err := m.opts.Store.HasPendingKey()
	if err != nil {
		klog.FromContext(ctx).Info("Could not check for a pending key; not resuming a request", "path", m.opts.Store.PendingKeyPath(), "err", err)
	}
	return found
}
