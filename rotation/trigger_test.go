package rotation

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestTriggerDuringWakeUpDoesNotBlockShutdown is the hang of issue 9: the
// loop wakes up for a Trigger, a second Trigger lands before the loop has
// acted on the first, and then ctx ends. Run must still return. The
// afterWake hook makes that interleaving certain instead of one run in a
// thousand: right after the loop took the first wake-up, it triggers again
// and cancels ctx. (Before the fix, sleep put the trigger back with a
// blocking send into the channel the second Trigger had just filled, and
// Run never returned.)
func TestTriggerDuringWakeUpDoesNotBlockShutdown(t *testing.T) {
	f := newFixture(t)
	f.ca.storeCert(t, f.store, node, f.clk.Now(), time.Hour)
	m, err := New(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var once sync.Once
	m.afterWake = func() { once.Do(func() { m.Trigger(); cancel() }) }
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	waitSleeping(t, f.clk) // a valid certificate: the loop sleeps until its deadline
	m.Trigger()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		// A liveness bound, not a timing assertion: after the fix Run
		// returns as soon as the loop sees ctx end.
		t.Fatal("Run did not return after its context ended: a Trigger during the wake-up blocked the loop")
	}
}

// TestTriggerConcurrentWithShutdown: Triggers from many goroutines while
// the loop renews and while ctx ends never block the callers, and Run
// returns (the fixture's cleanup waits for it).
func TestTriggerConcurrentWithShutdown(t *testing.T) {
	f := newFixture(t)
	f.ca.storeCert(t, f.store, node, f.clk.Now(), time.Hour)
	f.start(t)
	waitSleeping(t, f.clk)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				f.m.Trigger()
			}
		})
	}
	wg.Wait()
	f.ev.wantRotated(t, ReasonForced)
}

// TestTriggersCoalesce: Triggers that arrive before the loop acts on them,
// here all before Run, ask for one renewal, not one each.
func TestTriggersCoalesce(t *testing.T) {
	f := newFixture(t)
	f.ca.storeCert(t, f.store, node, f.clk.Now(), time.Hour)
	m := f.newManager(t)
	for range 3 {
		m.Trigger()
	}
	f.start(t)
	f.ev.wantRotated(t, ReasonForced)
	f.noRotation(t)
	if n := len(f.signer.seen()); n != 1 {
		t.Errorf("%d CSRs for 3 Triggers before Run, want 1", n)
	}
}
