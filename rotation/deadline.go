// Package rotation keeps one certificate of a node valid: it decides when
// the certificate is due (Plan, a pure function of the certificate, the
// policy and a jitter sample) and runs the loop that renews it (Manager),
// with metric hooks instead of a metrics library and an injected clock so
// that tests never sleep.
//
// A Manager is also the node's live identity in memory for the process
// that runs it: Current, GetClientCertificate and GetCertificate plug into
// a tls.Config, and RESTConfig gives client-go a config that always
// presents the current certificate and reconnects after each rotation.
//
// The certificate lives in a Store (*certstore.Store in the kubelet's
// layout). Failed attempts are classified (Failure) from the typed errors
// of package csr.
package rotation

import (
	"time"
)

// Defaults of Policy.
const (
	// DefaultMinFraction and DefaultMaxFraction bound the jittered renewal
	// point, as a fraction of the lifetime: uniformly in [70%, 90%], like
	// client-go's certificate manager, so that nodes created together do
	// not renew together forever after.
	DefaultMinFraction = 0.7
	DefaultMaxFraction = 0.9
	// DefaultBackdate is how far kube-controller-manager backdates
	// NotBefore (pkg/controller/certificates/signer: Backdate 5m), to
	// tolerate clock skew between nodes and the API server.
	DefaultBackdate = 5 * time.Minute
	// floorFraction is the earliest point of the lifetime that RenewBefore
	// may pull the deadline to. Without it, a RenewBefore at least as long
	// as the lifetime the signer grants would renew a fresh certificate at
	// once, get another equally short one, and loop.
	floorFraction = 0.5
	// DefaultRecoverSpread bounds the random wait before recovering a
	// certificate that had already expired when the Manager started (see
	// Policy.RecoverSpread). 30s turns a fleet of 10,000 nodes that
	// power on in the same second into about 330 CSR creates per second
	// instead of 10,000 (bench/storm), and costs a node that has been
	// without a valid certificate for a while 15s on average.
	DefaultRecoverSpread = 30 * time.Second
)

// Policy says when a certificate is due. The zero value uses the defaults.
type Policy struct {
	// MinFraction and MaxFraction bound the renewal point as fractions of
	// the lifetime; 0 means DefaultMinFraction, DefaultMaxFraction.
	MinFraction, MaxFraction float64
	// RenewBefore, if positive, is a floor: renew at the latest when this
	// much of the lifetime is left. It is never allowed to pull the
	// deadline before half the lifetime (see Schedule.Clamped).
	RenewBefore time.Duration
	// Backdate is the most a signer is assumed to backdate NotBefore;
	// 0 means DefaultBackdate.
	Backdate time.Duration
	// RecoverSpread bounds a random wait, uniform in [0, RecoverSpread),
	// before a Manager recovers (Options.Recover) a certificate that had
	// already expired when it started. Such a start is what a fleet-wide
	// event looks like (power restored after an outage longer than the
	// lifetime): without the wait every node would ask for a certificate
	// in the same second. A missing certificate (a new node) and one
	// that expires while the Manager runs are not delayed, and a Trigger
	// ends the wait. 0 means DefaultRecoverSpread; negative means no wait.
	RecoverSpread time.Duration
}

func (p Policy) withDefaults() Policy {
	if p.MinFraction == 0 {
		p.MinFraction = DefaultMinFraction
	}
	if p.MaxFraction == 0 {
		p.MaxFraction = DefaultMaxFraction
	}
	if p.Backdate == 0 {
		p.Backdate = DefaultBackdate
	}
	if p.RecoverSpread == 0 {
		p.RecoverSpread = DefaultRecoverSpread
	}
	return p
}

// RecoverDelay returns the wait before recovering a certificate found
// expired at start: r, in [0, 1), picks it uniformly in
// [0, RecoverSpread); 0 when RecoverSpread is negative.
func (p Policy) RecoverDelay(r float64) time.Duration {
	p = p.withDefaults()
	if p.RecoverSpread < 0 {
		return 0
	}
	r = min(max(r, 0), 1)
	return time.Duration(r * float64(p.RecoverSpread))
}

// Schedule is when a certificate is due for renewal.
type Schedule struct {
	// Start is where its real lifetime begins: when it was issued, which
	// for a backdated certificate is later than NotBefore.
	Start time.Time
	// NotAfter is the certificate's NotAfter.
	NotAfter time.Time
	// Deadline is when to renew it.
	Deadline time.Time
	// Clamped is true when RenewBefore asked for a deadline earlier than
	// half the lifetime and was overruled.
	Clamped bool
}

// Lifetime is NotAfter - Start: what the signer really granted.
func (s Schedule) Lifetime() time.Duration { return s.NotAfter.Sub(s.Start) }

// lifetimeStart returns where a certificate's real lifetime begins.
//
// Signers backdate NotBefore to tolerate clock skew: kube-controller-manager
// sets NotBefore = issuance - 5m, and for lifetimes under 8h it does not
// shorten NotAfter to match (NotAfter = issuance + TTL). For a 2m
// certificate NotAfter - NotBefore is then 7m, and 70% of it lies before
// the issuance: a naive fraction renews at once, again and again.
//
// issuedAt, when known (the time the certificate was stored), is used,
// bounded to [notBefore, notBefore+backdate] so that a certificate stored
// long after it was issued is not treated as newer than it is. Unknown
// (zero), the signer is assumed to have backdated by backdate, unless the
// validity window is not even that long.
func lifetimeStart(notBefore, notAfter, issuedAt time.Time, backdate time.Duration) time.Time {
	limit := notBefore.Add(backdate)
	if window := notAfter.Sub(notBefore); backdate >= window {
		// Not a backdated certificate (kube-controller-manager's window
		// is always the TTL plus the backdate): do not assume one.
		limit = notBefore.Add(window / 2)
	}
	switch {
	case issuedAt.IsZero() || issuedAt.After(limit):
		return limit
	case issuedAt.Before(notBefore):
		return notBefore
	}
	return issuedAt
}

// Plan computes the schedule of a certificate valid from notBefore to
// notAfter and stored at issuedAt (zero if unknown). r, in [0, 1), picks
// the point between MinFraction and MaxFraction; draw it once per
// certificate so that the deadline does not move when recomputed.
func Plan(notBefore, notAfter, issuedAt time.Time, p Policy, r float64) Schedule {
	p = p.withDefaults()
	s := Schedule{Start: lifetimeStart(notBefore, notAfter, issuedAt, p.Backdate), NotAfter: notAfter}
	life := s.Lifetime()
	if life <= 0 {
		s.Deadline = notAfter
		return s
	}
	r = min(max(r, 0), 1)
	frac := p.MinFraction + r*(p.MaxFraction-p.MinFraction)
	s.Deadline = s.Start.Add(time.Duration(frac * float64(life)))
	if p.RenewBefore <= 0 {
		return s
	}
	floor := notAfter.Add(-p.RenewBefore)
	if earliest := s.Start.Add(time.Duration(floorFraction * float64(life))); floor.Before(earliest) {
		floor, s.Clamped = earliest, true
	}
	if floor.Before(s.Deadline) {
		s.Deadline = floor
	}
	return s
}
