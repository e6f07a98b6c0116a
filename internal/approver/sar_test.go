package approver

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/tlsboot/tlsboot/approval"
)

// fakeReviews answers allowed for user "ok", counts calls, and can block
// them until release is closed.
type fakeReviews struct {
	calls   atomic.Int32
	err     error
	release chan struct{}

	mu   sync.Mutex // guards last
	last *authorizationv1.SubjectAccessReview
}

func (f *fakeReviews) Create(ctx context.Context, sar *authorizationv1.SubjectAccessReview, _ metav1.CreateOptions) (*authorizationv1.SubjectAccessReview, error) {
	f.calls.Add(1)
	f.mu.Lock()
	f.last = sar
	f.mu.Unlock()
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.err != nil {
		return nil, f.err
	}
	out := sar.DeepCopy()
	out.Status.Allowed = sar.Spec.User == "ok"
	return out, nil
}

func TestSARCacheReusesIdenticalQuestionsOnly(t *testing.T) {
	reviews := &fakeReviews{}
	clk := clocktesting.NewFakePassiveClock(time.Now())
	var cached atomic.Int32
	a := newSARAuthorizer(reviews, 5*time.Second, clk, func(c bool, _ error) {
		if c {
			cached.Add(1)
		}
	})
	ctx := t.Context()
	ok := approval.Requester{Username: "ok", Groups: []string{"g1", "g2"}, Extra: map[string][]string{"k": {"v"}}}
	ask := func(r approval.Requester, sub string) bool {
		t.Helper()
		allowed, err := a.Authorize(ctx, r, sub)
		if err != nil {
			t.Fatal(err)
		}
		return allowed
	}
	if !ask(ok, "nodeclient") || !ask(ok, "nodeclient") || reviews.calls.Load() != 1 || cached.Load() != 1 {
		t.Fatalf("identical questions: %d reviews, %d cached; want 1 and 1", reviews.calls.Load(), cached.Load())
	}
	// Any difference in the question is a new review.
	for _, r := range []approval.Requester{
		{Username: "ok", Groups: []string{"g1"}, Extra: ok.Extra},
		{Username: "ok", UID: "u", Groups: ok.Groups, Extra: ok.Extra},
		{Username: "ok", Groups: ok.Groups, Extra: map[string][]string{"k": {"w"}}},
		{Username: "no", Groups: ok.Groups, Extra: ok.Extra},
	} {
		ask(r, "nodeclient")
	}
	ask(ok, "selfnodeclient")
	if got := reviews.calls.Load(); got != 6 {
		t.Errorf("%d reviews after 5 different questions, want 6", got)
	}
	if reviews.last.Spec.ResourceAttributes.Subresource != "selfnodeclient" || reviews.last.Spec.ResourceAttributes.Resource != "certificatesigningrequests" || reviews.last.Spec.ResourceAttributes.Verb != "create" {
		t.Errorf("review asked %+v", reviews.last.Spec.ResourceAttributes)
	}
	clk.SetTime(clk.Now().Add(5 * time.Second))
	ask(ok, "nodeclient")
	if got := reviews.calls.Load(); got != 7 {
		t.Errorf("%d reviews after the TTL passed, want 7 (a new one)", got)
	}
}

func TestSARErrorsAreNotCached(t *testing.T) {
	reviews := &fakeReviews{err: errors.New("connection refused")}
	a := newSARAuthorizer(reviews, time.Minute, clocktesting.NewFakePassiveClock(time.Now()), nil)
	for range 2 {
		if _, err := a.Authorize(t.Context(), approval.Requester{Username: "ok"}, "nodeclient"); err == nil {
			t.Fatal("no error")
		}
	}
	if got := reviews.calls.Load(); got != 2 {
		t.Errorf("%d reviews, want 2: an error must not be reused", got)
	}
}

func TestSARCacheDisabled(t *testing.T) {
	reviews := &fakeReviews{}
	a := newSARAuthorizer(reviews, -1, clocktesting.NewFakePassiveClock(time.Now()), nil)
	for range 3 {
		a.Authorize(t.Context(), approval.Requester{Username: "ok"}, "nodeclient")
	}
	if got := reviews.calls.Load(); got != 3 {
		t.Errorf("%d reviews with reuse disabled, want 3", got)
	}
}

// Concurrent identical questions share one review in flight.
func TestSARConcurrentQuestionsShareOneReview(t *testing.T) {
	reviews := &fakeReviews{release: make(chan struct{})}
	a := newSARAuthorizer(reviews, time.Minute, clocktesting.NewFakePassiveClock(time.Now()), nil)
	var wg sync.WaitGroup
	results := make(chan bool, 10)
	for range 10 {
		wg.Go(func() {
			ok, err := a.Authorize(t.Context(), approval.Requester{Username: "ok"}, "nodeclient")
			results <- ok && err == nil
		})
	}
	// Wait until the first review is in flight and everybody else is
	// waiting for it, then answer.
	for {
		a.mu.Lock()
		n := len(a.inflight)
		a.mu.Unlock()
		if n == 1 && reviews.calls.Load() == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(reviews.release)
	wg.Wait()
	close(results)
	for ok := range results {
		if !ok {
			t.Error("a caller did not get the shared answer")
		}
	}
	// Callers that arrived before the answer shared the call; later ones
	// got the cached answer.
	if got := reviews.calls.Load(); got != 1 {
		t.Errorf("%d reviews for 10 identical concurrent questions, want 1", got)
	}
}
