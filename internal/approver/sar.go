package approver

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/tlsboot/tlsboot/approval"
)

// sarAuthorizer answers approval.Authorizer with SubjectAccessReviews for the
// requester, reusing an answer for the same question for a few seconds.
//
// Why reuse is safe: the answer is a function of the question — user name,
// UID, groups, extra, and the permission — and of the authorization policy
// (RBAC) at that moment. We key the cache on the whole question, so an answer
// is only ever reused for an identical requester and permission; what reuse
// can do is answer with the policy as it was up to ttl ago. Revoking a
// binding therefore takes effect up to ttl later, which is bounded by
// MaxSARCacheTTL (a minute) and by default 5 s — less than the delay of the
// API server's own authorization webhook cache (minutes by default) and of
// the time it takes an operator to notice anything. A granted permission may
// likewise be seen up to ttl late (the CSR waits and is retried). Errors are
// never cached.
//
// Why reuse is fast: a burst of node bootstraps shares one requester (the
// bootstrap token's user) or a few, so thousands of CSRs cost one review per
// ttl instead of one each. Concurrent identical questions also share one
// in-flight review.
type sarAuthorizer struct {
	reviews reviewCreator
	ttl     time.Duration // <= 0: no reuse
	clock   clock.PassiveClock
	hook    func(cached bool, err error)

	mu       sync.Mutex // guards answers and inflight
	answers  map[string]sarAnswer
	inflight map[string]*sarCall
}

// reviewCreator is the one method of the SubjectAccessReview client we use.
type reviewCreator interface {
	Create(ctx context.Context, sar *authorizationv1.SubjectAccessReview, opts metav1.CreateOptions) (*authorizationv1.SubjectAccessReview, error)
}

type sarAnswer struct {
	allowed bool
	expires time.Time
}

// sarCall is a review in flight; done is closed when allowed and err are set.
type sarCall struct {
	done    chan struct{}
	allowed bool
	err     error
}

// maxSARAnswers bounds the cache: expired answers are dropped when it is
// full, and if all are fresh (a flood of distinct requesters) it is cleared.
const maxSARAnswers = 10000

func newSARAuthorizer(reviews reviewCreator, ttl time.Duration, clk clock.PassiveClock, hook func(bool, error)) *sarAuthorizer {
	if hook == nil {
		hook = func(bool, error) {}
	}
	return &sarAuthorizer{reviews: reviews, ttl: ttl, clock: clk, hook: hook,
		answers: map[string]sarAnswer{}, inflight: map[string]*sarCall{}}
}

var _ approval.Authorizer = (*sarAuthorizer)(nil)

// Authorize implements approval.Authorizer.
func (a *sarAuthorizer) Authorize(ctx context.Context, r approval.Requester, subresource string) (bool, error) {
	k, err := questionKey(r, subresource)
	if err != nil {
		return false, err
	}
	a.mu.Lock()
	if ans, ok := a.answers[k]; ok && a.clock.Now().Before(ans.expires) {
		a.mu.Unlock()
		a.hook(true, nil)
		return ans.allowed, nil
	}
	call, shared := a.inflight[k]
	if !shared {
		call = &sarCall{done: make(chan struct{})}
		a.inflight[k] = call
	}
	a.mu.Unlock()
	if !shared {
		a.review(ctx, k, call, r, subresource)
	}
	select {
	case <-call.done:
		a.hook(shared, call.err)
		return call.allowed, call.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// review asks the API server, stores the answer and releases the waiters.
func (a *sarAuthorizer) review(ctx context.Context, k string, call *sarCall, r approval.Requester, subresource string) {
	call.allowed, call.err = a.create(ctx, r, subresource)
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.inflight, k)
	if call.err == nil && a.ttl > 0 {
		a.store(k, sarAnswer{allowed: call.allowed, expires: a.clock.Now().Add(a.ttl)})
	}
	close(call.done)
}

// store adds an answer; a.mu must be held.
func (a *sarAuthorizer) store(k string, ans sarAnswer) {
	if len(a.answers) >= maxSARAnswers {
		now := a.clock.Now()
		for old, v := range a.answers {
			if !now.Before(v.expires) {
				delete(a.answers, old)
			}
		}
		if len(a.answers) >= maxSARAnswers {
			clear(a.answers)
		}
	}
	a.answers[k] = ans
}

func (a *sarAuthorizer) create(ctx context.Context, r approval.Requester, subresource string) (bool, error) {
	extra := make(map[string]authorizationv1.ExtraValue, len(r.Extra))
	for k, v := range r.Extra {
		extra[k] = v
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: r.Username, UID: r.UID, Groups: r.Groups, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Group: certificatesv1.GroupName, Resource: "certificatesigningrequests", Subresource: subresource,
			Verb: "create", Version: "*",
		},
	}}
	got, err := a.reviews.Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("creating SubjectAccessReview: %w", err)
	}
	return got.Status.Allowed, nil
}

// questionKey encodes the whole question; JSON keeps field boundaries
// unambiguous and sorts the extra map's keys. Group and value order are kept
// as given: an authorizer could in principle care, and reordering would only
// save cache misses.
func questionKey(r approval.Requester, subresource string) (string, error) {
	b, err := json.Marshal(struct {
		R   approval.Requester
		Sub string
	}{r, subresource})
	if err != nil {
		return "", fmt.Errorf("encoding SubjectAccessReview cache key: %w", err)
	}
	return string(b), nil
}
