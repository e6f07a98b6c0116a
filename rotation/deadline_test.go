package rotation

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// kcm returns the validity kube-controller-manager gives a certificate
// issued at t0 with ttl (pkg/controller/certificates/authority): NotBefore
// backdated 5m; NotAfter = t0+ttl for ttl < 8h, else t0+ttl-5m.
func kcm(ttl time.Duration) (notBefore, notAfter time.Time) {
	notBefore = t0.Add(-5 * time.Minute)
	if ttl < 8*time.Hour {
		return notBefore, t0.Add(ttl)
	}
	return notBefore, t0.Add(ttl - 5*time.Minute)
}

func TestStart(t *testing.T) {
	nb, na := kcm(2 * time.Minute)
	tests := []struct {
		name     string
		issuedAt time.Time
		want     time.Time
	}{
		{"issued time known, signer backdated less", nb.Add(2 * time.Minute), nb.Add(2 * time.Minute)},
		{"issued time known, a moment after signing: bounded by the backdate", t0.Add(2 * time.Second), t0},
		{"unknown: assume the backdate", time.Time{}, t0},
		{"stored long after issuance: bounded by the backdate", t0.Add(time.Minute), t0},
		{"stored before NotBefore (clock skew): NotBefore", nb.Add(-time.Minute), nb},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := lifetimeStart(nb, na, tc.issuedAt, DefaultBackdate); !got.Equal(tc.want) {
				t.Errorf("Start = %v, want %v", got, tc.want)
			}
		})
	}
	// A window shorter than the backdate was not backdated by it: assume half.
	short := t0.Add(4 * time.Minute)
	if got, want := lifetimeStart(t0, short, time.Time{}, DefaultBackdate), t0.Add(2*time.Minute); !got.Equal(want) {
		t.Errorf("short window: Start = %v, want %v", got, want)
	}
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name        string
		ttl         time.Duration
		issuedAt    time.Time
		renewBefore time.Duration
		r           float64
		want        time.Time
		clamped     bool
	}{
		// The trap: naive 70% of NotAfter-NotBefore (7m) is 4m54s after
		// NotBefore, i.e. before issuance. Counted from issuance: 70% of 2m.
		{name: "KCM 2m, earliest", ttl: 2 * time.Minute, issuedAt: t0, r: 0, want: t0.Add(84 * time.Second)},
		{name: "KCM 2m, latest", ttl: 2 * time.Minute, issuedAt: t0, r: 1, want: t0.Add(108 * time.Second)},
		{name: "KCM 2m, middle", ttl: 2 * time.Minute, issuedAt: t0, r: 0.5, want: t0.Add(96 * time.Second)},
		{name: "KCM 2m, issue time unknown", ttl: 2 * time.Minute, r: 0, want: t0.Add(84 * time.Second)},
		{name: "KCM 10m (minimum expirationSeconds)", ttl: 10 * time.Minute, issuedAt: t0, r: 0, want: t0.Add(7 * time.Minute)},
		// Long-lived: NotAfter = t0+24h-5m, lifetime 23h55m from t0.
		{name: "KCM 24h", ttl: 24 * time.Hour, issuedAt: t0, r: 0.5, want: t0.Add(time.Duration(0.8 * float64(24*time.Hour-5*time.Minute)))},
		{name: "renew-before floor wins", ttl: 24 * time.Hour, issuedAt: t0, renewBefore: 10 * time.Hour, r: 1,
			want: t0.Add(24*time.Hour - 5*time.Minute - 10*time.Hour)},
		{name: "renew-before past half the lifetime: clamped to half", ttl: 24 * time.Hour, issuedAt: t0, renewBefore: 12 * time.Hour, r: 1,
			want: t0.Add((24*time.Hour - 5*time.Minute) / 2), clamped: true},
		{name: "renew-before later than the jitter: jitter wins", ttl: 24 * time.Hour, issuedAt: t0, renewBefore: time.Hour, r: 0,
			want: t0.Add(time.Duration(0.7 * float64(24*time.Hour-5*time.Minute)))},
		{name: "renew-before longer than the lifetime: clamped to half, no loop", ttl: 2 * time.Minute, issuedAt: t0, renewBefore: time.Hour, r: 0.5,
			want: t0.Add(time.Minute), clamped: true},
		{name: "r out of range is clamped", ttl: 2 * time.Minute, issuedAt: t0, r: 7, want: t0.Add(108 * time.Second)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nb, na := kcm(tc.ttl)
			s := Plan(nb, na, tc.issuedAt, Policy{RenewBefore: tc.renewBefore}, tc.r)
			if !s.Deadline.Equal(tc.want) {
				t.Errorf("Deadline = %v (%v after t0), want %v", s.Deadline, s.Deadline.Sub(t0), tc.want.Sub(t0))
			}
			if s.Clamped != tc.clamped {
				t.Errorf("Clamped = %v, want %v", s.Clamped, tc.clamped)
			}
			if !s.Deadline.After(t0) || !s.Deadline.Before(na) {
				t.Errorf("Deadline %v outside (issuance, NotAfter): renewing at once would loop", s.Deadline)
			}
		})
	}
}

// TestPlanNeverBeforeIssuance checks the property behind the KCM trap for
// many lifetimes and every jitter: a freshly issued certificate is never
// due at once.
func TestPlanNeverBeforeIssuance(t *testing.T) {
	for _, ttl := range []time.Duration{time.Minute, 2 * time.Minute, 10 * time.Minute, time.Hour, 8 * time.Hour, 365 * 24 * time.Hour} {
		for _, issued := range []time.Time{{}, t0, t0.Add(3 * time.Second)} {
			for _, r := range []float64{0, 0.25, 0.999} {
				for _, rb := range []time.Duration{0, time.Minute, 30 * 24 * time.Hour} {
					nb, na := kcm(ttl)
					s := Plan(nb, na, issued, Policy{RenewBefore: rb}, r)
					if !s.Deadline.After(t0.Add(3 * time.Second)) {
						t.Errorf("ttl %v issued %v r %v renewBefore %v: deadline %v is at or before issuance", ttl, issued, r, rb, s.Deadline)
					}
				}
			}
		}
	}
}

func TestPlanDegenerate(t *testing.T) {
	// NotAfter before NotBefore: due at NotAfter, i.e. now.
	s := Plan(t0, t0.Add(-time.Minute), time.Time{}, Policy{}, 0.5)
	if !s.Deadline.Equal(t0.Add(-time.Minute)) {
		t.Errorf("Deadline = %v", s.Deadline)
	}
}

func TestRecoverDelay(t *testing.T) {
	tests := []struct {
		name   string
		spread time.Duration
		r      float64
		want   time.Duration
	}{
		{"default spread, lowest draw", 0, 0, 0},
		{"default spread, middle draw", 0, 0.5, DefaultRecoverSpread / 2},
		{"default spread, draw out of range is clamped", 0, 7, DefaultRecoverSpread},
		{"default spread, negative draw is clamped", 0, -1, 0},
		{"custom spread", 2 * time.Minute, 0.25, 30 * time.Second},
		{"negative spread: no wait", -time.Second, 0.9, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := (Policy{RecoverSpread: tc.spread}).RecoverDelay(tc.r); got != tc.want {
				t.Errorf("RecoverDelay(%v) = %v, want %v", tc.r, got, tc.want)
			}
		})
	}
}
