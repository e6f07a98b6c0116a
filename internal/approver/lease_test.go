package approver

import (
	"context"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/tlsboot/tlsboot/approval"
	"github.com/tlsboot/tlsboot/csr"
)

// TestSeenLog: a heartbeat is judged by when the approver saw its value
// change, by the approver's clock; the node's stamp only tells whether it
// changed. Listing, resyncs and other fields are no change, and a broken
// watch makes the observation unknown until the informer listed again and
// delivered the object anew.
func TestSeenLog(t *testing.T) {
	start := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	slow := start.Add(-6 * time.Minute) // the node's clock
	saw := func(stamp time.Time, initial bool, wantChanged bool) func(*testing.T) func(*seenLog, *clocktesting.FakeClock, *string) {
		return func(t *testing.T) func(*seenLog, *clocktesting.FakeClock, *string) {
			return func(l *seenLog, _ *clocktesting.FakeClock, _ *string) {
				if got := l.saw("n1", stamp, initial); got != wantChanged {
					t.Errorf("saw(%v, initial %v) reported change %v, want %v", stamp, initial, got, wantChanged)
				}
			}
		}
	}
	after := func(d time.Duration) func(*testing.T) func(*seenLog, *clocktesting.FakeClock, *string) {
		return func(*testing.T) func(*seenLog, *clocktesting.FakeClock, *string) {
			return func(_ *seenLog, clk *clocktesting.FakeClock, _ *string) { clk.Step(d) }
		}
	}
	broke := func(*testing.T) func(*seenLog, *clocktesting.FakeClock, *string) {
		return func(l *seenLog, _ *clocktesting.FakeClock, _ *string) { l.watchBroke() }
	}
	listed := func(*testing.T) func(*seenLog, *clocktesting.FakeClock, *string) {
		return func(_ *seenLog, _ *clocktesting.FakeClock, rv *string) { *rv += "1" }
	}
	type stepOf struct {
		do   func(*testing.T) func(*seenLog, *clocktesting.FakeClock, *string)
		want approval.Observation
	}
	at := func(d time.Duration, changed bool) approval.Observation {
		return approval.Observation{At: start.Add(d), Changed: changed}
	}
	for _, tc := range []struct {
		name  string
		steps []stepOf
	}{
		{"listed at start: seen since then, not changing", []stepOf{
			{saw(slow, true, false), at(0, false)},
			{after(time.Minute), at(0, false)},
			{saw(slow, false, false), at(0, false)}, // a resync, or another field changed
		}},
		{"renewed with a slow clock: a change, at the approver's time", []stepOf{
			{saw(slow, true, false), at(0, false)},
			{after(10 * time.Second), at(0, false)},
			{saw(slow.Add(10*time.Second), false, true), at(10*time.Second, true)},
			{after(time.Hour), at(10*time.Second, true)}, // stopped renewing: goes stale
			{saw(slow.Add(10*time.Second), false, false), at(10*time.Second, true)},
		}},
		{"created while watching: a change", []stepOf{
			{saw(slow, false, true), at(0, true)},
		}},
		{"a watch error: unknown until listed and delivered again", []stepOf{
			{saw(slow, false, true), at(0, true)},
			{broke, approval.Observation{}},
			{saw(slow, false, false), approval.Observation{}}, // delivered, but no list yet
			{listed, at(0, true)},
		}},
		{"a watch error: listed again, not yet delivered", []stepOf{
			{saw(slow, false, true), at(0, true)},
			{broke, approval.Observation{}},
			{listed, approval.Observation{}},
			{after(time.Second), approval.Observation{}},
			{saw(slow.Add(time.Second), false, true), at(time.Second, true)}, // renewed during the outage
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(start)
			rv := "1"
			l := &seenLog{clock: clk, synced: func() bool { return true }, listedRV: func() string { return rv }, entries: map[string]seenEntry{}}
			for i, s := range tc.steps {
				s.do(t)(l, clk, &rv)
				if got := l.observation("n1"); got != s.want {
					t.Errorf("step %d: observation %+v, want %+v", i, got, s.want)
				}
			}
			l.forget("n1")
			if got := l.observation("n1"); got != (approval.Observation{}) {
				t.Errorf("after forget: %+v, want unknown", got)
			}
		})
	}
	t.Run("not synced: unknown", func(t *testing.T) {
		l := &seenLog{clock: clocktesting.NewFakeClock(start), synced: func() bool { return false }, listedRV: func() string { return "1" }, entries: map[string]seenEntry{}}
		l.saw("n1", slow, false)
		if got := l.observation("n1"); got != (approval.Observation{}) || l.whole() {
			t.Errorf("observation %+v, whole %v; want unknown, not whole", got, l.whole())
		}
	})
}

// TestInputHeartbeats: the controller gives the policy what its informers
// saw: a Lease listed at start is not a change; its kubelet renewing it
// (with a clock 6 minutes slow) is one, at the approver's time.
func TestInputHeartbeats(t *testing.T) {
	slow := metav1.NewMicroTime(time.Now().Add(-6 * time.Minute))
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "n1", Namespace: "kube-node-lease"}, Spec: coordinationv1.LeaseSpec{RenewTime: &slow}}
	client := fake.NewClientset(node("n1", "10.0.0.1"), lease)
	before := time.Now()
	ctrl := startCaches(t, client, approval.Options{})
	obj := newCSR(t, "n1", csr.Request{}, "system:bootstrap:abcdef", bootstrapUser)
	in, err := ctrl.input(obj)
	if err != nil {
		t.Fatal(err)
	}
	if in.Heartbeats == nil || in.Heartbeats.Lease.Changed || in.Heartbeats.Lease.At.Before(before) {
		t.Fatalf("Heartbeats %+v, want the Lease seen since the approver started, not changing", in.Heartbeats)
	}
	renewed := metav1.NewMicroTime(slow.Add(10 * time.Second))
	lease.Spec.RenewTime = &renewed
	if _, err := client.CoordinationV1().Leases("kube-node-lease").Update(t.Context(), lease, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got *approval.Heartbeats
	err = wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		in, err := ctrl.input(obj)
		got = in.Heartbeats
		return err == nil && got != nil && got.Lease.Changed, err
	})
	if err != nil {
		t.Fatalf("the renewal was not seen: %+v (%v)", got, err)
	}
	if got.Lease.At.Before(before) || got.Lease.At.After(time.Now()) {
		t.Errorf("renewal seen at %v, want the approver's time since %v, not the node's %v", got.Lease.At, before, renewed.Time)
	}
}
