// Command demo shows tlsboot's journey end to end on a real local control
// plane: it starts etcd, kube-apiserver and kube-controller-manager (signing
// certificates and bootstrap tokens, but not approving), runs `tlsboot setup`,
// starts `tlsboot approver`, creates a token bound to one node with
// `tlsboot token create --node-name ... --print-join-command`, runs that join
// command on a fresh node directory, shows what the node got, its identity,
// its CSR and the approval, shows that the same token cannot become another
// node, then stops everything. Run it with `make demo`.
//
// The token's secret is redacted from everything the demo prints; tlsboot
// itself prints it once, on purpose, in the join command.
package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tlsboot/tlsboot/internal/testcluster"
	"github.com/tlsboot/tlsboot/token"
)

func main() {
	tlsboot := flag.String("tlsboot", "bin/tlsboot", "path of the tlsboot binary")
	node := flag.String("node-name", "demo-node", "name of the demo node")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	began := time.Now()
	if err := run(ctx, *tlsboot, *node); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	fmt.Printf("\nDone in %v, everything stopped.\n", time.Since(began).Round(100*time.Millisecond))
}

func run(ctx context.Context, tlsboot, node string) error {
	began := time.Now()
	step("Starting a local control plane: etcd, kube-apiserver and kube-controller-manager " + testcluster.Version)
	// kube-controller-manager as kubeadm runs it, but without csrapproving:
	// tlsboot approver is the only approver, which a token's node binding
	// needs.
	c, err := testcluster.Start(ctx, testcluster.Options{Controllers: []string{"csrsigning", "csrcleaner", "bootstrapsigner", "tokencleaner"}})
	if err != nil {
		return err
	}
	defer func() {
		step("Stopping the control plane")
		c.Stop()
	}()
	fmt.Printf("  API server %s ready in %v; kube-controller-manager signs, but does not approve\n", c.URL(), time.Since(began).Round(time.Millisecond))
	admin := c.AdminKubeconfig

	step("The cluster admin prepares the cluster for joining nodes")
	show("tlsboot", "setup", "--kubeconfig", "admin.kubeconfig")
	if _, err := tlsbootRun(ctx, tlsboot, nil, "setup", "--kubeconfig", admin); err != nil {
		return err
	}

	step("tlsboot approver decides the cluster's node CSRs (here with the admin's kubeconfig; see deploy/approver for its own)")
	show("tlsboot", "approver", "--kubeconfig", "admin.kubeconfig", "--leader-elect=false", "--metrics-bind-address", "127.0.0.1:0")
	approver, err := startApprover(ctx, tlsboot, admin)
	if err != nil {
		return err
	}
	defer func() {
		step("Stopping tlsboot approver")
		approver.stop()
	}()
	fmt.Println("  (running: caches synced)")

	step("The admin creates a token bound to node " + node + " and its join command")
	show("tlsboot", "token", "create", "--kubeconfig", "admin.kubeconfig", "--node-name", node, "--print-join-command")
	var out bytes.Buffer
	if _, err := tlsbootRun(ctx, tlsboot, &out, "token", "create", "--kubeconfig", admin, "--node-name", node, "--print-join-command"); err != nil {
		return err
	}
	join := strings.Fields(out.String())
	if len(join) < 5 || join[0] != "tlsboot" || join[1] != "join" || join[3] != "--token" {
		return fmt.Errorf("token create printed %q, not a join command", redactAll(out.String()))
	}
	tok, err := token.Parse(join[4])
	if err != nil {
		return fmt.Errorf("the join command's token: %w", err)
	}
	redact := func(s string) string { return strings.ReplaceAll(s, tok.Secret, "<secret>") }
	fmt.Printf("  | %s\n", redact(strings.Join(join, " ")))
	fmt.Println("  (tlsboot prints the whole token here, on purpose: it is the one place it does; this demo redacts it)")

	dir, err := os.MkdirTemp("", "tlsboot-demo-node-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	kubeconfig, certDir := filepath.Join(dir, "kubelet.conf"), filepath.Join(dir, "pki")
	nodeFlags := func(d string) []string {
		return []string{"--bootstrap-kubeconfig", filepath.Join(d, "bootstrap-kubelet.conf"), "--kubeconfig", filepath.Join(d, "kubelet.conf"), "--cert-dir", filepath.Join(d, "pki")}
	}
	args := append(append([]string(nil), join[1:]...), nodeFlags(dir)...)

	step("On the node: the printed command, with where to write")
	fmt.Printf("  $ %s\n", redact("tlsboot "+strings.Join(args, " ")))
	took, err := tlsbootRun(ctx, tlsboot, nil, args...)
	if err != nil {
		return err
	}
	fmt.Printf("  (took %v: discovery of the cluster with the CA pin, then the CSR, approved and signed)\n", took.Round(time.Millisecond))

	step("What the node has now")
	if err := showFiles(dir); err != nil {
		return err
	}
	if err := showCertificate(filepath.Join(certDir, "kubelet-client-current.pem")); err != nil {
		return err
	}

	step("Its kubeconfig works: who am I?")
	if err := whoami(ctx, kubeconfig); err != nil {
		return err
	}

	step("Its CSR, and who approved it why")
	if err := showCSRs(ctx, admin, tok.ID); err != nil {
		return err
	}

	step("The same token cannot become another node")
	other, err := os.MkdirTemp("", "tlsboot-demo-other-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(other)
	args = append(append(append([]string(nil), join[1:7]...), nodeFlags(other)...), "--node-name", node+"-2")
	fmt.Printf("  $ %s\n", redact("tlsboot "+strings.Join(args, " ")))
	if _, err := tlsbootRun(ctx, tlsboot, nil, args...); err == nil {
		return errors.New("the bound token became another node")
	}
	fmt.Println("  (refused, as it should be: exit status 1)")

	return nil
}

func step(s string) { fmt.Printf("\n==> %s\n", s) }

// show prints a command as the demo runs it (paths shortened).
func show(args ...string) { fmt.Printf("  $ %s\n", strings.Join(args, " ")) }

// tlsbootRun runs tlsboot with args, its output indented on stdout, or its
// stdout into out when not nil. Its output never holds a token's secret
// except with out (token create), which the caller redacts.
func tlsbootRun(ctx context.Context, bin string, out *bytes.Buffer, args ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = indent{os.Stdout}, indent{os.Stdout}
	if out != nil {
		cmd.Stdout = out
	}
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("tlsboot %s: %w", args[0], err)
	}
	return time.Since(start), nil
}

// redactAll hides anything shaped like a bootstrap token's secret.
func redactAll(s string) string {
	f := strings.Fields(s)
	for i, w := range f {
		if t, err := token.Parse(w); err == nil {
			f[i] = t.String()
		}
	}
	return strings.Join(f, " ")
}

// indent prefixes each written chunk's lines so tlsboot's output stands out.
type indent struct{ w *os.File }

func (i indent) Write(p []byte) (int, error) {
	s := strings.TrimRight(string(p), "\n")
	fmt.Fprintf(i.w, "  | %s\n", strings.ReplaceAll(s, "\n", "\n  | "))
	return len(p), nil
}

// approverProc is a running tlsboot approver.
type approverProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startApprover starts tlsboot approver and returns once its caches have
// synced (it logs "Caches synced"), or with an error if it exits first.
func startApprover(ctx context.Context, bin, kubeconfig string) (*approverProc, error) {
	cmd := exec.CommandContext(ctx, bin, "approver", "--kubeconfig", kubeconfig, "--leader-elect=false", "--metrics-bind-address", "127.0.0.1:0")
	synced := &watchWriter{want: []byte(`"Caches synced"`), found: make(chan struct{})}
	cmd.Stderr = synced
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting tlsboot approver: %w", err)
	}
	p := &approverProc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	select {
	case <-synced.found:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("tlsboot approver exited: %s", lastLine(synced.String()))
	case <-time.After(time.Minute):
		p.stop()
		return nil, errors.New("tlsboot approver did not sync its caches within a minute")
	}
}

// stop sends SIGTERM and waits, killing it after 10 s.
func (p *approverProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// watchWriter keeps what is written and closes found once want appears.
type watchWriter struct {
	want  []byte
	found chan struct{}

	mu   sync.Mutex // guards buf, seen
	buf  bytes.Buffer
	seen bool
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.seen && bytes.Contains(w.buf.Bytes(), w.want) {
		w.seen = true
		close(w.found)
	}
	return len(p), nil
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
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

func clientFor(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

func whoami(ctx context.Context, kubeconfig string) error {
	client, err := clientFor(kubeconfig)
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

// showCSRs prints the client CSRs made by the token tokenID: requester,
// groups (with the binding), and each condition.
func showCSRs(ctx context.Context, admin, tokenID string) error {
	client, err := clientFor(admin)
	if err != nil {
		return err
	}
	list, err := client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, csr := range list.Items {
		if csr.Spec.Username != "system:bootstrap:"+tokenID || csr.Spec.SignerName != certificatesv1.KubeAPIServerClientKubeletSignerName {
			continue
		}
		fmt.Printf("  %s\n    requester %s, groups %v\n    signer %s, certificate issued: %v\n",
			csr.Name, csr.Spec.Username, csr.Spec.Groups, csr.Spec.SignerName, len(csr.Status.Certificate) > 0)
		for _, c := range csr.Status.Conditions {
			fmt.Printf("    %s (%s): %s\n", c.Type, c.Reason, c.Message)
		}
	}
	return nil
}
