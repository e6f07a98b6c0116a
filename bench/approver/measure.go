package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/tlsboot/tlsboot/internal/testcluster"
)

// tracker watches CSRs and notes when the good ones are approved and the
// wrong-O ones denied.
type tracker struct {
	w                      watch.Interface
	wantApproved, wantDeny int
	done                   chan struct{}

	mu       sync.Mutex // guards approved, denied, last
	approved map[string]bool
	denied   map[string]bool
	last     time.Time // the last approval of a good CSR seen
}

func track(ctx context.Context, client kubernetes.Interface, wantApproved, wantDenied int) (*tracker, error) {
	w, err := client.CertificatesV1().CertificateSigningRequests().Watch(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("watching CSRs: %w", err)
	}
	t := &tracker{w: w, wantApproved: wantApproved, wantDeny: wantDenied, done: make(chan struct{}),
		approved: map[string]bool{}, denied: map[string]bool{}}
	go t.loop()
	return t, nil
}

func (t *tracker) loop() {
	closed := false
	for ev := range t.w.ResultChan() {
		obj, ok := ev.Object.(*certificatesv1.CertificateSigningRequest)
		if !ok {
			continue
		}
		if t.observe(obj) && !closed {
			close(t.done)
			closed = true
		}
	}
}

// observe records obj's decision and reports whether everything awaited happened.
func (t *tracker) observe(obj *certificatesv1.CertificateSigningRequest) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range obj.Status.Conditions {
		switch {
		case c.Type == certificatesv1.CertificateApproved && strings.HasPrefix(obj.Name, good) && !t.approved[obj.Name]:
			t.approved[obj.Name] = true
			t.last = time.Now()
		case c.Type == certificatesv1.CertificateDenied && strings.HasPrefix(obj.Name, wrongO):
			t.denied[obj.Name] = true
		}
	}
	return len(t.approved) == t.wantApproved && len(t.denied) >= t.wantDeny
}

func (t *tracker) wait(ctx context.Context, timeout time.Duration) error {
	select {
	case <-t.done:
		return nil
	case <-time.After(timeout):
		t.mu.Lock()
		defer t.mu.Unlock()
		return fmt.Errorf("after %s only %d of %d CSRs approved and %d of %d denied", timeout, len(t.approved), t.wantApproved, len(t.denied), t.wantDeny)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t *tracker) stop() { t.w.Stop() }

// check lists every CSR and returns those whose state is not what it must be.
func check(ctx context.Context, client kubernetes.Interface, who contender) ([]string, error) {
	list, err := client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var wrong []string
	for _, obj := range list.Items {
		want := "none"
		switch {
		case strings.HasPrefix(obj.Name, good):
			want = "Approved"
		case strings.HasPrefix(obj.Name, wrongO) && who == "tlsboot":
			want = "Denied"
		}
		got := "none"
		if len(obj.Status.Conditions) > 0 {
			got = string(obj.Status.Conditions[0].Type)
		}
		if got != want || len(obj.Status.Conditions) > 1 {
			wrong = append(wrong, fmt.Sprintf("%s: %s, want %s", obj.Name, got, want))
		}
	}
	return wrong, nil
}

// approverProc is a running `tlsboot approver`.
type approverProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startApprover(ctx context.Context, bin string, c *testcluster.Cluster, workers int) (*approverProc, error) {
	logPath := filepath.Join(c.Dir(), "approver.log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "approver", "--kubeconfig", c.AdminKubeconfig, "--metrics-bind-address", "127.0.0.1:0",
		"--workers", strconv.Itoa(workers), "--leader-elect-namespace", "kube-system")
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &approverProc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		select {
		case <-p.done:
			return false, errors.New("tlsboot approver exited: see " + logPath)
		default:
		}
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), `"Became the leader`), nil
	})
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("waiting for tlsboot approver to lead: %w", err)
	}
	return p, nil
}

func (p *approverProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

var addrRE = regexp.MustCompile(`"Serving metrics and health" address="([^"]+)"`)

// sarCounts reads the approver's own permission-check counters.
func (p *approverProc) sarCounts(ctx context.Context) string {
	b, _ := os.ReadFile(p.log)
	m := addrRE.FindSubmatch(b)
	if m == nil {
		return "?"
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+string(m[1])+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "?"
	}
	defer resp.Body.Close()
	var parts []string
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 10<<20))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "tlsboot_approver_subject_access_review") {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// waitEvents waits (up to a minute) until the approver has recorded want
// Events; the broadcaster may drop some under a burst, so it does not fail.
func waitEvents(ctx context.Context, client kubernetes.Interface, want int) {
	wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := client.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		n := 0
		for _, e := range list.Items {
			if e.Source.Component == "tlsboot-approver" {
				n++
			}
		}
		return n >= want, nil
	})
}
