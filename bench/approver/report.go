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

// titles name the contenders in the table.
var titles = map[contender]string{
	kcm:          "kube-controller-manager csrapproving",
	ceiling:      "ceiling: bare approval PUTs",
	ceilingPatch: "ceiling, written as JSON patches",
	tlsboot:      "tlsboot approver",
	tlsbootQPS:   "tlsboot approver, higher client rate limit",
	evEvery:      "Event per decision (approver's writer)",
	evWarnings:   "Events for denials and waits only (approver's writer)",
	evRecord:     "Event per decision, client-go record broadcaster",
	evSeries:     "Event per decision, events.k8s.io broadcaster",
}

// eventsOnly reports whether the run is the Event policy comparison.
func eventsOnly(who []contender) bool {
	for _, c := range who {
		if c != ceiling && c != ceilingPatch && !strings.HasPrefix(string(c), "events-") {
			return false
		}
	}
	return true
}

// render returns the report and the BENCHMARKS.md section it belongs to.
func render(n, runs int, s setup, who []contender, results map[contender][]result) (section, report string) {
	var b strings.Builder
	var names []string
	for _, c := range who {
		names = append(names, string(c))
	}
	section = "bench/approver"
	if eventsOnly(who) {
		section = "bench/approver-events"
		fmt.Fprintf(&b, "## Events per decision: what an Event per approval costs (burst of %d CSRs)\n\n", n)
	} else {
		fmt.Fprintf(&b, "## Burst of %d node client CSRs: tlsboot approver vs kube-controller-manager, and the API server's ceiling\n\n", n)
	}
	fmt.Fprintf(&b, "Command: `go run ./bench/approver -n %d -runs %d -workers %d -ceiling-workers %d -qps %d -qps-workers %d -inproc-qps %d -only %s -out BENCHMARKS.md` — %d run(s), each measuring every contender in turn on a fresh control plane, medians; %d CPUs, %s.\n\n",
		n, runs, s.workers, s.ceilingWorkers, s.qps, s.qpsWorkers, s.inprocQPS, strings.Join(names, ","), runs, runtime.NumCPU(), time.Now().UTC().Format("2006-01-02"))
	b.WriteString(method)
	if eventsOnly(who) {
		b.WriteString(eventsMethod)
	}

	b.WriteString("| |")
	for _, c := range who {
		fmt.Fprintf(&b, " %s |", titles[c])
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(who)) + "\n")
	row := func(name string, f func(r []result) string) {
		fmt.Fprintf(&b, "| %s |", name)
		for _, c := range who {
			fmt.Fprintf(&b, " %s |", cell(results[c], f))
		}
		b.WriteString("\n")
	}
	ceil := medianF(results[ceiling], result.rate)
	row("time to approve all (first create → last approval)", func(r []result) string {
		return medianDur(r, func(x result) time.Duration { return x.approveAll }).Round(time.Millisecond).String()
	})
	row("approvals per second", func(r []result) string { return fmt.Sprintf("%.1f", medianF(r, result.rate)) })
	if len(results[ceiling]) > 0 {
		row("**fraction of the ceiling** (median rates)", func(r []result) string { return fmt.Sprintf("**%.2f**", medianF(r, result.rate)/ceil) })
	}
	row("approvals per second, each run", func(r []result) string {
		var s []string
		for _, x := range r {
			s = append(s, fmt.Sprintf("%.1f", x.rate()))
		}
		return strings.Join(s, ", ")
	})
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
	row("Events recorded (objects)", func(r []result) string { return fmt.Sprint(median(ints(r, func(x result) int { return x.events }))) })
	row("CPU-seconds, kube-apiserver", func(r []result) string {
		return fmt.Sprintf("%.1f", medianF(r, func(x result) float64 { return x.cpu.apiserver }))
	})
	row("CPU-seconds, etcd", func(r []result) string {
		return fmt.Sprintf("%.1f", medianF(r, func(x result) float64 { return x.cpu.etcd }))
	})
	row("CPU-seconds, approver process", func(r []result) string {
		return fmt.Sprintf("%.1f", medianF(r, func(x result) float64 { return x.cpu.approver }))
	})
	row("wrong decisions", func(r []result) string {
		w := 0
		for _, x := range r {
			w += len(x.wrong)
		}
		return fmt.Sprint(w)
	})
	if k, t := results[kcm], results[tlsboot]; len(k) > 0 && len(t) > 0 {
		fmt.Fprintf(&b, "\nRatio of approval rates, tlsboot / kube-controller-manager: %.1f×.\n", medianF(t, result.rate)/medianF(k, result.rate))
	}
	if t := results[tlsboot]; len(t) > 0 && ceil > 0 {
		fmt.Fprintf(&b, "\ntlsboot approver / ceiling: %.2f of the ceiling's rate (per run: %s).\n", medianF(t, result.rate)/ceil, perRun(t, results[ceiling]))
	}
	if t := results[tlsbootQPS]; len(t) > 0 && ceil > 0 {
		fmt.Fprintf(&b, "\ntlsboot approver --kube-api-qps %d --kube-api-burst %d --workers %d / ceiling: %.2f of the ceiling's rate (per run: %s).\n", s.qps, 2*s.qps, s.qpsWorkers, medianF(t, result.rate)/ceil, perRun(t, results[ceiling]))
	}
	if rs := results[tlsboot]; len(rs) > 0 {
		fmt.Fprintf(&b, "\ntlsboot approver's own counters (last run): %s\n", rs[len(rs)-1].sar)
	}
	for _, c := range who {
		for _, r := range results[c] {
			for _, w := range r.wrong {
				fmt.Fprintf(&b, "\nWRONG (%s): %s", c, w)
			}
		}
	}
	if eventsOnly(who) {
		b.WriteString(eventsDecision)
	}
	return section, b.String()
}

// perRun is each run's rate of rs over the ceiling's rate in the same run.
func perRun(rs, ceil []result) string {
	var s []string
	for i := range min(len(rs), len(ceil)) {
		s = append(s, fmt.Sprintf("%.2f", rs[i].rate()/ceil[i].rate()))
	}
	return strings.Join(s, ", ")
}

// method says what the numbers mean.
const method = `A fresh local control plane per contender and run (internal/testcluster: etcd, kube-apiserver,
kube-controller-manager v1.37.2), signing off so that only approval is measured. A burst of node
client CSRs is created concurrently as the kubeadm bootstrap token user, with 6% mixed in that must
not be approved: O=system:masters (tlsboot denies, the others leave them), CSRs from a token whose
group has no nodeclient binding, and CSRs for signer kubernetes.io/kube-apiserver-client (all
leave those alone). kube-controller-manager runs csrapproving with its default client limits (20
QPS, burst 30); tlsboot approver runs as a process with its defaults (32 workers, 1000 QPS / burst
2000, SubjectAccessReview answers reused for 5 s, leader election on) unless -workers is set. The **ceiling** is the API
server's own limit on this machine: one client with **no client-side rate limit** (protobuf, as the
approver), an informer started before the burst, and 16 workers that PUT the approval subresource
of each good CSR as it arrives — no checks, no SubjectAccessReview, no Event; it runs in the
benchmark's process. "tlsboot approver, higher client rate limit" is the same binary with
--kube-api-qps, --kube-api-burst and --workers set from -qps (burst twice that) and -qps-workers:
every check still runs, SubjectAccessReview answers are reused as by default. "Time to approve all" runs from the first create to the last Approved condition seen by a
watch. API requests come from the API server's apiserver_request_total before and after (all
clients, including the creates). CPU-seconds are user+system time from /proc over the same window
plus the Events' tail; "approver process" is the benchmark process itself for the contenders that
run in it (it also creates the burst). Every CSR is checked at the end against what it must be
(approved / denied / untouched, one condition).

`

// eventsMethod says what the Event policy comparison runs.
const eventsMethod = `Here every contender but the ceiling is the approver's controller (internal/approver) run in the
benchmark's process with the defaults of ` + "`tlsboot approver`" + ` except for the command's -workers and
its client rate limit (-inproc-qps, burst twice that), without leader election, differing only in
its Event recorder: the approver's own writer (4 goroutines, queue of 20,000) recording every
decision or only denials and waits, or client-go's core/v1 record broadcaster, or its events.k8s.io
broadcaster, both recording every decision. Events are counted once the approvals are done (the
broadcasters drop some: counted when their number stops growing for 3 s).

`

// eventsDecision is what `tlsboot approver` does with these numbers.
const eventsDecision = `
Decision (docs/approver.md, "Events"): ` + "`tlsboot approver`" + ` records an Event for each denial and
each CSR left pending for a human, none for an approval (its Approved condition and log line are
the record). Read the rows "POST events per CSR" and "CPU-seconds" for the cost of an Event per
approval, the per-run rates for how much of it shows in the approval rate on this machine, and
"Events recorded" for what client-go's broadcasters keep of 2,040 Events about 2,040 distinct CSRs
(their aggregation and series only merge Events about one object).
`

func cell(r []result, f func([]result) string) string {
	if len(r) == 0 {
		return "—"
	}
	return f(r)
}

func ints(rs []result, f func(result) int) []int {
	xs := make([]int, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return xs
}

func medianDur(rs []result, f func(result) time.Duration) time.Duration {
	xs := make([]time.Duration, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return median(xs)
}

func medianF(rs []result, f func(result) float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return median(xs)
}
