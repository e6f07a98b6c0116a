package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tlsboot/tlsboot/bench/internal/machine"
	"github.com/tlsboot/tlsboot/bench/internal/mdsection"
	"github.com/tlsboot/tlsboot/rotation"
)

// bootWindow is how long the simulated fleet takes to bootstrap, and the
// "within a window" case of the recovery.
const bootWindow = time.Minute

var lifetimes = []struct {
	name string
	ttl  time.Duration
}{
	{"1 year", 365 * 24 * time.Hour},
	{"24 hours", 24 * time.Hour},
}

// recoveryContenders: the kubelet, tlsboot before the fixes (kept here to
// show before and after), with the start-up wait only, and as it is.
var recoveryContenders = []recoveryContender{kubeletRecovery, tlsbootBefore, tlsbootSpreadOnly, tlsbootRecovery}

type simulations struct {
	n, seeds   int
	renewals   [][2][]renewalResult   // [lifetime][tlsboot, client-go][seed]
	recovery   [][][][]recoveryResult // [window][capacity][contender][seed]
	windows    []time.Duration        // recovery boot windows
	capacities []int                  // recovery capacities
}

func runSimulations(n, seeds int, capacities []int) *simulations {
	s := &simulations{n: n, seeds: seeds,
		windows: []time.Duration{0, bootWindow}, capacities: append([]int{0}, capacities...)}
	for _, lt := range lifetimes {
		var r [2][]renewalResult
		for i, p := range []renewPolicy{tlsbootRenewal, clientGoRenewal} {
			for seed := range seeds {
				r[i] = append(r[i], simulateRenewals(p, n, bootWindow, lt.ttl, uint64(seed+1)))
			}
		}
		s.renewals = append(s.renewals, r)
	}
	for _, w := range s.windows {
		var byCap [][][]recoveryResult
		for _, c := range s.capacities {
			var byContender [][]recoveryResult
			for _, rc := range recoveryContenders {
				var runs []recoveryResult
				for seed := range seeds {
					runs = append(runs, simulateRecovery(rc, n, w, c, uint64(seed+1)))
				}
				byContender = append(byContender, runs)
			}
			byCap = append(byCap, byContender)
		}
		s.recovery = append(s.recovery, byCap)
	}
	return s
}

func median[T any](xs []T, f func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func raw[T any](xs []T, f func(T) float64) string { return rawAs(xs, f, num) }

func rawAs[T any](xs []T, f func(T) float64, format func(float64) string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = format(f(x))
	}
	return strings.Join(parts, ", ")
}

func num(v float64) string { return fmt.Sprintf("%.0f", v) }

func ratio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// human renders seconds as a duration rounded to what matters.
func human(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%.1f days", d.Hours()/24)
	case d >= time.Hour:
		return fmt.Sprintf("%.1f h", d.Hours())
	case d >= time.Minute:
		return d.Round(time.Second).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

func (s *simulations) markdown(took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Renewal and recovery storms: %d nodes, simulated\n\n", s.n)
	fmt.Fprintf(&b, "Command: `go run ./bench/storm -n %d -seeds %d -capacities %s -out BENCHMARKS.md` — %d seeds per case, medians, raw values per seed in brackets; %s, %s, simulations took %s.\n\n",
		s.n, s.seeds, capList(s.capacities[1:], ","), s.seeds, machine.Describe(), time.Now().UTC().Format("2006-01-02"), took.Round(100*time.Millisecond))

	b.WriteString("### Renewals over one year of virtual time\n\n")
	fmt.Fprintf(&b, "%d nodes bootstrap uniformly within one minute, then renew for 365 days. tlsboot's deadlines come from "+
		"`rotation.Plan` (default Policy, issuedAt = when it was stored, one jitter draw per certificate as the Manager draws it; the draws come from a seeded math/rand/v2 PCG, the Manager's default `Options.Rand` is math/rand/v2's `Float64`, the same uniform distribution) — the function the Manager calls; "+
		"client-go's from its certificate manager's documented policy (`util/certificate/certificate_manager.go` v0.37.2: "+
		"NotBefore + 70–90%% of NotAfter − NotBefore), rewritten in the benchmark. Certificates are signed as kube-controller-manager "+
		"signs them (NotBefore backdated 5 min). A renewal is counted when its CSR is created; issuance is taken as instantaneous. "+
		"Peaks are over sliding windows; the spread is p5–p95 of the renewal times of one wave (the k-th renewal of every node).\n\n", s.n)
	b.WriteString("| certificate lifetime | | tlsboot | client-go | ratio |\n|---|---|---|---|---|\n")
	for i, lt := range lifetimes {
		t, c := s.renewals[i][0], s.renewals[i][1]
		row := func(label string, f func(renewalResult) float64, fmtv func(float64) string) {
			mt, mc := median(t, f), median(c, f)
			fmt.Fprintf(&b, "| %s | %s | %s [%s] | %s [%s] | %s |\n", lt.name, label, fmtv(mt), rawAs(t, f, fmtv), fmtv(mc), rawAs(c, f, fmtv), ratio(mt, mc))
		}
		row("peak renewals in 1 s", func(r renewalResult) float64 { return float64(r.peak1s) }, num)
		row("peak renewals in 60 s", func(r renewalResult) float64 { return float64(r.peak60s) }, num)
		row("renewals in the year", func(r renewalResult) float64 { return float64(r.renewals) }, num)
		row("waves every node completed", func(r renewalResult) float64 { return float64(r.waves) }, num)
		secs := func(r renewalResult) float64 { return float64(int64(r.firstSpread)) }
		row("spread of wave 1 (p5–p95)", secs, human)
		row("spread of the last complete wave", func(r renewalResult) float64 { return float64(int64(r.lastSpread)) }, human)
	}
	b.WriteString("\nBoth policies draw the renewal point uniformly in the same 70–90% band, so a fleet created in one minute " +
		"renews over 20% of the lifetime from the first wave on, and the waves keep widening (the draws add up) until they merge. " +
		"The two differ only in where the lifetime starts (tlsboot: when the certificate was stored; client-go: the backdated NotBefore), " +
		"which moves every deadline by at most 5 minutes and changes neither the spread nor the peaks beyond seed noise. " +
		"1 year is kube-controller-manager's default `--cluster-signing-duration`; 24 hours is a common shorter choice. " +
		"For scale: the bootstrap of the same fleet, within one minute, is about 200 CSR creates per second.\n\n")

	b.WriteString("### Recovery after an outage longer than the certificate lifetime\n\n")
	fmt.Fprintf(&b, "%d nodes whose client certificates expired power on — all at the same instant, or uniformly within one minute — "+
		"and must re-bootstrap with their bootstrap credentials. The API server either accepts every CSR create, or at most %s per second "+
		"(the rest get 429 with Retry-After: 1, as priority and fairness answers). Both contenders send the create through client-go, "+
		"which retries a 429 after exactly Retry-After, 10 times (`rest/with_retry.go` v0.37.2). Then:\n\n", s.n, capList(s.capacities[1:], " or "))
	b.WriteString("- **kubelet** (`pkg/kubelet/certificate/bootstrap.LoadClientCert`, v1.37.2): /healthz, one create; an error ends " +
		"LoadClientCert and the kubelet exits; systemd restarts it 10 s later (the kubelet.service of kubeadm's packages, RestartSec=10). " +
		"Its start-up time is taken as zero.\n")
	b.WriteString("- **tlsboot before**: `tlsboot run`'s Manager finds the certificate expired and calls Recover at once; " +
		"`bootstrap.Run` creates the CSR and, after client-go gives up, retries after `bootstrap.RetryBackoff()`'s next step " +
		"(0.5 s doubling to 30 s, +0–20% jitter) but no sooner than Retry-After plus 0–20% (the policy before this benchmark, " +
		"kept in the benchmark only).\n")
	fmt.Fprintf(&b, "- **tlsboot with the start-up wait only**: the Manager first waits `Policy.RecoverDelay`, uniform in [0, %s) "+
		"(`DefaultRecoverSpread`); the old retry.\n", rotation.DefaultRecoverSpread)
	b.WriteString("- **tlsboot** (now): the start-up wait, and after client-go gave up on a throttled create, `bootstrap.RetryDelay`: " +
		"Retry-After plus a uniformly random 0–30 s (full jitter over the backoff's cap), at least the backoff's step. " +
		"Both are the product's functions, called with the simulation's seeded draws.\n\n")
	b.WriteString("A node is done when its CSR is created (approval and signing are not modelled). \"Peak\" is the most CSR creates sent " +
		"to the API server in any 1-second window (sliding), rejected ones included; \"accepted\" is per calendar second, at most the capacity. " +
		"A real API server raises its Retry-After while it keeps rejecting (priority and fairness), which this model does not: " +
		"the retries of both contenders bunch more here than they would there.\n\n")
	b.WriteString("| nodes power on | API server | contender | peak creates/s sent | peak creates/s accepted | creates per node | 429s | all CSRs created after |\n|---|---|---|---|---|---|---|---|\n")
	for wi, w := range s.windows {
		wname := "at the same instant"
		if w > 0 {
			wname = "within " + w.String()
		}
		for ci, c := range s.capacities {
			cname := "unlimited"
			if c > 0 {
				cname = fmt.Sprintf("%d creates/s", c)
			}
			for k, rc := range recoveryContenders {
				runs := s.recovery[wi][ci][k]
				peak := func(r recoveryResult) float64 { return float64(r.peakOffered) }
				acc := func(r recoveryResult) float64 { return float64(r.peakAccepted) }
				per := func(r recoveryResult) float64 { return float64(r.requests) / float64(s.n) }
				rej := func(r recoveryResult) float64 { return float64(r.rejected) }
				all := func(r recoveryResult) float64 { return r.allCreated }
				fmt.Fprintf(&b, "| %s | %s | %s | %.0f [%s] | %.0f | %.2f | %.0f | %s |\n", wname, cname, rc.name,
					median(runs, peak), raw(runs, peak), median(runs, acc), median(runs, per), median(runs, rej), human(median(runs, all)))
			}
			k, o, t := s.recovery[wi][ci][0], s.recovery[wi][ci][1], s.recovery[wi][ci][3]
			peak := func(r recoveryResult) float64 { return float64(r.peakOffered) }
			per := func(r recoveryResult) float64 { return float64(r.requests) }
			fmt.Fprintf(&b, "| | | *tlsboot / kubelet: peak %s, creates %s; tlsboot / tlsboot before: peak %s, creates %s* | | | | | |\n",
				ratio(median(t, peak), median(k, peak)), ratio(median(t, per), median(k, per)),
				ratio(median(t, peak), median(o, peak)), ratio(median(t, per), median(o, per)))
		}
	}
	b.WriteString("\nWhat the two changes do and cost. The start-up wait turns a fleet that powers on in the same second into about " +
		"N / 30 s CSR creates per second, at the price of 0–30 s (15 s on average) for a node whose certificate had already expired. " +
		"The throttle pause roughly halves the creates a throttled fleet sends, and its peak, at the price of a longer tail: with 250 creates/s " +
		"and everyone at once, the last CSR exists later than with the old retry (last column), about when the kubelet's does. " +
		"A fleet that powers on over a minute against a server that keeps up sees nothing but the wait. " +
		"Not modelled: approval and signing, the API server raising Retry-After while it keeps rejecting, the Manager's own backoff " +
		"(5 s doubling to 5 min; it only runs when bootstrap.Run gives up, after --wait-timeout, 1 h), and nodes that stayed up " +
		"while the control plane was down.\n")
	return b.String()
}

func capList(caps []int, sep string) string {
	parts := make([]string, len(caps))
	for i, c := range caps {
		parts[i] = fmt.Sprint(c)
	}
	return strings.Join(parts, sep)
}

func writeSection(path, name, text string) error {
	return mdsection.Update(path, name, text)
}
