package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/tlsboot/tlsboot/internal/testcluster"
)

func render(n int, samples map[string][]sample) string {
	var b strings.Builder
	b.WriteString("## Bootstrap: tlsboot vs the kubelet's code\n\n")
	fmt.Fprintf(&b, "Command: `make bench` (`go run ./bench/bootstrap -n %d -out BENCHMARKS.md`), run %s on %d CPUs, Go %s, control plane %s.\n",
		n, time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), strings.TrimPrefix(runtime.Version(), "go"), testcluster.Version)
	b.WriteString("Each run is a new node (fresh cert dir, new ECDSA P-256 key) bootstrapping with the same token against the same local control plane; " +
		"kube-controller-manager approves and signs. tlsboot and the kubelet's `LoadClientCert` (as the `kubelet-bootstrap` peer program) run interleaved, " +
		"alternating which goes first, after one discarded warm-up run each. Times are wall-clock times of the whole process, start-up included.\n\n")
	med := func(name string, f func(sample) time.Duration) time.Duration {
		var ds []time.Duration
		for _, s := range samples[name] {
			ds = append(ds, f(s))
		}
		return median(ds)
	}
	reqs := map[string]float64{}
	for name, ss := range samples {
		var r []float64
		for _, s := range ss {
			r = append(r, s.requests.Total())
		}
		reqs[name] = medianF(r)
	}
	row := func(what string, f func(sample) time.Duration) {
		t, k := med("tlsboot", f), med("kubelet", f)
		fmt.Fprintf(&b, "| %s | %v | %v | %.2f |\n", what, ms(t), ms(k), ratio(t, k))
	}
	fmt.Fprintf(&b, "| median of %d runs | tlsboot | kubelet code | ratio tlsboot/kubelet |\n|---|---:|---:|---:|\n", n)
	row("fresh bootstrap, the bootstrap call alone", func(s sample) time.Duration { return s.freshCall })
	row("fresh bootstrap, whole process", func(s sample) time.Duration { return s.fresh })
	row("re-run with a usable kubeconfig, the call alone", func(s sample) time.Duration { return s.noopCall })
	row("re-run with a usable kubeconfig, whole process", func(s sample) time.Duration { return s.noop })
	fmt.Fprintf(&b, "| API requests per bootstrap (all clients) | %.0f | %.0f | %.2f |\n\n", reqs["tlsboot"], reqs["kubelet"], reqs["tlsboot"]/reqs["kubelet"])
	b.WriteString("\"The call alone\" is what each program reports for its bootstrap call (`bootstrap.Run` inside `tlsboot bootstrap`, `LoadClientCert` in the peer), " +
		"without process start-up. The whole-process figures also hold start-up, where tlsboot pays more: its one binary also carries the agent and " +
		"the approver, and Prometheus' client library initialises its default collectors at start-up. tlsboot's fresh bootstrap also holds what the kubelet's " +
		"code does not do: before the certificate is stored, the API server confirms it (`POST selfsubjectreviews` below, on a new TLS connection " +
		"authenticated with the issued certificate alone), one round trip and one handshake.\n\n")
	b.WriteString("API requests counted by the API server during one bootstrap (medians; `apiserver_request_total` deltas, which include kube-controller-manager's approval and signing and the benchmark's own `/metrics` read):\n\n")
	b.WriteString("| verb resource | tlsboot | kubelet code |\n|---|---:|---:|\n")
	for _, k := range keys(samples) {
		t, u := medianKey(samples["tlsboot"], k), medianKey(samples["kubelet"], k)
		if t == 0 && u == 0 {
			continue // background traffic that happened in a few runs only
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.0f |\n", k, t, u)
	}
	return b.String()
}

func medianKey(ss []sample, k string) float64 {
	var v []float64
	for _, s := range ss {
		v = append(v, s.requests[k])
	}
	return medianF(v)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }
