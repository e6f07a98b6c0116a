package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"
)

// requestKeys are the API requests worth showing one by one.
var requestKeys = []string{
	"POST certificatesigningrequests",
	"PUT certificatesigningrequests/approval",
	"PATCH certificatesigningrequests/approval",
	"POST subjectaccessreviews",
	"POST events",
	"PATCH events",
}

func render(n, runs, workers int, results map[contender][]result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Burst of %d node client CSRs: tlsboot approver vs kube-controller-manager\n\n", n)
	fmt.Fprintf(&b, "Command: `go run ./bench/approver -n %d -runs %d -workers %d -out BENCHMARKS.md` — %d run(s) per contender, medians; %d CPUs, %s.\n\n",
		n, runs, workers, runs, runtime.NumCPU(), time.Now().UTC().Format("2006-01-02"))
	b.WriteString(method)
	b.WriteString("| | kube-controller-manager csrapproving | tlsboot approver |\n|---|---|---|\n")
	row := func(name string, f func(r []result) string) {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", name, cell(results["kcm"], f), cell(results["tlsboot"], f))
	}
	row("time to approve all (first create → last approval)", func(r []result) string {
		return medianDur(r, func(x result) time.Duration { return x.approveAll }).Round(time.Millisecond).String()
	})
	row("approvals per second", func(r []result) string { return fmt.Sprintf("%.1f", medianF(r, result.rate)) })
	row("burst creation time (all CSRs created)", func(r []result) string {
		return medianDur(r, func(x result) time.Duration { return x.createAll }).Round(time.Millisecond).String()
	})
	row("API requests per CSR, all (incl. its create)", func(r []result) string {
		return fmt.Sprintf("%.2f", medianF(r, func(x result) float64 { return x.requests.Total() / float64(x.n) }))
	})
	for _, k := range requestKeys {
		row("&nbsp;&nbsp;"+k+" per CSR", func(r []result) string {
			return fmt.Sprintf("%.3f", medianF(r, func(x result) float64 { return x.requests[k] / float64(x.n) }))
		})
	}
	row("wrong decisions", func(r []result) string {
		w := 0
		for _, x := range r {
			w += len(x.wrong)
		}
		return fmt.Sprint(w)
	})
	if k, t := results["kcm"], results["tlsboot"]; len(k) > 0 && len(t) > 0 {
		fmt.Fprintf(&b, "\nRatio of approval rates, tlsboot / kube-controller-manager: %.1f×.\n", medianF(t, result.rate)/medianF(k, result.rate))
	}
	if rs := results["tlsboot"]; len(rs) > 0 {
		fmt.Fprintf(&b, "\ntlsboot approver's own counters (last run): %s\n", rs[len(rs)-1].sar)
	}
	for who, rs := range results {
		for _, r := range rs {
			for _, w := range r.wrong {
				fmt.Fprintf(&b, "\nWRONG (%s): %s", who, w)
			}
		}
	}
	return b.String()
}

// method says what the numbers mean.
const method = `A fresh local control plane per contender (internal/testcluster: etcd, kube-apiserver,
kube-controller-manager v1.37.2), signing off so that only approval is measured. A burst of node
client CSRs is created concurrently as the kubeadm bootstrap token user, with 6% mixed in that must
not be approved: O=system:masters (tlsboot denies, kube-controller-manager leaves them), CSRs from a
token whose group has no nodeclient binding, and CSRs for signer kubernetes.io/kube-apiserver-client
(both leave those alone). kube-controller-manager runs csrapproving with its default client limits
(20 QPS, burst 30); tlsboot approver runs with its defaults (8 workers, 200 QPS / burst 400,
SubjectAccessReview answers reused for 5 s, leader election on). "Time to approve all" runs from the
first create to the last Approved condition seen by a watch. API requests come from the API
server's apiserver_request_total before and after (all clients, including the creates). Every CSR
is checked at the end against what it must be (approved / denied / untouched, one condition).

`

func cell(r []result, f func([]result) string) string {
	if len(r) == 0 {
		return "—"
	}
	return f(r)
}

func medianDur(rs []result, f func(result) time.Duration) time.Duration {
	xs := make([]time.Duration, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return median(xs)
}

func medianF(rs []result, f func(result) float64) float64 {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return median(xs)
}
