package rotation

import (
	"testing"
	"time"
)

// TestRecoverySpreadAtStart: a Manager that starts with an expired
// certificate waits RecoverDelay (r = 0.5: half the spread) on its clock
// before recovering; a Trigger ends the wait; a missing certificate and a
// negative spread are not delayed.
func TestRecoverySpreadAtStart(t *testing.T) {
	expired := func(t *testing.T, f *fixture) {
		f.ca.storeCert(t, f.store, node, f.clk.Now().Add(-time.Hour), 2*time.Minute)
	}
	tests := []struct {
		name   string
		setup  func(t *testing.T, f *fixture)
		spread time.Duration
		// act, after the Manager went to sleep (if wait) or at once,
		// makes it recover.
		wait bool
		act  func(t *testing.T, f *fixture)
		want Reason
	}{
		{"expired: waits half the default spread", expired, 0, true, func(t *testing.T, f *fixture) {
			f.clk.Step(DefaultRecoverSpread/2 - time.Second)
			waitSleeping(t, f.clk) // the wait's timer is not due yet
			if got := f.recovered.Load(); got != 0 {
				t.Fatalf("Recover called %d times before the delay ran out", got)
			}
			f.clk.Step(time.Second)
		}, ReasonExpired},
		{"expired: a Trigger ends the wait", expired, 0, true, func(_ *testing.T, f *fixture) { f.m.Trigger() }, ReasonExpired},
		{"expired, negative spread: no wait", expired, -1, false, func(*testing.T, *fixture) {}, ReasonExpired},
		{"missing: no wait", func(*testing.T, *fixture) {}, 0, false, func(*testing.T, *fixture) {}, ReasonMissing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.opts.Policy.RecoverSpread = tc.spread
			tc.setup(t, f)
			f.start(t)
			if tc.wait {
				waitSleeping(t, f.clk)
				if got := f.recovered.Load(); got != 0 {
					t.Fatalf("Recover called %d times during the start-up wait", got)
				}
			}
			tc.act(t, f)
			f.ev.wantRotated(t, tc.want)
			if got := f.recovered.Load(); got != 1 {
				t.Errorf("Recover called %d times, want 1", got)
			}
		})
	}
}
