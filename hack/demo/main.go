// Command demo shows tlsboot's main job end to end on a real local control
// plane: it starts etcd, kube-apiserver and kube-controller-manager, gives a
// node a bootstrap token, runs `tlsboot bootstrap`, shows what the node got
// and that its new kubeconfig works, then stops everything. Run it with
// `make demo`.
package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tlsboot/tlsboot/internal/testcluster"
)

func main() {
	tlsboot := flag.String("tlsboot", "bin/tlsboot", "path of the tlsboot binary")
	node := flag.String("node-name", "demo-node-1", "name of the demo node")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *tlsboot, *node); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, tlsboot, node string) error {
	step("Starting a local control plane: etcd, kube-apiserver and kube-controller-manager " + testcluster.Version)
	started := time.Now()
	c, err := testcluster.Start(ctx, testcluster.Options{})
	if err != nil {
		return err
	}
	defer func() {
		step("Stopping the control plane")
		c.Stop()
	}()
	id, _, _ := strings.Cut(c.Token, ".")
	fmt.Printf("  API server %s ready in %v\n", c.URL(), time.Since(started).Round(time.Millisecond))
	fmt.Printf("  bootstrap token %s.<secret> in group %s, with kubeadm's RBAC bindings\n", id, testcluster.DefaultTokenGroup)

	dir, err := os.MkdirTemp("", "tlsboot-demo-node-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	kubeconfig, certDir := filepath.Join(dir, "kubelet.conf"), filepath.Join(dir, "pki")
	args := []string{"bootstrap", "--bootstrap-kubeconfig", c.BootstrapKubeconfig, "--kubeconfig", kubeconfig, "--cert-dir", certDir, "--node-name", node}

	step("Node " + node + " bootstraps its identity")
	fmt.Printf("  $ tlsboot %s\n", strings.Join(args, " "))
	took, err := tlsbootRun(ctx, tlsboot, args)
	if err != nil {
		return err
	}
	fmt.Printf("  (took %v)\n", took.Round(time.Millisecond))

	step("What the node has now")
	if err := showFiles(dir); err != nil {
		return err
	}
	if err := showCertificate(filepath.Join(certDir, "kubelet-client-current.pem")); err != nil {
		return err
	}

	step("tlsboot status explains it, from the files alone")
	fmt.Printf("  $ tlsboot status --cert-dir %s --kubeconfig %s\n", certDir, kubeconfig)
	if _, err := tlsbootRun(ctx, tlsboot, []string{"status", "--cert-dir", certDir, "--kubeconfig", kubeconfig}); err != nil {
		return err
	}

	step("The new kubeconfig works: who am I?")
	if err := whoami(ctx, kubeconfig); err != nil {
		return err
	}

	step("Running it again is a no-op")
	fmt.Printf("  $ tlsboot bootstrap ... (same flags)\n")
	if _, err := tlsbootRun(ctx, tlsboot, args); err != nil {
		return err
	}
	return nil
}

func step(s string) { fmt.Printf("\n==> %s\n", s) }

func tlsbootRun(ctx context.Context, bin string, args []string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = indent{os.Stdout}, indent{os.Stdout}
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("tlsboot %s: %w", args[0], err)
	}
	return time.Since(start), nil
}

// indent prefixes each written chunk's lines so tlsboot's output stands out.
type indent struct{ w *os.File }

func (i indent) Write(p []byte) (int, error) {
	s := strings.TrimRight(string(p), "\n")
	fmt.Fprintf(i.w, "  | %s\n", strings.ReplaceAll(s, "\n", "\n  | "))
	return len(p), nil
}

func showFiles(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		extra := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(path)
			extra = " -> " + filepath.Base(target)
		}
		fmt.Printf("  %s  %-45s%s\n", fi.Mode(), rel, extra)
		return nil
	})
}

func showCertificate(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return fmt.Errorf("%s holds no PEM", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return err
	}
	fmt.Printf("  certificate: subject %s, issuer %s\n", cert.Subject, cert.Issuer)
	fmt.Printf("               valid %s .. %s (%v left), key %s\n", cert.NotBefore.UTC().Format(time.RFC3339),
		cert.NotAfter.UTC().Format(time.RFC3339), time.Until(cert.NotAfter).Round(time.Minute), cert.PublicKeyAlgorithm)
	return nil
}

func whoami(ctx context.Context, kubeconfig string) error {
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
		return fmt.Errorf("using the new kubeconfig: %w", err)
	}
	fmt.Printf("  username %s, groups %v\n", r.Status.UserInfo.Username, r.Status.UserInfo.Groups)
	return nil
}
