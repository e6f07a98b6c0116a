package main

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/tlsboot/tlsboot/bootstrap"
	"github.com/tlsboot/tlsboot/rotation"
)

// The request layer both contenders share: client-go's rest.Request retries
// a request answered 429 (or 5xx) with a Retry-After header after exactly
// that many seconds, at most 10 times (k8s.io/client-go@v0.37.2/rest:
// request.go maxRetries 10, with_retry.go IsNextRetry/checkWait), POSTs
// included; only then does the caller see the error. The API server's
// priority and fairness filter answers a rejected request 429 with
// Retry-After (1 s while it rejects little; this model keeps it at 1 s).
const (
	clientGoRetries = 10
	retryAfter      = 1 // seconds
)

// The kubelet's recovery (k8s.io/kubernetes@v1.37.2): a kubelet that starts
// with an expired client certificate runs LoadClientCert
// (pkg/kubelet/certificate/bootstrap): /healthz until it answers (it does,
// here), then one CSR create through client-go; an error ends LoadClientCert
// and the kubelet exits. systemd restarts it RestartSec=10s later (the
// kubelet.service that kubeadm's packages install: Restart=always,
// RestartSec=10). The kubelet's own start-up before LoadClientCert is taken
// as zero, which favours neither side by much and the kubelet slightly.
const kubeletRestart = 10.0 // seconds

// recoveryContender is how one node gets its CSR created after it boots.
type recoveryContender struct {
	name string
	// startDelay is the wait between boot and the first CSR create.
	startDelay func(rng *rand.Rand) float64
	// newRetry returns a node's pacing after a failed request (client-go's
	// retries exhausted): the delay before its next request, in seconds.
	newRetry func(rng *rand.Rand) func() float64
}

// kubeletRecovery is the kubelet (see kubeletRestart).
var kubeletRecovery = recoveryContender{
	name:       "kubelet",
	startDelay: func(*rand.Rand) float64 { return 0 },
	newRetry:   func(*rand.Rand) func() float64 { return func() float64 { return kubeletRestart } },
}

// tlsbootRecovery is `tlsboot run` as it is: rotation.Manager finds the
// certificate expired at start, waits Policy.RecoverDelay, and calls
// Recover, which runs bootstrap.Run: /healthz (answered), then the CSR
// create, retried after bootstrap.RetryDelay once client-go gave up. Both
// are the product's functions, fed the simulation's seeded draws.
var tlsbootRecovery = recoveryContender{
	name:       "tlsboot",
	startDelay: func(rng *rand.Rand) float64 { return rotation.Policy{}.RecoverDelay(rng.Float64()).Seconds() },
	newRetry: func(rng *rand.Rand) func() float64 {
		b := bootstrap.RetryBackoff()
		return func() float64 { return bootstrap.RetryDelay(&b, retryAfter*time.Second, rng.Float64()).Seconds() }
	},
}

// oldRetry is bootstrap's retry before RetryDelay (commit 7d9609f): the
// backoff's step, but no sooner than Retry-After plus 0–20%. Kept here,
// not in the product, to show before and after.
func oldRetry(*rand.Rand) func() float64 {
	b := bootstrap.RetryBackoff()
	return func() float64 { return max(b.Step(), wait.Jitter(retryAfter*time.Second, b.Jitter)).Seconds() }
}

// tlsbootBefore is tlsboot before this benchmark's fixes: no start-up
// wait, the old retry.
var tlsbootBefore = recoveryContender{
	name:       "tlsboot before (no start-up wait, Retry-After + 0–20%)",
	startDelay: func(*rand.Rand) float64 { return 0 },
	newRetry:   oldRetry,
}

// tlsbootSpreadOnly has the start-up wait but the old retry: what each of
// the two fixes contributes.
var tlsbootSpreadOnly = recoveryContender{
	name:       "tlsboot with the start-up wait only",
	startDelay: tlsbootRecovery.startDelay,
	newRetry:   oldRetry,
}

// recoveryResult is one simulated recovery of one fleet.
type recoveryResult struct {
	peakOffered  int     // most CSR creates the fleet sent in any 1 s window, rejected ones included
	peakAccepted int     // most creates accepted in one second (of the server's per-second budget)
	requests     int     // CSR creates sent
	rejected     int     // creates answered 429
	allCreated   float64 // seconds from the first boot until every node's CSR exists
}

// event is a node's next CSR create.
type event struct {
	t       float64 // seconds since the first boot
	node    int
	attempt int // client-go's attempt number within one request, 0-based
}

type queue []event

func (q queue) Len() int           { return len(q) }
func (q queue) Less(i, j int) bool { return q[i].t < q[j].t }
func (q queue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)        { *q = append(*q, x.(event)) }
func (q *queue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// simulateRecovery boots n nodes without a valid certificate, uniformly
// within window (0: all at the same instant), against an API server that
// accepts at most capacity CSR creates per second (0: unlimited) and
// answers the rest 429 Retry-After: 1. Approval and signing are not
// modelled: a node is done when its CSR is created.
func simulateRecovery(c recoveryContender, n int, window time.Duration, capacity int, seed uint64) recoveryResult {
	// Boot times come from their own source, so that every contender
	// sees the same fleet for a seed.
	boots := rand.New(rand.NewPCG(seed, 0xb007))
	rng := rand.New(rand.NewPCG(seed, 0xc0de))
	q := make(queue, 0, n)
	retries := make([]func() float64, n)
	for i := range n {
		boot := boots.Float64() * window.Seconds()
		retries[i] = c.newRetry(rng)
		q = append(q, event{t: boot + c.startDelay(rng), node: i})
	}
	heap.Init(&q)
	accepted := map[int64]int{} // per whole second
	var sent []float64
	var res recoveryResult
	for q.Len() > 0 {
		e := heap.Pop(&q).(event)
		sent = append(sent, e.t)
		sec := int64(math.Floor(e.t))
		if capacity == 0 || accepted[sec] < capacity {
			accepted[sec]++
			res.allCreated = max(res.allCreated, e.t)
			continue
		}
		res.rejected++
		if e.attempt < clientGoRetries {
			heap.Push(&q, event{t: e.t + retryAfter, node: e.node, attempt: e.attempt + 1})
			continue
		}
		heap.Push(&q, event{t: e.t + retries[e.node](), node: e.node})
	}
	slices.Sort(sent)
	res.requests = len(sent)
	res.peakOffered = peakIn(sent, 1)
	for _, k := range accepted {
		res.peakAccepted = max(res.peakAccepted, k)
	}
	return res
}
