package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/internal/testcluster"
)

const label = "bench.tlsboot.io/flood"

// request is the PEM request of flood f, padded to about size bytes.
func request(f string, size int) ([]byte, error) {
	key, err := csr.GenerateKey(csr.ECDSAP256)
	if err != nil {
		return nil, err
	}
	name := "system:node:flood"
	rdns := pkix.RDNSequence{
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "system:nodes"}},
		{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: name}},
	}
	if f == "ou" {
		// Each OU of 60 bytes costs 71 bytes of DER, 95 of PEM.
		for i := range (size - 600) * 3 / 4 / 71 {
			rdns = append(rdns, pkix.RelativeDistinguishedNameSET{{Type: asn1.ObjectIdentifier{2, 5, 4, 11}, Value: fmt.Sprintf("%060d", i)}})
		}
	}
	raw, err := asn1.Marshal(rdns)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: raw}, key)
	if err != nil {
		return nil, err
	}
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	switch f {
	case "ou", "normal":
		return block, nil
	case "text", "toolarge":
		if f == "toolarge" {
			size = 68 * 1000 // over approval.MaxRequestBytes: denied unread, before and after
		}
		const line = "explanatory text that pem.Decode skips before the block......\n"
		return append([]byte(strings.Repeat(line, (size-len(block))/len(line))), block...), nil
	}
	return nil, fmt.Errorf("unknown flood %q: want ou, text, normal or toolarge", f)
}

func fastClient(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 500, 1000
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	return kubernetes.NewForConfig(cfg)
}

// floodOnce runs one flood of n CSRs against the approver bin.
func floodOnce(ctx context.Context, c *testcluster.Cluster, bin string, req []byte, n int, id string) (result, error) {
	adminClient, err := fastClient(c.AdminKubeconfig)
	if err != nil {
		return result{}, err
	}
	boot, err := fastClient(c.BootstrapKubeconfig)
	if err != nil {
		return result{}, err
	}
	p, err := startApprover(ctx, bin, c, id)
	if err != nil {
		return result{}, err
	}
	defer p.stop()
	var res result
	if res.startRSS, err = peakRSS(p.cmd.Process.Pid); err != nil {
		return result{}, err
	}
	start := time.Now()
	if err := create(ctx, boot, req, n, id); err != nil {
		return result{}, err
	}
	if err := awaitSettled(ctx, adminClient, id, n, &res); err != nil {
		return result{}, err
	}
	res.took = time.Since(start)
	if res.peakRSS, err = peakRSS(p.cmd.Process.Pid); err != nil {
		return result{}, err
	}
	if res.events, err = countEvents(ctx, adminClient, id); err != nil {
		return result{}, err
	}
	p.stop()
	return res, cleanUp(ctx, adminClient, id)
}

// create makes n CSRs named <id>-<i> from client, 8 at a time.
func create(ctx context.Context, client kubernetes.Interface, req []byte, n int, id string) error {
	errs := make(chan error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			obj := &certificatesv1.CertificateSigningRequest{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%04d", id, i), Labels: map[string]string{label: id}},
				Spec: certificatesv1.CertificateSigningRequestSpec{Request: req, SignerName: certificatesv1.KubeAPIServerClientKubeletSignerName,
					Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}},
			}
			if _, err := client.CertificatesV1().CertificateSigningRequests().Create(ctx, obj, metav1.CreateOptions{}); err != nil {
				errs <- fmt.Errorf("creating CSR %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when closed and empty
}

// awaitSettled waits until each of the n CSRs is denied, or approved and
// signed, and counts the outcomes into res.
func awaitSettled(ctx context.Context, client kubernetes.Interface, id string, n int, res *result) error {
	return wait.PollUntilContextTimeout(ctx, 2*time.Second, 10*time.Minute, false, func(ctx context.Context) (bool, error) {
		approved, denied, reasons := 0, 0, map[string]int{}
		opts := metav1.ListOptions{LabelSelector: label + "=" + id, Limit: 250}
		for {
			list, err := client.CertificatesV1().CertificateSigningRequests().List(ctx, opts)
			if err != nil {
				return false, nil // the API server is busy: ask again
			}
			for _, obj := range list.Items {
				for _, cond := range obj.Status.Conditions {
					switch {
					case cond.Type == certificatesv1.CertificateDenied:
						denied++
						reasons[cond.Reason]++
					case cond.Type == certificatesv1.CertificateApproved && len(obj.Status.Certificate) > 0:
						approved++
					}
				}
			}
			if opts.Continue = list.Continue; opts.Continue == "" {
				break
			}
		}
		res.approved, res.denied, res.reasons = approved, denied, reasons
		return approved+denied >= n, nil
	})
}

// countEvents counts the Events about the CSRs of id.
func countEvents(ctx context.Context, client kubernetes.Interface, id string) (int, error) {
	// Events are written asynchronously: wait until the count is stable.
	last, n := -1, 0
	err := wait.PollUntilContextTimeout(ctx, 2*time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := client.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=CertificateSigningRequest"})
		if err != nil {
			return false, err
		}
		n = 0
		for _, e := range list.Items {
			if strings.HasPrefix(e.InvolvedObject.Name, id+"-") {
				n++
			}
		}
		stable := n == last
		last = n
		return stable, nil
	})
	return n, err
}

// cleanUp deletes the CSRs and Events of id and waits until the CSRs are gone.
func cleanUp(ctx context.Context, client kubernetes.Interface, id string) error {
	csrs := client.CertificatesV1().CertificateSigningRequests()
	if err := csrs.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: label + "=" + id}); err != nil {
		return err
	}
	if err := client.CoreV1().Events(metav1.NamespaceDefault).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := csrs.List(ctx, metav1.ListOptions{LabelSelector: label + "=" + id, Limit: 1})
		return err == nil && len(list.Items) == 0, nil
	})
}

// proc is a running `tlsboot approver`.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
}

func startApprover(ctx context.Context, bin string, c *testcluster.Cluster, id string) (*proc, error) {
	logPath := filepath.Join(c.Dir(), "approver-"+id+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "approver", "--kubeconfig", c.AdminKubeconfig, "--metrics-bind-address", "127.0.0.1:0", "--leader-elect=false")
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		select {
		case <-p.done:
			return false, errors.New("tlsboot approver exited: see " + logPath)
		default:
		}
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), `"Caches synced"`), nil
	})
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("waiting for tlsboot approver's caches: %w", err)
	}
	return p, nil
}

func (p *proc) stop() {
	p.once.Do(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// peakRSS is the process's peak resident set size (VmHWM).
func peakRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM in /proc/<pid>/status")
}
