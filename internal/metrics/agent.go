package metrics

import (
	"crypto/x509"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tlsboot/tlsboot/rotation"
)

// Agent holds the collectors of `tlsboot run` and adapts rotation hooks to
// them. Create it with NewAgent; its methods are safe for concurrent use.
type Agent struct {
	expiry     *expiryCollector
	rotations  *prometheus.CounterVec
	failures   *prometheus.CounterVec
	mismatches *prometheus.CounterVec
	issuance   *prometheus.HistogramVec
	onBoot     prometheus.Gauge
}

// NewAgent registers the agent's collectors with reg.
func NewAgent(reg prometheus.Registerer) *Agent {
	a := &Agent{
		expiry: &expiryCollector{
			desc: prometheus.NewDesc("tlsboot_certificate_expiry_seconds",
				"Seconds until the certificate in use expires; negative once expired. Absent while there is none.",
				[]string{"certificate"}, nil),
			notAfter: map[string]time.Time{},
			now:      time.Now,
		},
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tlsboot_certificate_rotations_total",
			Help: "Certificates obtained and stored, by certificate and reason (missing, expired, not_yet_valid, unauthorized, due, template_changed, forced, resume).",
		}, []string{"certificate", "reason"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tlsboot_certificate_rotation_failures_total",
			Help: "Failed attempts to obtain a certificate, by certificate and reason (unreachable, unauthorized, forbidden, denied, failed, deleted, conflict, timeout, template_mismatch, identity_rejected, no_bootstrap_credentials, store, other).",
		}, []string{"certificate", "reason"}),
		mismatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tlsboot_certificate_template_mismatches_total",
			Help: "Issued certificates rejected because they do not match the request (subject, SANs, key).",
		}, []string{"certificate"}),
		issuance: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tlsboot_csr_issuance_duration_seconds",
			Help:    "Time from submitting a certificate signing request to its certificate.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}, []string{"certificate"}),
		onBoot: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tlsboot_bootstrap_credentials_in_use",
			Help: "1 while the agent has no valid client certificate of its own and relies on bootstrap credentials, else 0.",
		}),
	}
	reg.MustRegister(a.expiry, a.rotations, a.failures, a.mismatches, a.issuance, a.onBoot)
	return a
}

// Hooks returns rotation hooks that update the collectors.
func (a *Agent) Hooks() rotation.Hooks {
	return rotation.Hooks{
		Current: a.expiry.set,
		Rotated: func(name string, reason rotation.Reason, issuance time.Duration) {
			a.rotations.WithLabelValues(name, string(reason)).Inc()
			a.issuance.WithLabelValues(name).Observe(issuance.Seconds())
		},
		Failed: func(name string, f rotation.Failure, _ error) {
			a.failures.WithLabelValues(name, string(f)).Inc()
		},
		TemplateMismatch: func(name string) { a.mismatches.WithLabelValues(name).Inc() },
		Recovering: func(name string, on bool) {
			if name != "client" {
				return
			}
			if on {
				a.onBoot.Set(1)
			} else {
				a.onBoot.Set(0)
			}
		},
	}
}

// expiryCollector computes seconds until expiry at scrape time, so the
// value never goes stale between rotations.
type expiryCollector struct {
	desc *prometheus.Desc
	now  func() time.Time

	mu       sync.Mutex           // guards notAfter
	notAfter map[string]time.Time // by certificate name
}

func (c *expiryCollector) set(name string, cert *x509.Certificate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cert == nil {
		delete(c.notAfter, name)
		return
	}
	c.notAfter[name] = cert.NotAfter
}

func (c *expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for name, t := range c.notAfter {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, t.Sub(now).Seconds(), name)
	}
}
