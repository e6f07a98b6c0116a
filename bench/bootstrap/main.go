// Command bootstrap measures a node's TLS bootstrap with tlsboot against the
// kubelet's own code (k8s.io/kubernetes/pkg/kubelet/certificate/bootstrap,
// built by `make controlplane` as the kubelet-bootstrap peer) on one local
// control plane, interleaved so that both see the same machine and server:
// wall time of a fresh bootstrap and of a no-op re-run, and the API requests
// each bootstrap costs, from the apiserver's apiserver_request_total.
//
//	go run ./bench/bootstrap -n 25 -out BENCHMARKS.md
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/tlsboot/tlsboot/bench/internal/apimetrics"
	"github.com/tlsboot/tlsboot/bench/internal/mdsection"
	"github.com/tlsboot/tlsboot/internal/testcluster"
)

type impl struct {
	name string
	bin  string
	args func(n node) []string
}

type node struct{ name, kubeconfig, bootstrap, certDir string }

// sample is one run of one implementation.
type sample struct {
	fresh, noop         time.Duration // whole process
	freshCall, noopCall time.Duration // the bootstrap call alone, as each program reports it
	requests            apimetrics.Counts
}

func main() {
	n := flag.Int("n", 25, "runs of each implementation")
	out := flag.String("out", "", "update this markdown file's bootstrap section (default: print only)")
	tlsboot := flag.String("tlsboot", "bin/tlsboot", "tlsboot binary")
	flag.Parse()
	if err := run(context.Background(), *n, *tlsboot, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n int, tlsboot, out string) error {
	c, err := testcluster.Start(ctx, testcluster.Options{})
	if err != nil {
		return err
	}
	defer c.Stop()
	impls := []impl{
		{"tlsboot", tlsboot, func(n node) []string {
			return []string{"bootstrap", "--kubeconfig", n.kubeconfig, "--bootstrap-kubeconfig", n.bootstrap, "--cert-dir", n.certDir, "--node-name", n.name}
		}},
		{"kubelet", filepath.Join(c.BinDir(), "kubelet-bootstrap"), func(n node) []string {
			return []string{"--kubeconfig", n.kubeconfig, "--bootstrap-kubeconfig", n.bootstrap, "--cert-dir", n.certDir, "--node-name", n.name}
		}},
	}
	admin, err := c.AdminClient()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "tlsboot-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	samples := map[string][]sample{}
	for i := range n + 1 { // run 0 warms up caches and is discarded
		order := impls
		if i%2 == 1 { // alternate who goes first
			order = []impl{impls[1], impls[0]}
		}
		for _, im := range order {
			s, err := measure(ctx, c, admin, im, dir, i)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", im.name, i, err)
			}
			if i > 0 {
				samples[im.name] = append(samples[im.name], s)
			}
		}
	}
	report := render(n, samples)
	fmt.Print(report)
	if out != "" {
		return mdsection.Update(out, "bench/bootstrap", report)
	}
	return nil
}

func measure(ctx context.Context, c *testcluster.Cluster, admin kubernetes.Interface, im impl, dir string, i int) (sample, error) {
	nd := node{name: fmt.Sprintf("bench-%s-%d", im.name, i), bootstrap: c.BootstrapKubeconfig}
	base := filepath.Join(dir, nd.name)
	nd.kubeconfig, nd.certDir = filepath.Join(base, "kubelet.conf"), filepath.Join(base, "pki")
	before, err := apimetrics.Scrape(ctx, admin)
	if err != nil {
		return sample{}, err
	}
	fresh, freshCall, err := timeRun(ctx, im.bin, im.args(nd))
	if err != nil {
		return sample{}, err
	}
	after, err := apimetrics.Scrape(ctx, admin)
	if err != nil {
		return sample{}, err
	}
	noop, noopCall, err := timeRun(ctx, im.bin, im.args(nd))
	if err != nil {
		return sample{}, err
	}
	return sample{fresh: fresh, noop: noop, freshCall: freshCall, noopCall: noopCall, requests: after.Sub(before)}, nil
}

// tookRE finds the "took <duration>" both programs print on stdout.
var tookRE = regexp.MustCompile(`took ([0-9.]+[a-zµ]+)`)

// timeRun runs a program and returns its wall time and the time of the
// bootstrap call it reports.
func timeRun(ctx context.Context, bin string, args []string) (wall, call time.Duration, err error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("%w: %s", err, stderr.String())
	}
	wall = time.Since(start)
	m := tookRE.FindStringSubmatch(stdout.String())
	if m == nil {
		return 0, 0, fmt.Errorf("%s printed no \"took\": %q", bin, stdout.String())
	}
	call, err = time.ParseDuration(m[1])
	return wall, call, err
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianF(fs []float64) float64 {
	s := append([]float64(nil), fs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
