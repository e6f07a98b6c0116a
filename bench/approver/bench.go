package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tlsboot/tlsboot/bench/internal/apimetrics"
	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/internal/testcluster"
)

// The CSRs of a burst, by name prefix. For every 100 good CSRs there are 2
// of each bad kind, spread through the burst.
const (
	good   = "good-"   // node client CSRs from the kubeadm bootstrap token: approve
	wrongO = "wrongo-" // O=system:masters: tlsboot denies, kube-controller-manager leaves alone
	noBind = "nobind-" // from a token without the nodeclient binding: leave alone
	other  = "other-"  // signer kubernetes.io/kube-apiserver-client: leave alone
)

// result is one run's measurements.
type result struct {
	n          int
	createAll  time.Duration // the burst of creates
	approveAll time.Duration // from the first create to the last approval seen
	requests   apimetrics.Counts
	events     int    // Events the approver recorded (core/v1 view)
	cpu        cpuUse // CPU-seconds from the first create to the end of the Events
	wrong      []string
	sar        string // the approver's own view of its permission checks
}

func (r result) rate() float64 { return float64(r.n) / r.approveAll.Seconds() }

func (r result) summary() string {
	return fmt.Sprintf("approved %d in %s (%.1f/s), burst created in %s, %.2f API requests per CSR, %d Events, CPU-s etcd %.1f apiserver %.1f approver %.1f, %d wrong decisions",
		r.n, r.approveAll.Round(time.Millisecond), r.rate(), r.createAll.Round(time.Millisecond), r.requests.Total()/float64(r.n), r.events,
		r.cpu.etcd, r.cpu.apiserver, r.cpu.approver, len(r.wrong))
}

// item is one CSR of the burst and who creates it.
type item struct {
	obj    *certificatesv1.CertificateSigningRequest
	client kubernetes.Interface
}

// setup is what a contender needs besides the cluster.
type setup struct {
	bin            string // the tlsboot binary
	workers        int    // tlsboot approver --workers
	ceilingWorkers int
	qps            int // --kube-api-qps of tlsboot-qps (burst: twice)
	qpsWorkers     int // --workers of tlsboot-qps
	inprocQPS      int // the same for the in-process approvers
	cpuProfile     string
}

func benchOnce(ctx context.Context, who contender, n int, s setup) (result, error) {
	controllers := []string{"csrcleaner"}
	if who == kcm {
		controllers = []string{"csrapproving", "csrcleaner"}
	}
	c, err := testcluster.Start(ctx, testcluster.Options{Controllers: controllers})
	if err != nil {
		return result{}, err
	}
	defer c.Stop()
	items, err := burst(ctx, c, n)
	if err != nil {
		return result{}, err
	}
	pids := controlPlanePIDs(c.Dir())
	meter := cpuMeter{etcd: pids["etcd"], apiserver: pids["kube-apiserver"]}
	var ap *approverProc
	switch who {
	case kcm:
		meter.approver = pids["kube-controller-manager"]
	case tlsboot, tlsbootQPS:
		workers, extra := s.workers, []string(nil)
		if who == tlsbootQPS {
			workers, extra = s.qpsWorkers, []string{"--kube-api-qps", strconv.Itoa(s.qps), "--kube-api-burst", strconv.Itoa(2 * s.qps)}
		}
		if ap, err = startApprover(ctx, s.bin, c, workers, extra...); err != nil {
			return result{}, err
		}
		defer ap.stop()
		meter.approver = ap.cmd.Process.Pid
	case ceiling, ceilingPatch:
		a, err := startCeiling(ctx, c, s.ceilingWorkers, who == ceilingPatch)
		if err != nil {
			return result{}, err
		}
		defer a.stop()
		meter.approver = os.Getpid()
	default:
		p, err := startInProcess(ctx, c, who, s)
		if err != nil {
			return result{}, err
		}
		defer p.stop()
		meter.approver = os.Getpid()
		if s.cpuProfile != "" {
			f, err := os.Create(s.cpuProfile + "." + string(who))
			if err != nil {
				return result{}, err
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return result{}, err
			}
			defer pprof.StopCPUProfile()
		}
	}
	r, err := measure(ctx, c, who, n, items, meter)
	if err != nil {
		return result{}, err
	}
	if ap != nil {
		r.sar = ap.sarCounts(ctx)
	}
	return r, nil
}

func measure(ctx context.Context, c *testcluster.Cluster, who contender, n int, items []item, meter cpuMeter) (result, error) {
	adminClient, err := c.AdminClient()
	if err != nil {
		return result{}, err
	}
	wantDenied := 0
	if who.decides() {
		wantDenied = countPrefix(items, wrongO)
	}
	tr, err := track(ctx, adminClient, n, wantDenied)
	if err != nil {
		return result{}, err
	}
	defer tr.stop()
	before, err := apimetrics.Scrape(ctx, adminClient)
	if err != nil {
		return result{}, err
	}
	cpuBefore := meter.sample()
	start := time.Now()
	if err := createAll(ctx, items); err != nil {
		return result{}, err
	}
	r := result{n: n, createAll: time.Since(start)}
	timeout := 2 * time.Minute
	if who == kcm {
		timeout = 10 * time.Minute // about 10 approvals per second
	}
	if err := tr.wait(ctx, timeout); err != nil {
		return result{}, err
	}
	r.approveAll = tr.last.Sub(start)
	// Events are written asynchronously after each decision; count
	// them in the requests, as they are part of the approver's cost.
	want, lossy := who.eventsWanted(n, wantDenied)
	r.events = waitEvents(ctx, adminClient, want, lossy)
	r.cpu = meter.sample().sub(cpuBefore)
	after, err := apimetrics.Scrape(ctx, adminClient)
	if err != nil {
		return result{}, err
	}
	r.requests = after.Sub(before)
	delete(r.requests, "LIST events") // waitEvents' own polling
	if r.wrong, err = check(ctx, adminClient, who); err != nil {
		return result{}, err
	}
	return r, nil
}

// burst prepares the CSRs: n good ones and the bad ones, interleaved.
func burst(ctx context.Context, c *testcluster.Cluster, n int) ([]item, error) {
	boot, err := fastClient(c.BootstrapKubeconfig)
	if err != nil {
		return nil, err
	}
	noBindClient, err := tokenWithoutBinding(ctx, c)
	if err != nil {
		return nil, err
	}
	adminClient, err := fastClient(c.AdminKubeconfig)
	if err != nil {
		return nil, err
	}
	var items []item
	for i := range n {
		it, err := newItem(good, i, certificatesv1.KubeAPIServerClientKubeletSignerName, []string{"system:nodes"}, boot)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
		if i%50 != 0 {
			continue
		}
		for _, bad := range []struct {
			prefix, signer string
			org            []string
			client         kubernetes.Interface
		}{
			{wrongO, certificatesv1.KubeAPIServerClientKubeletSignerName, []string{"system:masters"}, boot},
			{noBind, certificatesv1.KubeAPIServerClientKubeletSignerName, []string{"system:nodes"}, noBindClient},
			{other, certificatesv1.KubeAPIServerClientSignerName, []string{"system:nodes"}, adminClient},
		} {
			it, err := newItem(bad.prefix, i, bad.signer, bad.org, bad.client)
			if err != nil {
				return nil, err
			}
			items = append(items, it)
		}
	}
	return items, nil
}

func newItem(prefix string, i int, signer string, org []string, client kubernetes.Interface) (item, error) {
	key, err := csr.GenerateKey(csr.ECDSAP256)
	if err != nil {
		return item{}, err
	}
	node := fmt.Sprintf("bench-%s%d", prefix, i)
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:" + node, Organization: org}}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return item{}, err
	}
	obj := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s%d", prefix, i)},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: signer,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
		},
	}
	return item{obj: obj, client: client}, nil
}

// fastClient is a client with a rate limit high enough not to be the
// bottleneck of the burst.
func fastClient(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 2000, 4000
	return kubernetes.NewForConfig(cfg)
}

// tokenWithoutBinding returns a client for a bootstrap token whose group
// may create CSRs but has no nodeclient binding.
func tokenWithoutBinding(ctx context.Context, c *testcluster.Cluster) (kubernetes.Interface, error) {
	const group = "system:bootstrappers:bench-no-autoapprove"
	adminClient, err := c.AdminClient()
	if err != nil {
		return nil, err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "bench:no-autoapprove"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node-bootstrapper"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: group}},
	}
	if _, err := adminClient.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	tok, err := c.CreateToken(ctx, testcluster.TokenOptions{Groups: []string{group}})
	if err != nil {
		return nil, err
	}
	path := c.Dir() + "/nobind.kubeconfig"
	if err := c.WriteBootstrapKubeconfig(path, tok); err != nil {
		return nil, err
	}
	return fastClient(path)
}

// createAll creates the items concurrently, 32 at a time.
func createAll(ctx context.Context, items []item) error {
	work := make(chan item)
	errs := make(chan error, len(items))
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for it := range work {
				if _, err := it.client.CertificatesV1().CertificateSigningRequests().Create(ctx, it.obj, metav1.CreateOptions{}); err != nil {
					errs <- fmt.Errorf("creating CSR %s: %w", it.obj.Name, err)
				}
			}
		})
	}
	for _, it := range items {
		work <- it
	}
	close(work)
	wg.Wait()
	close(errs)
	return <-errs // nil when closed and empty
}

func countPrefix(items []item, prefix string) int {
	n := 0
	for _, it := range items {
		if strings.HasPrefix(it.obj.Name, prefix) {
			n++
		}
	}
	return n
}
