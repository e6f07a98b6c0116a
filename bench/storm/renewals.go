package main

import (
	"math/rand/v2"
	"slices"
	"time"

	"github.com/tlsboot/tlsboot/rotation"
)

// epoch is where virtual time starts; only differences matter.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Year is the virtual time the renewal simulation covers.
const year = 365 * 24 * time.Hour

// kube-controller-manager's signer (pkg/controller/certificates/authority,
// PermissiveSigningPolicy in Kubernetes v1.37.2): NotBefore is backdated by
// 5m; a lifetime of 8h or more ends at issuance + TTL - 5m, a shorter one
// at issuance + TTL.
const (
	signerBackdate = 5 * time.Minute
	signerShort    = 8 * time.Hour
)

// sign returns the validity window kube-controller-manager gives a
// certificate issued at t with lifetime ttl.
func sign(t time.Time, ttl time.Duration) (notBefore, notAfter time.Time) {
	notBefore = t.Add(-signerBackdate)
	if ttl < signerShort {
		return notBefore, t.Add(ttl)
	}
	return notBefore, t.Add(ttl - signerBackdate)
}

// renewPolicy returns when a node renews the certificate it stored at
// issued, valid from notBefore to notAfter, given a jitter sample r in
// [0, 1) drawn once for that certificate.
type renewPolicy struct {
	name     string
	deadline func(notBefore, notAfter, issued time.Time, r float64) time.Time
}

// tlsbootRenewal is the product's policy: rotation.Plan with the default
// Policy, as a Manager calls it after storing a certificate (issuedAt is
// the time it stored it, r one draw of Options.Rand per certificate).
var tlsbootRenewal = renewPolicy{name: "tlsboot", deadline: func(nb, na, issued time.Time, r float64) time.Time {
	return rotation.Plan(nb, na, issued, rotation.Policy{}, r).Deadline
}}

// clientGoRenewal is client-go's certificate manager
// (k8s.io/client-go@v0.37.2/util/certificate/certificate_manager.go,
// nextRotationDeadline and jitteryDuration), rewritten from its documented
// behaviour: the deadline is NotBefore plus a uniformly random 70–90% of
// NotAfter - NotBefore (wait.Jitter(total, 0.2) - 0.3 total), drawn when
// the rotation loop starts waiting for the certificate, i.e. once per
// certificate.
var clientGoRenewal = renewPolicy{name: "client-go", deadline: func(nb, na, _ time.Time, r float64) time.Time {
	total := float64(na.Sub(nb))
	return nb.Add(time.Duration(total+r*0.2*total) - time.Duration(total*0.3))
}}

// renewalResult is one simulated year of one fleet under one policy.
type renewalResult struct {
	peak1s, peak60s int     // most renewals in any 1 s / 60 s window
	waves           int     // renewal waves every node completed within the year
	firstSpread     float64 // p5–p95 of wave 1's renewal times, seconds
	lastSpread      float64 // the same for the last complete wave
	renewals        int
}

// simulateRenewals bootstraps n nodes uniformly within window, then lets
// each renew under p for a year of virtual time. Issuance is taken as
// instantaneous (a CSR is approved and signed in well under a second; the
// renewal time is when the CSR is created). The fleet shares no state, so
// each node is followed on its own.
func simulateRenewals(p renewPolicy, n int, window, ttl time.Duration, seed uint64) renewalResult {
	rng := rand.New(rand.NewPCG(seed, 0x5707))
	end := epoch.Add(year)
	var all []float64
	var waves [][]float64 // waves[k]: the (k+1)-th renewal of each node that had one
	complete := -1
	for range n {
		t := epoch.Add(time.Duration(rng.Float64() * float64(window)))
		k := 0
		for {
			nb, na := sign(t, ttl)
			d := p.deadline(nb, na, t, rng.Float64())
			if d.After(end) {
				break
			}
			s := d.Sub(epoch).Seconds()
			all = append(all, s)
			if k == len(waves) {
				waves = append(waves, nil)
			}
			waves[k] = append(waves[k], s)
			t, k = d, k+1
		}
		if complete < 0 || k < complete {
			complete = k
		}
	}
	slices.Sort(all)
	r := renewalResult{renewals: len(all), waves: complete,
		peak1s: peakIn(all, 1), peak60s: peakIn(all, 60)}
	if complete > 0 {
		r.firstSpread = spread(waves[0])
		r.lastSpread = spread(waves[complete-1])
	}
	return r
}

// peakIn returns the most events of the sorted times ts (seconds) that
// fall in any half-open window [t, t+w).
func peakIn(ts []float64, w float64) int {
	best, j := 0, 0
	for i := range ts {
		for ts[i]-ts[j] >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// spread returns p95 - p5 of xs (seconds); xs is sorted in place.
func spread(xs []float64) float64 {
	slices.Sort(xs)
	return quantile(xs, 0.95) - quantile(xs, 0.05)
}

func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}
