// Command join measures the time from join to a usable node kubeconfig on
// one local control plane, interleaved in the same run:
//
//   - tlsboot: the real 'tlsboot join' binary (discovery, then bootstrap);
//   - kubeadm: kubeadm's own token discovery (the kubeadm-discovery peer,
//     'kubeadm join's validation and discovery.For, writing the bootstrap
//     kubeconfig as kubeadm does), then the kubelet's own bootstrap code
//     (the kubelet-bootstrap peer, LoadClientCert) on the bootstrap
//     kubeconfig that discovery wrote.
//
// Both peers are built by 'make controlplane' from Kubernetes v1.37.2.
// kube-controller-manager's csrapproving approves both, and csrsigning
// signs. Every run is a fresh node directory and a fresh token, signed by
// bootstrapsigner before the clock starts.
//
//	go run ./bench/join -n 41 -out BENCHMARKS.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/tlsboot/tlsboot/bench/internal/mdsection"
	"github.com/tlsboot/tlsboot/discovery"
	"github.com/tlsboot/tlsboot/internal/testcluster"
)

// sample is one join by one contender.
type sample struct {
	total     time.Duration // from the start of join to its usable kubeconfig
	discovery time.Duration // kubeadm: the kubeadm-discovery process; tlsboot: not measured apart
}

// contender joins node name in dir with token tok and returns its timings.
type contender struct {
	name string
	join func(ctx context.Context, dir, name, tok string) (sample, error)
}

func main() {
	n := flag.Int("n", 21, "runs of each contender (after one discarded warm-up run each)")
	out := flag.String("out", "", "update this markdown file's join section (default: print only)")
	tlsboot := flag.String("tlsboot", "bin/tlsboot", "tlsboot binary")
	note := flag.String("note", "", "a sentence for the report about the machine during the run, e.g. other work on the same cores")
	flag.Parse()
	if err := run(context.Background(), *n, *tlsboot, *out, *note); err != nil {
		fmt.Fprintln(os.Stderr, "bench/join:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n int, tlsboot, out, note string) error {
	if n < 1 {
		return errors.New("-n must be at least 1")
	}
	if _, err := os.Stat(tlsboot); err != nil {
		return fmt.Errorf("tlsboot binary %s: %w (run 'make build')", tlsboot, err)
	}
	c, err := testcluster.Start(ctx, testcluster.Options{})
	if err != nil {
		return err
	}
	defer c.Stop()
	discoveryBin, bootstrapBin := filepath.Join(c.BinDir(), "kubeadm-discovery"), filepath.Join(c.BinDir(), "kubelet-bootstrap")
	for _, p := range []string{discoveryBin, bootstrapBin} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s not found: run 'make controlplane'", p)
		}
	}
	if out, err := exec.CommandContext(ctx, tlsboot, "setup", "--kubeconfig", c.AdminKubeconfig, "--signer-wait", "1m").CombinedOutput(); err != nil {
		return fmt.Errorf("tlsboot setup: %v: %s", err, out)
	}
	pin, err := caPin(c.CAFile())
	if err != nil {
		return err
	}
	admin, err := c.AdminClient()
	if err != nil {
		return err
	}
	server := c.URL()
	contenders := []contender{
		{"tlsboot", func(ctx context.Context, dir, name, tok string) (sample, error) {
			start := time.Now()
			err := runQuiet(ctx, tlsboot, "join", server, "--token", tok, "--discovery-token-ca-cert-hash", pin,
				"--bootstrap-kubeconfig", filepath.Join(dir, "bootstrap-kubelet.conf"),
				"--kubeconfig", filepath.Join(dir, "kubelet.conf"), "--cert-dir", filepath.Join(dir, "pki"), "--node-name", name)
			return sample{total: time.Since(start)}, err
		}},
		{"kubeadm", func(ctx context.Context, dir, name, tok string) (sample, error) {
			boot := filepath.Join(dir, "bootstrap-kubelet.conf")
			start := time.Now()
			if err := runQuiet(ctx, discoveryBin, "--server", server, "--token", tok, "--discovery-token-ca-cert-hash", pin, "--bootstrap-kubeconfig", boot); err != nil {
				return sample{}, err
			}
			disc := time.Since(start)
			err := runQuiet(ctx, bootstrapBin, "--bootstrap-kubeconfig", boot,
				"--kubeconfig", filepath.Join(dir, "kubelet.conf"), "--cert-dir", filepath.Join(dir, "pki"), "--node-name", name)
			return sample{total: time.Since(start), discovery: disc}, err
		}},
	}
	dir, err := os.MkdirTemp("", "tlsboot-bench-join-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	load0 := loadavg()
	samples := map[string][]sample{}
	for i := range n + 1 { // run 0 warms up caches and is discarded
		order := contenders
		if i%2 == 1 { // alternate who goes first
			order = []contender{contenders[1], contenders[0]}
		}
		for _, ct := range order {
			name := fmt.Sprintf("bench-join-%s-%d", ct.name, i)
			nodeDir := filepath.Join(dir, name)
			if err := os.Mkdir(nodeDir, 0o700); err != nil {
				return err
			}
			tok, err := freshToken(ctx, c, admin)
			if err != nil {
				return err
			}
			s, err := ct.join(ctx, nodeDir, name, tok)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", ct.name, i, err)
			}
			if err := usable(ctx, filepath.Join(nodeDir, "kubelet.conf"), name); err != nil {
				return fmt.Errorf("%s run %d: %w", ct.name, i, err)
			}
			if i > 0 {
				samples[ct.name] = append(samples[ct.name], s)
			}
		}
	}
	report := render(n, samples, note, load0, loadavg())
	fmt.Print(report)
	if out != "" {
		return mdsection.Update(out, "bench/join", report)
	}
	return nil
}

// freshToken creates a bootstrap token and waits until bootstrapsigner has
// signed cluster-info with it, so that neither contender waits for the
// signature (kubeadm would poll every 5 s, tlsboot backs off from 0.5 s).
func freshToken(ctx context.Context, c *testcluster.Cluster, admin kubernetes.Interface) (string, error) {
	tok, err := c.CreateToken(ctx, testcluster.TokenOptions{TTL: time.Hour})
	if err != nil {
		return "", err
	}
	id, _, _ := strings.Cut(tok, ".")
	deadline := time.Now().Add(time.Minute)
	for {
		cm, err := admin.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
		if err == nil && cm.Data[bootstrapapi.JWSSignatureKeyPrefix+id] != "" {
			return tok, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("cluster-info not signed for token %s within a minute (last error: %v)", id, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// usable checks, outside the timing, that kubeconfig authenticates as the
// node.
func usable(ctx context.Context, kubeconfig, node string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	r, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("the node kubeconfig %s does not work: %w", kubeconfig, err)
	}
	if got := r.Status.UserInfo.Username; got != "system:node:"+node {
		return fmt.Errorf("the node kubeconfig %s authenticates as %q", kubeconfig, got)
	}
	return nil
}

func caPin(caFile string) (string, error) {
	certs, err := certutil.CertsFromFile(caFile)
	if err != nil {
		return "", err
	}
	return string(discovery.PinOf(certs[0])), nil
}

// runQuiet runs a program; a failure comes back with its stderr.
func runQuiet(ctx context.Context, bin string, args ...string) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", filepath.Base(bin), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// loadavg is the 1-minute load average, or "?".
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}
