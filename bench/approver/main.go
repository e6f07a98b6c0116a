// Command approver benchmarks CSR approval at fleet scale: on a fresh local
// control plane (internal/testcluster) a burst of node client CSRs, created
// concurrently as the bootstrap token user, is approved either by
// kube-controller-manager's csrapproving controller or by `tlsboot approver`,
// in the same run. It reports the time to approve all, approvals per second,
// API requests per CSR, and wrong decisions, with CSRs mixed in that must be
// denied or left alone.
//
//	go run ./bench/approver -n 2000 -runs 1 -out BENCHMARKS.md
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
	"syscall"
	"time"

	"github.com/tlsboot/tlsboot/bench/internal/mdsection"
)

// contender is what approves: "kcm" or "tlsboot".
type contender string

func main() {
	n := flag.Int("n", 2000, "node client CSRs in the burst")
	runs := flag.Int("runs", 1, "runs per contender (medians are reported)")
	only := flag.String("only", "", "run only this contender: kcm or tlsboot")
	out := flag.String("out", "", "also write the report to this file")
	workers := flag.Int("workers", 8, "tlsboot approver --workers")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *n, *runs, *only, *out, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "bench/approver:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n, runs int, only, out string, workers int) error {
	dir, err := os.MkdirTemp("", "tlsboot-bench-approver-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "tlsboot")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tlsboot").CombinedOutput(); err != nil {
		return fmt.Errorf("building tlsboot (run from the repository root): %w\n%s", err, out)
	}
	results := map[contender][]result{}
	for _, who := range []contender{"kcm", "tlsboot"} {
		if only != "" && string(who) != only {
			continue
		}
		for i := range runs {
			fmt.Fprintf(os.Stderr, "run %d/%d: %s approving %d CSRs...\n", i+1, runs, who, n)
			r, err := benchOnce(ctx, who, n, bin, workers)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", who, i+1, err)
			}
			fmt.Fprintf(os.Stderr, "  %s\n", r.summary())
			if os.Getenv("BENCH_DEBUG") != "" {
				fmt.Fprintf(os.Stderr, "  requests: %v\n", r.requests)
			}
			results[who] = append(results[who], r)
		}
	}
	report := render(n, runs, workers, results)
	fmt.Print(report)
	if out != "" {
		return mdsection.Update(out, "bench/approver", report)
	}
	return nil
}

func median[T int | float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
