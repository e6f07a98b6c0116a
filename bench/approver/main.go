// Command approver benchmarks CSR approval at fleet scale: on a fresh local
// control plane (internal/testcluster) a burst of node client CSRs, created
// concurrently as the bootstrap token user, is approved either by
// kube-controller-manager's csrapproving controller or by `tlsboot approver`,
// in the same run, and against the API server's ceiling: bare approval PUTs
// from 16 workers. It reports the time to approve all, approvals per second,
// API requests per CSR, CPU-seconds, and wrong decisions, with CSRs mixed in
// that must be denied or left alone.
//
//	go run ./bench/approver -n 2000 -runs 3 -out BENCHMARKS.md
//
// The events-* contenders run the approver's controller in this process
// with different Event policies, against the ceiling:
//
//	go run ./bench/approver -n 2000 -runs 3 -only ceiling,events-every,events-warnings,events-record,events-series -out BENCHMARKS.md
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tlsboot/tlsboot/bench/internal/mdsection"
)

// contender is what approves: see contenders.go.
type contender string

func main() {
	n := flag.Int("n", 2000, "node client CSRs in the burst")
	runs := flag.Int("runs", 1, "runs per contender (medians are reported); each run measures every contender in turn")
	only := flag.String("only", "kcm,ceiling,tlsboot", "contenders, comma-separated: "+joinContenders(allContenders))
	out := flag.String("out", "", "also write the report to this file (its section: bench/approver, or bench/approver-events when only events-* and ceiling run)")
	workers := flag.Int("workers", 0, "tlsboot approver --workers; 0: its default")
	ceilingWorkers := flag.Int("ceiling-workers", 16, "workers of the ceiling contender")
	qps := flag.Int("qps", 1000, "tlsboot-qps contender: tlsboot approver --kube-api-qps (burst: twice)")
	qpsWorkers := flag.Int("qps-workers", 32, "tlsboot-qps contender: tlsboot approver --workers")
	inprocQPS := flag.Int("inproc-qps", 1000, "events-* contenders: the client rate limit (burst: twice), as --kube-api-qps")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of this process during each events-* contender's burst to FILE.<contender>")
	flag.Parse()
	who, err := parseContenders(*only)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/approver: -only:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *n, *runs, who, *out, setup{workers: *workers, ceilingWorkers: *ceilingWorkers, qps: *qps, qpsWorkers: *qpsWorkers, inprocQPS: *inprocQPS, cpuProfile: *cpuProfile}); err != nil {
		fmt.Fprintln(os.Stderr, "bench/approver:", err)
		os.Exit(1)
	}
}

func parseContenders(s string) ([]contender, error) {
	var who []contender
	for _, f := range strings.Split(s, ",") {
		c := contender(strings.TrimSpace(f))
		if !slices.Contains(allContenders, c) {
			return nil, fmt.Errorf("unknown contender %q: use %s", c, joinContenders(allContenders))
		}
		if !slices.Contains(who, c) {
			who = append(who, c)
		}
	}
	return who, nil
}

func joinContenders(cs []contender) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

func run(ctx context.Context, n, runs int, who []contender, out string, s setup) error {
	dir, err := os.MkdirTemp("", "tlsboot-bench-approver-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	s.bin = filepath.Join(dir, "tlsboot")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", s.bin, "./cmd/tlsboot").CombinedOutput(); err != nil {
		return fmt.Errorf("building tlsboot (run from the repository root): %w\n%s", err, out)
	}
	results := map[contender][]result{}
	// Contenders take turns within each run, so that a slow patch of a
	// shared machine does not fall on one contender only.
	for i := range runs {
		for _, c := range who {
			fmt.Fprintf(os.Stderr, "run %d/%d: %s approving %d CSRs...\n", i+1, runs, c, n)
			r, err := benchOnce(ctx, c, n, s)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", c, i+1, err)
			}
			fmt.Fprintf(os.Stderr, "  %s\n", r.summary())
			if os.Getenv("BENCH_DEBUG") != "" {
				fmt.Fprintf(os.Stderr, "  requests: %v\n", r.requests)
			}
			results[c] = append(results[c], r)
		}
	}
	section, report := render(n, runs, s, who, results)
	fmt.Print(report)
	if out != "" {
		return mdsection.Update(out, section, report)
	}
	return nil
}

func median[T int | float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
