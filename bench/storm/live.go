package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/bench/internal/machine"
	"github.com/tlsboot/tlsboot/bootstrap"
	"github.com/tlsboot/tlsboot/certstore"
	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/internal/atomicfile"
	"github.com/tlsboot/tlsboot/internal/testcluster"
	"github.com/tlsboot/tlsboot/kubeconfig"
	"github.com/tlsboot/tlsboot/rotation"
)

// liveNode is one simulated node of the live run: its files and Manager.
type liveNode struct {
	name, dir, kubeconfig string
	store                 *certstore.Store
	m                     *rotation.Manager
}

// liveResult is what the live run saw.
type liveResult struct {
	n                int
	ttl, ran, asked  time.Duration   // lifetime, how long it ran, -live-for
	bootstrapSpan    time.Duration   // first bootstrap start to last bootstrap done
	renewals         []time.Duration // renewal times since the first bootstrap started
	renewalReasons   map[rotation.Reason]int
	failures         map[rotation.Failure]int
	samples          int // Current() samples taken
	missing, invalid int // samples with no certificate / an expired or not yet valid one
	minLeft          time.Duration
	csrs             int // CSRs on the API server at the end
	took             time.Duration
}

// runLive starts a control plane whose signer issues ttl certificates,
// bootstraps n nodes at once with bootstrap.Run (kube-controller-manager's
// csrapproving approves, csrsigning signs), runs a rotation.Manager per
// node for d, and samples every Manager's Current() every second.
func runLive(n int, ttl, d time.Duration) (*liveResult, error) {
	began := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The Managers' and bootstraps' log lines, 200 nodes' worth, would
	// drown the report: they go to a verbosity nobody enables.
	ctx = klog.NewContext(ctx, klog.Background().V(10))
	c, err := testcluster.Start(ctx, testcluster.Options{SigningDuration: ttl})
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	root, err := os.MkdirTemp("", "tlsboot-storm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(root)

	res := &liveResult{n: n, ttl: ttl, asked: d, renewalReasons: map[rotation.Reason]int{}, failures: map[rotation.Failure]int{}, minLeft: ttl}
	var mu sync.Mutex // guards res's maps and renewals while the Managers run
	start := time.Now()
	hooks := rotation.Hooks{
		Rotated: func(_ string, r rotation.Reason, _ time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			res.renewals = append(res.renewals, time.Since(start))
			res.renewalReasons[r]++
		},
		Failed: func(_ string, f rotation.Failure, _ error) {
			mu.Lock()
			defer mu.Unlock()
			res.failures[f]++
		},
	}
	nodes := make([]*liveNode, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { nodes[i], errs[i] = bootstrapNode(ctx, c, root, i, hooks) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("bootstrapping: %w", err)
	}
	res.bootstrapSpan = time.Since(start)
	fmt.Fprintf(os.Stderr, "bench/storm: live: %d nodes bootstrapped in %s; running their Managers for %s\n", n, res.bootstrapSpan.Round(time.Millisecond), d)

	runCtx, stop := context.WithCancel(ctx)
	for _, nd := range nodes {
		wg.Go(func() { nd.m.Run(runCtx) })
	}
	end := start.Add(d)
	tick := time.NewTicker(time.Second)
	for now := range tick.C {
		if now.After(end) {
			break
		}
		for _, nd := range nodes {
			res.samples++
			cur := nd.m.Current()
			switch {
			case cur == nil:
				res.missing++
			case now.Before(cur.Leaf.NotBefore) || now.After(cur.Leaf.NotAfter):
				res.invalid++
			default:
				res.minLeft = min(res.minLeft, cur.Leaf.NotAfter.Sub(now))
			}
		}
	}
	tick.Stop()
	stop()
	wg.Wait()
	res.ran = time.Since(start)
	admin, err := c.AdminClient()
	if err != nil {
		return nil, err
	}
	list, err := admin.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	res.csrs = len(list.Items)
	res.took = time.Since(began)
	return res, nil
}

// bootstrapNode bootstraps node i in its own directory and returns it with
// a Manager configured as `tlsboot run` configures the client
// certificate's: renewals authenticate with the current certificate,
// recovery re-bootstraps with a fresh key.
func bootstrapNode(ctx context.Context, c *testcluster.Cluster, root string, i int, hooks rotation.Hooks) (*liveNode, error) {
	nd := &liveNode{name: fmt.Sprintf("storm-%03d", i), dir: filepath.Join(root, fmt.Sprintf("node-%03d", i))}
	nd.kubeconfig = filepath.Join(nd.dir, "kubelet.conf")
	bopts := bootstrap.Options{
		KubeconfigPath:          nd.kubeconfig,
		BootstrapKubeconfigPath: c.BootstrapKubeconfig,
		CertDir:                 filepath.Join(nd.dir, "pki"),
		NodeName:                nd.name,
		InsecureWarned:          true,
	}
	if _, err := bootstrap.Run(ctx, bopts); err != nil {
		return nil, fmt.Errorf("node %s: %w", nd.name, err)
	}
	var err error
	if nd.store, err = certstore.Open(certstore.Options{Dir: bopts.CertDir, Prefix: bootstrap.DefaultCertPrefix}); err != nil {
		return nil, err
	}
	nd.m, err = rotation.New(rotation.Options{
		Name:     "client",
		Store:    nd.store,
		Template: func(pub crypto.PublicKey) csr.Request { return csr.NodeClient(nd.name, pub) },
		Client:   nd.client,
		Roots:    nd.roots,
		Recover: func(ctx context.Context) (time.Duration, error) {
			o := bopts
			o.Force, o.FreshKey = true, true
			r, err := bootstrap.Run(ctx, o)
			if err != nil {
				return 0, err
			}
			return r.Issuance, nil
		},
		Hooks: hooks,
	})
	return nd, err
}

// client authenticates with the store's current certificate, read into
// memory (with file paths client-go would start a reloading goroutine per
// client).
func (nd *liveNode) client(context.Context) (kubernetes.Interface, error) {
	cfg, err := kubeconfig.Load(nd.kubeconfig)
	if err != nil {
		return nil, err
	}
	pair, err := atomicfile.ReadFile(nd.store.CurrentPath())
	if err != nil {
		return nil, err
	}
	cfg.CertFile, cfg.KeyFile, cfg.CertData, cfg.KeyData = "", "", pair, pair
	cfg.UserAgent = "tlsboot-storm"
	return kubernetes.NewForConfig(cfg)
}

func (nd *liveNode) roots() (*x509.CertPool, error) {
	cfg, err := kubeconfig.Load(nd.kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubeconfig.CAPool(cfg)
}

func (r *liveResult) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Renewals on a real control plane: %d rotation.Managers, %s certificates\n\n", r.n, r.ttl)
	fmt.Fprintf(&b, "Command: `go run ./bench/storm -live -live-nodes %d -live-ttl %s -live-for %s -out BENCHMARKS.md` — one run, %s, %s; whole run %s.\n\n",
		r.n, r.ttl, r.asked, machine.Describe(), time.Now().UTC().Format("2006-01-02"), r.took.Round(time.Second))
	fmt.Fprintf(&b, "A local control plane (internal/testcluster, Kubernetes v1.37.2) whose kube-controller-manager signs with "+
		"`--cluster-signing-duration=%s`; its `csrapproving` controller approves (nodeclient for the bootstraps, selfnodeclient for the renewals; "+
		"tlsboot approver is not running). %d nodes, each a goroutine with its own key and certificate directory, bootstrap at the same moment "+
		"with `bootstrap.Run` (done %s after the start), then each runs a `rotation.Manager` configured as `tlsboot run` configures the client "+
		"certificate's (default Policy, real clock, real jitter source). Every second the benchmark reads every Manager's `Current()`.\n\n",
		r.ttl, r.n, r.bootstrapSpan.Round(time.Millisecond))
	b.WriteString("Renewals per minute since the bootstraps started:\n\n| minute | renewals | |\n|---|---|---|\n")
	minutes := int(r.ran/time.Minute) + 1
	counts := make([]int, minutes)
	for _, t := range r.renewals {
		counts[min(minutes-1, int(t/time.Minute))]++
	}
	for i, k := range counts {
		fmt.Fprintf(&b, "| %d–%d | %d | %s |\n", i, i+1, k, strings.Repeat("█", (k+1)/2))
	}
	secs := make([]float64, len(r.renewals))
	for i, t := range r.renewals {
		secs[i] = t.Seconds()
	}
	slices.Sort(secs)
	fmt.Fprintf(&b, "\n- renewals: %d (%s); peak in any 1 s: %d, in any 60 s: %d; p5–p95 of renewal times: %s\n",
		len(r.renewals), tally(r.renewalReasons), peakIn(secs, 1), peakIn(secs, 60), human(quantile(secs, 0.95)-quantile(secs, 0.05)))
	fmt.Fprintf(&b, "- failed renewal attempts: %s\n", tally(r.failures))
	fmt.Fprintf(&b, "- `Current()` samples: %d; without a certificate: %d; expired or not yet valid: %d; least validity left in any sample: %s\n",
		r.samples, r.missing, r.invalid, r.minLeft.Round(time.Second))
	fmt.Fprintf(&b, "- CSRs on the API server at the end: %d (%d bootstraps + renewals)\n", r.csrs, r.n)
	return b.String()
}

// tally lists m as "key count" pairs in order, or "none".
func tally[K ~string](m map[K]int) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
