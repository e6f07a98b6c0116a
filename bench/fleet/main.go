// Command fleet measures a fleet of nodes bootstrapping at the same moment
// against one fresh local control plane per run: tlsboot's library
// (bootstrap.Run, one goroutine per node) with `tlsboot approver`, against
// the kubelet's own code (LoadClientCert, one goroutine per node, in the
// kubelet-fleet peer that `make controlplane` builds) with
// kube-controller-manager's csrapproving. The contenders alternate, each
// run on its own control plane.
//
// It reports the time until every node has a usable kubeconfig, per-node
// join times, the API requests each node made (from the API server's audit
// log, by user), the CPU time of kube-apiserver, etcd and the fleet process
// (from /proc), 429 answers and failures.
//
//	go run ./bench/fleet -n 1000 -runs 3 -out BENCHMARKS.md
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tlsboot/tlsboot/bench/internal/mdsection"
)

func main() {
	n := flag.Int("n", 1000, "nodes per run")
	runs := flag.Int("runs", 3, "runs of each contender")
	out := flag.String("out", "", "update this markdown file's fleet section (default: print only)")
	tlsboot := flag.String("tlsboot", "bin/tlsboot", "tlsboot binary (its approver)")
	sample := flag.Int("verify-sample", 50, "nodes whose kubeconfig is also used to authenticate (every kubeconfig is parsed and checked offline)")
	flag.Func("kcm-arg", "extra kube-controller-manager flag for both contenders, such as --kube-api-qps=100 (repeatable; the report says so)", func(v string) error {
		kcmArgs = append(kcmArgs, v)
		return nil
	})
	child := flag.Bool("child", false, "internal: run the tlsboot fleet in this process and print its report")
	dir := flag.String("dir", "", "internal (-child): directory of the nodes")
	boot := flag.String("bootstrap-kubeconfig", "", "internal (-child): the shared bootstrap kubeconfig")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *child {
		if err := childFleet(ctx, *n, *dir, *boot); err != nil {
			fmt.Fprintln(os.Stderr, "fleet:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, *n, *runs, *sample, *tlsboot, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// kcmArgs are extra kube-controller-manager flags (-kcm-arg).
var kcmArgs []string

func run(ctx context.Context, n, runs, sample int, tlsboot, out string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	began, loadBefore := time.Now(), loadAvg()
	results := map[contender][]result{}
	for i := range runs {
		order := []contender{tlsbootApprover, kubeletKCM}
		if i%2 == 1 { // alternate who goes first
			order = []contender{kubeletKCM, tlsbootApprover}
		}
		for _, who := range order {
			r, err := runOnce(ctx, who, n, sample, self, tlsboot)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", who, i+1, err)
			}
			fmt.Fprintf(os.Stderr, "fleet: %s run %d: %s\n", who, i+1, r.summary())
			results[who] = append(results[who], r)
		}
	}
	report := render(n, runs, sample, began, results, loadBefore, loadAvg())
	fmt.Print(report)
	if out != "" {
		return mdsection.Update(out, "bench/fleet", report)
	}
	return nil
}

// loadAvg is the machine's 1, 5 and 15 minute load averages, to tell
// readers whether the benchmark had the machine to itself.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
