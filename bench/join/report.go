package main

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/tlsboot/tlsboot/internal/testcluster"
)

func render(n int, samples map[string][]sample, note, load0, load1 string) string {
	var b strings.Builder
	b.WriteString("## Join: tlsboot join vs kubeadm's discovery and the kubelet's bootstrap\n\n")
	fmt.Fprintf(&b, "Command: `make bench` (`go run ./bench/join -n %d -out BENCHMARKS.md`), run %s on %d CPUs, Go %s, control plane %s; 1-minute load average %s at the start, %s at the end.",
		n, time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), strings.TrimPrefix(runtime.Version(), "go"), testcluster.Version, load0, load1)
	if note != "" {
		b.WriteString(" " + strings.TrimSpace(note))
	}
	b.WriteString("\n\n")
	b.WriteString("Time from the start of a join to a usable node kubeconfig (checked afterwards, untimed, with a SelfSubjectReview as `system:node:<name>`). " +
		"**tlsboot**: the `tlsboot join` binary, with the token and the CA pin. " +
		"**kubeadm**: kubeadm " + testcluster.Version + "'s own token discovery (the `kubeadm-discovery` peer: `kubeadm join`'s flag validation and `discovery.For`, " +
		"which writes the bootstrap kubeconfig), then the kubelet's `LoadClientCert` (the `kubelet-bootstrap` peer) on that bootstrap kubeconfig. " +
		"Both run against the same local control plane in the same run, interleaved and alternating which goes first, after one discarded warm-up run each; " +
		"every run is a fresh node directory (new key) and a fresh bootstrap token, which bootstrapsigner has signed before the clock starts. " +
		"kube-controller-manager's csrapproving approves every CSR, csrsigning signs. Times are wall-clock, process start-up included.\n\n")
	ts, ks := totals(samples["tlsboot"]), totals(samples["kubeadm"])
	var kd []time.Duration
	for _, s := range samples["kubeadm"] {
		kd = append(kd, s.discovery)
	}
	fmt.Fprintf(&b, "| %d runs each | tlsboot join | kubeadm discovery + kubelet bootstrap | ratio tlsboot/kubeadm |\n|---|---:|---:|---:|\n", n)
	fmt.Fprintf(&b, "| median | %s | %s | %.2f |\n", ms(quantile(ts, 0.5)), ms(quantile(ks, 0.5)), ratio(quantile(ts, 0.5), quantile(ks, 0.5)))
	fmt.Fprintf(&b, "| p90 | %s | %s | %.2f |\n", ms(quantile(ts, 0.9)), ms(quantile(ks, 0.9)), ratio(quantile(ts, 0.9), quantile(ks, 0.9)))
	fmt.Fprintf(&b, "| of which kubeadm's discovery, median | | %s | |\n\n", ms(quantile(kd, 0.5)))
	b.WriteString("Raw times in ms, in run order:\n\n")
	fmt.Fprintf(&b, "- tlsboot join: %s\n", raw(ts))
	fmt.Fprintf(&b, "- kubeadm discovery + kubelet bootstrap: %s\n", raw(ks))
	fmt.Fprintf(&b, "- of which kubeadm discovery: %s\n", raw(kd))
	return b.String()
}

func totals(ss []sample) []time.Duration {
	var ds []time.Duration
	for _, s := range ss {
		ds = append(ds, s.total)
	}
	return ds
}

// quantile is the nearest-rank q-quantile of ds (0.5: the median, the
// mean of the middle two for an even count).
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if q == 0.5 && len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	i := int(math.Ceil(float64(len(s))*q)) - 1
	return s[max(0, min(i, len(s)-1))]
}

func raw(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)))
	}
	return strings.Join(s, ", ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }
