package metrics

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tlsboot/tlsboot/rotation"
)

func TestAgentHooks(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := NewAgent(reg)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a.expiry.now = func() time.Time { return now }
	h := a.Hooks()

	h.Current("client", &x509.Certificate{NotAfter: now.Add(90 * time.Second)})
	h.Rotated("client", rotation.ReasonDue, 1500*time.Millisecond)
	h.Failed("serving", rotation.FailTemplate, errors.New("x"))
	h.TemplateMismatch("serving")
	h.Recovering("client", true)

	if got := value(t, a.rotations.WithLabelValues("client", "due")); got != 1 {
		t.Errorf("rotations = %v", got)
	}
	if got := value(t, a.failures.WithLabelValues("serving", "template_mismatch")); got != 1 {
		t.Errorf("failures = %v", got)
	}
	if got := value(t, a.mismatches.WithLabelValues("serving")); got != 1 {
		t.Errorf("mismatches = %v", got)
	}
	if got := value(t, a.onBoot); got != 1 {
		t.Errorf("bootstrap credentials in use = %v", got)
	}
	if got := value(t, a.expiry); got != 90 {
		t.Errorf("expiry = %v, want 90", got)
	}
	// Computed at scrape time: later scrapes see less time left.
	now = now.Add(100 * time.Second)
	if got := value(t, a.expiry); got != -10 {
		t.Errorf("expiry after 100s = %v, want -10", got)
	}
	h.Current("client", nil)
	if n := count(a.expiry); n != 0 {
		t.Errorf("%d expiry series with no certificate, want 0", n)
	}
	h.Recovering("client", false)
	h.Recovering("serving", true) // only the client certificate counts
	if got := value(t, a.onBoot); got != 0 {
		t.Errorf("bootstrap credentials in use = %v", got)
	}
	if n := count(a.issuance); n != 1 {
		t.Errorf("%d issuance series", n)
	}
}

// value returns the value of the only metric c collects.
func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 10)
	c.Collect(ch)
	close(ch)
	var ms []prometheus.Metric
	for m := range ch {
		ms = append(ms, m)
	}
	if len(ms) != 1 {
		t.Fatalf("%d metrics, want 1", len(ms))
	}
	var pb dto.Metric
	if err := ms[0].Write(&pb); err != nil {
		t.Fatal(err)
	}
	switch {
	case pb.Counter != nil:
		return pb.Counter.GetValue()
	case pb.Gauge != nil:
		return pb.Gauge.GetValue()
	}
	t.Fatalf("unexpected metric %v", &pb)
	return 0
}

func count(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 10)
	c.Collect(ch)
	close(ch)
	n := 0
	for range ch {
		n++
	}
	return n
}
