// Command flood measures the approver's memory under a flood of CSRs from one
// bootstrap token, as the review of issue 24 did (1,500 approvable CSRs of
// about 62 KB took the approver from 33 MB to 386 MB of RSS), for two
// `tlsboot` binaries on the same control plane: typically the code before a
// change and after it.
//
// Floods (-floods):
//   - ou: each request padded with subject OUs to -size (the review's);
//   - text: each request a node request after explanatory text up to -size
//     (RFC 7468 allows text before a PEM block; pem.Decode, the API server,
//     the signer and the policy skip it), the one padding of an approvable
//     client request that fits 62 KB once SubjectNotAllowed denies OUs;
//   - normal: normal node requests (about 450 bytes of PEM);
//   - toolarge: text-padded requests of 68 KB, over the 64 KiB every version
//     denies (RequestTooLarge): a flood denied before and after, to compare
//     the Events written.
//
// For each run, flood and binary in turn: start `tlsboot approver`
// (--leader-elect=false) on an empty set of CSRs, create -n CSRs with 8
// creators, wait until each is decided and each approved one signed, read
// the approver's peak RSS (VmHWM) and the Events written, stop it and
// delete the CSRs and Events before the next.
//
//	go build -o /tmp/tlsboot-before ./cmd/tlsboot   # from the old tree
//	go build -o /tmp/tlsboot-after ./cmd/tlsboot
//	go run ./bench/flood -before /tmp/tlsboot-before -after /tmp/tlsboot-after -out BENCHMARKS.md
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
	"github.com/tlsboot/tlsboot/internal/testcluster"
)

func main() {
	before := flag.String("before", "", "the tlsboot binary before the change (required)")
	after := flag.String("after", "", "the tlsboot binary after the change (required)")
	n := flag.Int("n", 1500, "CSRs per flood")
	size := flag.Int("size", 62*1000, "bytes of each padded request")
	runs := flag.Int("runs", 3, "runs; medians are reported")
	floods := flag.String("floods", "ou,text,normal", "comma-separated floods: ou, text, normal, toolarge")
	out := flag.String("out", "", "also write the report to this file (its section: bench/flood)")
	flag.Parse()
	if *before == "" || *after == "" || *runs < 1 || *n < 1 {
		fmt.Fprintln(os.Stderr, "bench/flood: -before and -after name the two tlsboot binaries; -runs and -n must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := config{n: *n, size: *size, runs: *runs, floods: strings.Split(*floods, ","),
		bins: []binary{{"before", *before}, {"after", *after}}}
	report, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/flood:", err)
		os.Exit(1)
	}
	fmt.Println(report)
	if *out != "" {
		if err := mdsection.Update(*out, "bench/flood", report); err != nil {
			fmt.Fprintln(os.Stderr, "bench/flood:", err)
			os.Exit(1)
		}
	}
}

type binary struct{ name, path string }

type config struct {
	n, size, runs int
	floods        []string
	bins          []binary
}

// result is one flood against one binary.
type result struct {
	startRSS, peakRSS int64 // VmHWM after the caches synced, and at the end
	approved, denied  int
	reasons           map[string]int // denial reasons
	events            int
	took              time.Duration // first create to last decision and signature
}

func run(ctx context.Context, cfg config) (string, error) {
	c, err := testcluster.Start(ctx, testcluster.Options{Controllers: []string{"csrsigning"}, SigningDuration: time.Hour})
	if err != nil {
		return "", err
	}
	defer c.Stop()
	requests := map[string][]byte{}
	for _, f := range cfg.floods {
		if requests[f], err = request(f, cfg.size); err != nil {
			return "", err
		}
	}
	results := map[string]map[string][]result{} // flood → binary → runs
	for r := range cfg.runs {
		for _, f := range cfg.floods {
			for _, b := range cfg.bins {
				res, err := floodOnce(ctx, c, b.path, requests[f], cfg.n, fmt.Sprintf("%s-%s-%d", f, b.name, r))
				if err != nil {
					return "", fmt.Errorf("run %d, flood %s, %s: %w", r+1, f, b.name, err)
				}
				fmt.Fprintf(os.Stderr, "run %d flood %-6s %-6s: peak RSS %.1f MiB (start %.1f), %d approved, %d denied %v, %d Events, %s\n",
					r+1, f, b.name, mib(res.peakRSS), mib(res.startRSS), res.approved, res.denied, res.reasons, res.events, res.took.Round(time.Millisecond))
				if results[f] == nil {
					results[f] = map[string][]result{}
				}
				results[f][b.name] = append(results[f][b.name], res)
			}
		}
	}
	return render(cfg, requests, results), nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
