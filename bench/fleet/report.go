package main

import (
	"fmt"
	"maps"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/tlsboot/tlsboot/bench/internal/machine"
	"github.com/tlsboot/tlsboot/internal/testcluster"
)

// pct is the p-th percentile of sorted (nearest rank); 100 is the maximum.
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// med is the median over runs of f.
func med(rs []result, f func(result) float64) float64 {
	var v []float64
	for _, r := range rs {
		v = append(v, f(r))
	}
	return median(v)
}

func secs(d time.Duration) float64 { return d.Seconds() }

func render(n, runs, sample int, began time.Time, results map[contender][]result, loadBefore, loadAfter string) string {
	t, k := results[tlsbootApprover], results[kubeletKCM]
	var b strings.Builder
	b.WriteString("## Fleet bootstrap: 1 control plane, every node at the same moment\n\n")
	fmt.Fprintf(&b, "Command: `make bench` (`go run ./bench/fleet -n %d -runs %d -out BENCHMARKS.md`), run %s on %d CPUs (%s), Go %s, control plane %s; "+
		"load averages (1, 5, 15 min) %s at the start and %s at the end (well above the number of CPUs, they mean other work shared the machine).\n\n",
		n, runs, began.UTC().Format("2006-01-02"), runtime.NumCPU(), machine.CPUModel(), strings.TrimPrefix(runtime.Version(), "go"), testcluster.Version, loadBefore, loadAfter)
	fmt.Fprintf(&b, "Each run starts a fresh control plane (etcd, kube-apiserver, kube-controller-manager with csrsigning, csrcleaner, bootstrapsigner and tokencleaner), "+
		"bootstraps one warm-up node, then releases %d nodes at once from one fleet process: one goroutine per node, each with its own directory, key, "+
		"certificate store and kubeconfig and its own name (`fleet-<i>`, so `system:node:fleet-<i>`), all sharing one bootstrap token, as a real fleet "+
		"shares its kubeadm token. The contenders alternate which goes first:\n\n", n)
	b.WriteString("- **tlsboot**: `bootstrap.Run` per node (this program re-run with `-child`), approved by `tlsboot approver` (the real binary; default flags but " +
		"`--kubeconfig` (the cluster admin's: there is no in-cluster configuration) and `--metrics-bind-address 127.0.0.1:0`). " +
		"Its default checks approve these nodes and nothing was relaxed: the CSR's shape (kubelet client signer, `CN=system:node:<name>`, `O=system:nodes`, client usages), " +
		"the requester's `nodeclient` permission by SubjectAccessReview (kubeadm's binding for the token's group), and no live Node of that name (the fleet's Nodes do not exist yet).\n")
	b.WriteString("- **kubelet**: the kubelet's `LoadClientCert` per node (the `kubelet-fleet` peer from `hack/controlplane`), approved by kube-controller-manager's `csrapproving`.\n\n")
	fmt.Fprintf(&b, "A node's join time runs from the release to its kubeconfig being written. \"All usable\" is the time until the last node's kubeconfig was written; "+
		"afterwards every kubeconfig is loaded and checked offline (certificate and key pair, chain to the cluster CA, client auth, `CN=system:node:<name>`, `O=system:nodes`) "+
		"and %d per run, spread over the fleet, authenticate with a SelfSubjectReview as `system:node:<name>`. "+
		"CPU-seconds are the processes' utime+stime from `/proc/<pid>/stat` between the release and the fleet process's exit; the fleet process's own CPU time includes its start-up.\n\n", sample)

	fmt.Fprintf(&b, "| median of %d runs | tlsboot | kubelet code + KCM | ratio tlsboot/kubelet |\n|---|---:|---:|---:|\n", runs)
	row := func(what, unit string, f func(result) float64) {
		a, u := med(t, f), med(k, f)
		fmt.Fprintf(&b, "| %s | %.*f%s | %.*f%s | %.2f |\n", what, prec(a), a, unit, prec(u), u, unit, a/u)
	}
	row("all nodes usable", " s", func(r result) float64 { return secs(r.wall) })
	for _, p := range []float64{50, 95, 99, 100} {
		name := fmt.Sprintf("join time p%.0f", p)
		if p == 100 {
			name = "join time max"
		}
		row(name, " s", func(r result) float64 { return secs(pct(r.joins, p)) })
	}
	row("API requests per node, by the nodes", "", func(r result) float64 { return total(r.requests[byNodes]) / float64(r.n) })
	row("API requests per node, by approver and signer", "", func(r result) float64 { return total(r.requests[byApprover]) / float64(r.n) })
	row("kube-apiserver CPU-seconds", "", func(r result) float64 { return r.apiCPU })
	row("etcd CPU-seconds", "", func(r result) float64 { return r.etcdCPU })
	row("fleet process CPU-seconds", "", func(r result) float64 { return r.fleetCPU })
	fmt.Fprintf(&b, "| 429 answers to the nodes (sum of runs) | %.0f | %.0f | |\n", sumRuns(t, func(r result) float64 { return withCode(r.requests[byNodes], 429) }),
		sumRuns(k, func(r result) float64 { return withCode(r.requests[byNodes], 429) }))
	fmt.Fprintf(&b, "| nodes failed or unusable (sum of runs) | %.0f | %.0f | |\n", sumRuns(t, failures), sumRuns(k, failures))
	fmt.Fprintf(&b, "| kubeconfigs authenticated (sum of runs) | %.0f | %.0f | |\n\n", sumRuns(t, verified), sumRuns(k, verified))

	b.WriteString("Requests per node, by verb, resource and answer code (medians of the runs), counted from the API server's audit log " +
		"(`Metadata` level, one event per completed request; the API server writes it in both contenders, so its cost is in both CPU figures). " +
		"\"Nodes\" are requests made with the bootstrap token; \"approver\" those of `tlsboot approver` (the admin user) and of kube-controller-manager " +
		"(all of its controllers: csrsigning in both contenders, csrapproving for the kubelet's). A LIST or WATCH says whether it asked for one CSR by name (a field selector) or for all. " +
		"The window runs from the release until the kubeconfigs were verified; the approver's watch, still open then, is not in it.\n\n")
	b.WriteString("| who | request | tlsboot | kubelet code + KCM |\n|---|---|---:|---:|\n")
	for _, who := range []string{byNodes, byApprover} {
		keys := map[string]bool{}
		for _, rs := range [][]result{t, k} {
			for _, r := range rs {
				for key := range r.requests[who] {
					keys[key] = true
				}
			}
		}
		for _, key := range slices.Sorted(maps.Keys(keys)) {
			f := func(r result) float64 { return r.requests[who][key] / float64(r.n) }
			fmt.Fprintf(&b, "| %s | %s | %.3f | %.3f |\n", who, key, med(t, f), med(k, f))
		}
	}
	rate := func(rs []result) float64 {
		return med(rs, func(r result) float64 { return float64(r.n) / secs(r.wall) })
	}
	apiShare := func(rs []result) float64 {
		return 100 * med(rs, func(r result) float64 { return r.apiCPU / secs(r.wall) })
	}
	fmt.Fprintf(&b, "\nReading the figures:\n\n"+
		"- Nodes finish at a steady rate, not all at once: the approving and signing side is the bottleneck, not the nodes or the API server "+
		"(kube-apiserver used %.0f%% and %.0f%% of one CPU on average). kube-controller-manager's client is rate-limited to its default `--kube-api-qps=20`, "+
		"and its signer writes one status UPDATE per CSR: with `tlsboot approver` (one PATCH per CSR; its SubjectAccessReview answers are cached per requester, "+
		"and the fleet shares one) nodes were signed at %.1f per second; with `csrapproving`, each CSR also costs a SubjectAccessReview and an "+
		"approval UPDATE from the same rate-limited client: %.1f per second. %s\n",
		apiShare(t), apiShare(k), rate(t), rate(k), kcmFlags())
	b.WriteString(
		"- No node LISTs all CSRs. tlsboot's nodes watch their own CSR by name from the resource version the create returned (no LIST at all); the kubelet's " +
			"list then watch their own CSR by name (client-go's informer).\n" +
			"- 429s come from API Priority and Fairness: the bootstrap token's requests fall in the `global-default` flow schema. client-go retries a 429 that carries " +
			"Retry-After after exactly that many seconds (at most 10 times per call); what still fails is retried by the node's own backoff (tlsboot's CSR create: 0.5 s doubling to 30 s, " +
			"20% jitter; after a Retry-After, that long plus a random 0 to 30 s, so that a fleet throttled together does not come back together; the informer's: 0.8 s doubling to 30 s, jittered). A `GET /healthz 500` is the API server reporting itself unhealthy under the burst; tlsboot " +
			"probes again after 2 to 2.4 s, for at most a minute, then creates its CSR anyway.\n" +
			"- Each fleet is one process, so client-go's transport cache gives all its nodes the same HTTP/2 connections: the TLS handshakes of N real machines " +
			"are not in these figures, for either contender.\n")
	b.WriteString("\nRaw runs:\n\n```\n")
	for _, who := range []contender{tlsbootApprover, kubeletKCM} {
		for i, r := range results[who] {
			fmt.Fprintf(&b, "%-7s run %d: %s, fleet CPU %.1f s\n", who, i+1, r.summary(), r.fleetCPU)
		}
	}
	b.WriteString("```\n")
	for _, who := range []contender{tlsbootApprover, kubeletKCM} {
		for i, r := range results[who] {
			for _, f := range append(slices.Clone(r.failed), r.unusable...)[:min(5, len(r.failed)+len(r.unusable))] {
				fmt.Fprintf(&b, "\n%s run %d: %s", who, i+1, f)
			}
		}
	}
	return b.String()
}

func failures(r result) float64 { return float64(len(r.failed) + len(r.unusable)) }
func verified(r result) float64 { return float64(r.verified) }

func sumRuns(rs []result, f func(result) float64) float64 {
	var s float64
	for _, r := range rs {
		s += f(r)
	}
	return s
}

// prec is the number of decimals worth showing for v.
func prec(v float64) int {
	switch {
	case v >= 100:
		return 0
	case v >= 10:
		return 1
	}
	return 2
}

// kcmFlags says which flags kube-controller-manager ran with.
func kcmFlags() string {
	if len(kcmArgs) == 0 {
		return "Both control planes run with default flags."
	}
	return "In these runs kube-controller-manager also had `" + strings.Join(kcmArgs, " ") + "`."
}
