package main

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tlsboot/tlsboot/bench/internal/machine"
)

var floodTitles = map[string]string{
	"ou":       "padded with subject OUs (the review's)",
	"text":     "padded with explanatory text before the PEM block",
	"normal":   "normal node requests",
	"toolarge": "padded with text past 64 KiB (denied in both)",
}

func render(cfg config, requests map[string][]byte, results map[string]map[string][]result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Approver memory under a CSR flood: %d CSRs from one bootstrap token, before and after issue 24\n\n", cfg.n)
	fmt.Fprintf(&b, "Command: `go run ./bench/flood -before BIN -after BIN -n %d -size %d -runs %d -floods %s -out BENCHMARKS.md` — %d run(s) on one control plane, "+
		"each flood against each binary in turn; medians, with every run in parentheses; %s, %s.\n\n",
		cfg.n, cfg.size, cfg.runs, strings.Join(cfg.floods, ","), cfg.runs, machine.Describe(), time.Now().UTC().Format("2006-01-02"))
	b.WriteString(method)
	b.WriteString("| flood | request | binary | peak RSS, MiB | RSS when the caches synced, MiB | approved | denied (reason) | Events written | first create → last decision |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, f := range cfg.floods {
		for _, bin := range cfg.bins {
			rs := results[f][bin.name]
			fmt.Fprintf(&b, "| %s | %d B | %s | %s | %s | %s | %s | %s | %s |\n", floodTitles[f], len(requests[f]), bin.name,
				mibCell(rs, func(r result) int64 { return r.peakRSS }), mibCell(rs, func(r result) int64 { return r.startRSS }),
				intCell(rs, func(r result) int { return r.approved }), deniedCell(rs),
				intCell(rs, func(r result) int { return r.events }),
				durCell(rs))
		}
	}
	return b.String()
}

const method = `Each run starts ` + "`tlsboot approver --leader-elect=false`" + ` on an empty set of CSRs, creates the flood with 8 concurrent creators
from the cluster's bootstrap token (a kubeadm token, not bound: every request may be approved), waits until every CSR is
denied, or approved and signed by kube-controller-manager's signer, reads the approver's peak resident set size (VmHWM
in /proc), counts the Events about the flood's CSRs, then stops the approver and deletes the CSRs and Events. "before" is
the commit named below without the change (built from a git worktree), "after" the working tree. No GOMEMLIMIT is set
here (the Deployment sets one): the figures are what the code keeps, not what a tuned collector trims.

`

func median[T int | int64 | time.Duration](v []T) T {
	s := slices.Clone(v)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func mibCell(rs []result, f func(result) int64) string {
	var v []int64
	var parts []string
	for _, r := range rs {
		v = append(v, f(r))
		parts = append(parts, fmt.Sprintf("%.0f", mib(f(r))))
	}
	return fmt.Sprintf("**%.0f** (%s)", mib(median(v)), strings.Join(parts, ", "))
}

func intCell(rs []result, f func(result) int) string {
	var v []int
	for _, r := range rs {
		v = append(v, f(r))
	}
	if slices.Min(v) == slices.Max(v) {
		return fmt.Sprint(v[0])
	}
	return fmt.Sprintf("%d (%d–%d)", median(v), slices.Min(v), slices.Max(v))
}

func deniedCell(rs []result) string {
	reasons := map[string]bool{}
	for _, r := range rs {
		for k := range r.reasons {
			reasons[k] = true
		}
	}
	s := intCell(rs, func(r result) int { return r.denied })
	if len(reasons) > 0 {
		s += " (" + strings.Join(slices.Sorted(maps.Keys(reasons)), ", ") + ")"
	}
	return s
}

func durCell(rs []result) string {
	var v []time.Duration
	for _, r := range rs {
		v = append(v, r.took)
	}
	return median(v).Round(100 * time.Millisecond).String()
}
