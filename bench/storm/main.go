// Command storm measures what a whole fleet does to the API server when its
// certificates come due together, and when it comes back together after an
// outage longer than the certificate lifetime:
//
//   - renewals: 10,000 nodes bootstrapped within one minute renew for a year
//     of virtual time under rotation.Plan (tlsboot) and under client-go's
//     certificate manager policy, with 1-year and 24-hour certificates;
//   - recovery: 10,000 nodes with expired certificates power on (at the same
//     instant, or within a minute) and create CSRs against an API server of
//     limited or unlimited capacity, with tlsboot's real retry policy
//     (rotation.Policy.RecoverDelay, bootstrap.RetryBackoff) before and
//     after the start-up spread, and with the kubelet's;
//   - live (-live): 200 rotation.Managers in this process, each with its own
//     key and store, bootstrap against a real control plane whose signer
//     issues 10-minute certificates, and renew while every Manager's
//     certificate is sampled every second.
//
// The simulations run in seconds, -seeds times each; medians are reported.
//
//	go run ./bench/storm -out BENCHMARKS.md
//	go run ./bench/storm -live -out BENCHMARKS.md
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	n := flag.Int("n", 10000, "nodes in the simulated fleet")
	seeds := flag.Int("seeds", 3, "simulation runs (seeds 1..N) per case; medians are reported")
	capacities := flag.String("capacities", "250,100", "comma-separated CSR creates per second the simulated API server accepts (the rest get 429); an unlimited server is always simulated too")
	live := flag.Bool("live", false, "also run the Managers on a real control plane (about 10 minutes)")
	liveNodes := flag.Int("live-nodes", 200, "Managers in the live run")
	liveTTL := flag.Duration("live-ttl", 10*time.Minute, "certificate lifetime of the live run (--cluster-signing-duration)")
	liveFor := flag.Duration("live-for", 9*time.Minute+30*time.Second, "how long the live run lasts after the first bootstrap")
	out := flag.String("out", "", "write the Markdown sections to this file (default: stdout only)")
	flag.Parse()
	caps, err := parseCapacities(*capacities)
	if err != nil || *seeds < 3 || *n < 1 {
		fmt.Fprintln(os.Stderr, "bench/storm: -seeds must be at least 3, -n at least 1, -capacities positive integers separated by commas")
		os.Exit(2)
	}
	start := time.Now()
	sim := runSimulations(*n, *seeds, caps)
	text := sim.markdown(time.Since(start))
	fmt.Println(text)
	if *out != "" {
		if err := writeSection(*out, "bench/storm", text); err != nil {
			fmt.Fprintln(os.Stderr, "bench/storm:", err)
			os.Exit(1)
		}
	}
	if !*live {
		return
	}
	res, err := runLive(*liveNodes, *liveTTL, *liveFor)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/storm: live:", err)
		os.Exit(1)
	}
	text = res.markdown()
	fmt.Println(text)
	if *out != "" {
		if err := writeSection(*out, "bench/storm-live", text); err != nil {
			fmt.Fprintln(os.Stderr, "bench/storm:", err)
			os.Exit(1)
		}
	}
}

func parseCapacities(s string) ([]int, error) {
	var caps []int
	for _, f := range strings.Split(s, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			return nil, fmt.Errorf("capacity %q is not a positive integer", f)
		}
		caps = append(caps, c)
	}
	return caps, nil
}
