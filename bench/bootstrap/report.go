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
	fresh := map[string]time.Duration{}
	noop := map[string]time.Duration{}
	reqs := map[string]float64{}
	for name, ss := range samples {
		var f, o []time.Duration
		var r []float64
		for _, s := range ss {
			f, o, r = append(f, s.fresh), append(o, s.noop), append(r, s.requests.Total())
		}
		fresh[name], noop[name], reqs[name] = median(f), median(o), medianF(r)
	}
	b.WriteString("| | tlsboot | kubelet code | ratio tlsboot/kubelet |\n|---|---:|---:|---:|\n")
	fmt.Fprintf(&b, "| median time, fresh bootstrap (n=%d) | %v | %v | %.2f |\n", n, ms(fresh["tlsboot"]), ms(fresh["kubelet"]), ratio(fresh["tlsboot"], fresh["kubelet"]))
	fmt.Fprintf(&b, "| median time, re-run with a usable kubeconfig | %v | %v | %.2f |\n", ms(noop["tlsboot"]), ms(noop["kubelet"]), ratio(noop["tlsboot"], noop["kubelet"]))
	fmt.Fprintf(&b, "| median API requests per bootstrap (all clients) | %.0f | %.0f | %.2f |\n\n", reqs["tlsboot"], reqs["kubelet"], reqs["tlsboot"]/reqs["kubelet"])
	b.WriteString("API requests counted by the API server during one bootstrap (medians; `apiserver_request_total` deltas, which include kube-controller-manager's approval and signing and the benchmark's own `/metrics` read):\n\n")
	b.WriteString("| verb resource | tlsboot | kubelet code |\n|---|---:|---:|\n")
	for _, k := range keys(samples) {
		fmt.Fprintf(&b, "| %s | %.0f | %.0f |\n", k, medianKey(samples["tlsboot"], k), medianKey(samples["kubelet"], k))
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
