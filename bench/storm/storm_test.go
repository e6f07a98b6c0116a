package main

import (
	"testing"
	"time"
)

func TestPeakIn(t *testing.T) {
	tests := []struct {
		name string
		ts   []float64
		w    float64
		want int
	}{
		{"empty", nil, 1, 0},
		{"one", []float64{3}, 1, 1},
		{"same instant", []float64{2, 2, 2}, 1, 3},
		{"window is half-open", []float64{0, 0.5, 1, 1.5}, 1, 2},
		{"sliding, not calendar seconds", []float64{0.6, 0.9, 1.1, 1.4, 3}, 1, 4},
		{"wide window", []float64{0, 10, 59.9, 60}, 60, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := peakIn(tc.ts, tc.w); got != tc.want {
				t.Errorf("peakIn = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestRenewalPolicies: both policies renew a kube-controller-manager
// certificate between 70% and 90% of its lifetime, at the ends for r = 0
// and r close to 1, give or take the 5 minutes of backdate.
func TestRenewalPolicies(t *testing.T) {
	for _, ttl := range []time.Duration{24 * time.Hour, 10 * time.Minute} {
		issued := epoch
		nb, na := sign(issued, ttl)
		for _, p := range []renewPolicy{tlsbootRenewal, clientGoRenewal} {
			for _, tc := range []struct {
				r    float64
				frac float64
			}{{0, 0.7}, {0.999999, 0.9}} {
				got := p.deadline(nb, na, issued, tc.r).Sub(issued)
				want := time.Duration(tc.frac * float64(ttl))
				if d := got - want; d < -signerBackdate-time.Second || d > signerBackdate {
					t.Errorf("%s, %s, r=%v: renews %s after issuance, want %s ± 5m", p.name, ttl, tc.r, got, want)
				}
			}
		}
	}
}

// TestKubeletRetriesInLockstep: with no spread and a server that takes
// one create a second, the kubelet's fleet comes back every 10 s in step:
// the model's own sanity check (11 client-go attempts, then a restart).
func TestKubeletRetriesInLockstep(t *testing.T) {
	r := simulateRecovery(kubeletRecovery, 3, 0, 1, 1)
	// Second 0: one accepted, two rejected; both retry each second
	// (client-go), one accepted at 1 s, the last at 2 s.
	if r.requests != 3+2+1 || r.rejected != 3 || r.allCreated != 2 {
		t.Errorf("got %+v, want 6 requests, 3 rejected, all created at 2s", r)
	}
	if r.peakOffered != 3 {
		t.Errorf("peak %d, want 3", r.peakOffered)
	}
}
