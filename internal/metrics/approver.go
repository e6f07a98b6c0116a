package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tlsboot/tlsboot/approval"
	"github.com/tlsboot/tlsboot/internal/approver"
)

// Approver holds the approver's collectors. Register it, pass Hooks to the
// controller, then SetPending with the controller's Pending method.
type Approver struct {
	decisions *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	reviews   *prometheus.CounterVec
	sarErrors prometheus.Counter
	leader    prometheus.Gauge
	dropped   *prometheus.CounterVec
	pendingD  *prometheus.Desc

	mu      sync.Mutex // guards pending
	pending func() map[string]int
}

var _ prometheus.Collector = (*Approver)(nil)

// NewApprover returns the approver's collectors, not yet registered.
func NewApprover() *Approver {
	return &Approver{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tlsboot_approver_decisions_total",
			Help: "Decisions written on certificate signing requests (or logged, in dry-run mode), by signer, result (approve, deny) and reason.",
		}, []string{"signer", "result", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tlsboot_approver_decision_seconds",
			Help: "Time from a certificate signing request's creation to the approver's decision, by signer and result.",
			// 50 ms to about 2.3 h: a burst is decided in seconds, a CSR
			// waiting for its Node may take minutes or hours.
			Buckets: prometheus.ExponentialBuckets(0.05, 2.5, 13),
		}, []string{"signer", "result"}),
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tlsboot_approver_subject_access_reviews_total",
			Help: "Permission checks answered, by source: api (a SubjectAccessReview was created) or cache (a recent identical answer was reused).",
		}, []string{"source"}),
		sarErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tlsboot_approver_subject_access_review_errors_total",
			Help: "SubjectAccessReviews that failed; the CSR is retried with backoff.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tlsboot_approver_leader",
			Help: "1 while this replica holds the leader lease and decides, else 0.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tlsboot_approver_events_dropped_total",
			Help: "Events about certificate signing requests not written, by reason: rate_limited (the requester had its Events for the minute; the CSR's condition is still written) or queue_full.",
		}, []string{"reason"}),
		pendingD: prometheus.NewDesc("tlsboot_approver_pending_csrs",
			"Certificate signing requests without a decision, by signer, from the informer cache.", []string{"signer"}, nil),
	}
}

// SetPending sets the source of the pending gauge.
func (a *Approver) SetPending(f func() map[string]int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pending = f
}

// Hooks returns the controller hooks that feed the collectors.
func (a *Approver) Hooks() approver.Hooks {
	return approver.Hooks{
		Decided: func(signer string, d approval.Decision, age time.Duration) {
			a.decisions.WithLabelValues(signer, d.Verdict.String(), d.Reason).Inc()
			a.latency.WithLabelValues(signer, d.Verdict.String()).Observe(age.Seconds())
		},
		SubjectAccessReview: func(cached bool, err error) {
			source := "api"
			if cached {
				source = "cache"
			}
			a.reviews.WithLabelValues(source).Inc()
			if err != nil {
				a.sarErrors.Inc()
			}
		},
		EventDropped: func(reason string) { a.dropped.WithLabelValues(reason).Inc() },
		Leading: func(leading bool) {
			if leading {
				a.leader.Set(1)
			} else {
				a.leader.Set(0)
			}
		},
	}
}

// Describe implements prometheus.Collector.
func (a *Approver) Describe(ch chan<- *prometheus.Desc) {
	a.decisions.Describe(ch)
	a.latency.Describe(ch)
	a.reviews.Describe(ch)
	a.sarErrors.Describe(ch)
	a.leader.Describe(ch)
	a.dropped.Describe(ch)
	ch <- a.pendingD
}

// Collect implements prometheus.Collector.
func (a *Approver) Collect(ch chan<- prometheus.Metric) {
	a.decisions.Collect(ch)
	a.latency.Collect(ch)
	a.reviews.Collect(ch)
	a.sarErrors.Collect(ch)
	a.leader.Collect(ch)
	a.dropped.Collect(ch)
	a.mu.Lock()
	pending := a.pending
	a.mu.Unlock()
	if pending == nil {
		return
	}
	for signer, n := range pending() {
		ch <- prometheus.MustNewConstMetric(a.pendingD, prometheus.GaugeValue, float64(n), signer)
	}
}
