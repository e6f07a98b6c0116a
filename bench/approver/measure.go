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
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/tlsboot/tlsboot/internal/testcluster"
)

// tracker watches CSRs through an informer (which watches again if the API
// server ends a watch) and notes when the good ones are approved and the
// wrong-O ones denied.
type tracker struct {
	cancel                 context.CancelFunc
	wantApproved, wantDeny int
	done                   chan struct{}

	mu       sync.Mutex // guards approved, denied, last, closed
	approved map[string]bool
	denied   map[string]bool
	last     time.Time // the last approval of a good CSR seen
	closed   bool
}

func track(ctx context.Context, client kubernetes.Interface, wantApproved, wantDenied int) (*tracker, error) {
	ctx, cancel := context.WithCancel(ctx)
	t := &tracker{cancel: cancel, wantApproved: wantApproved, wantDeny: wantDenied, done: make(chan struct{}),
		approved: map[string]bool{}, denied: map[string]bool{}}
	inf := informers.NewSharedInformerFactory(client, 0).Certificates().V1().CertificateSigningRequests().Informer()
	observe := func(obj any) {
		if csr, ok := obj.(*certificatesv1.CertificateSigningRequest); ok {
			t.observe(csr)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: observe, UpdateFunc: func(_, obj any) { observe(obj) }}); err != nil {
		cancel()
		return nil, err
	}
	go inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		cancel()
		return nil, errors.New("watching CSRs: the informer did not sync")
	}
	return t, nil
}

// observe records obj's decision and closes done once everything awaited happened.
func (t *tracker) observe(obj *certificatesv1.CertificateSigningRequest) {
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
	if !t.closed && len(t.approved) == t.wantApproved && len(t.denied) >= t.wantDeny {
		close(t.done)
		t.closed = true
	}
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

func (t *tracker) stop() { t.cancel() }

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
		case strings.HasPrefix(obj.Name, wrongO) && who.decides():
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

func startApprover(ctx context.Context, bin string, c *testcluster.Cluster, workers int, extra ...string) (*approverProc, error) {
	logPath := filepath.Join(c.Dir(), "approver.log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := []string{"approver", "--kubeconfig", c.AdminKubeconfig, "--metrics-bind-address", "127.0.0.1:0",
		"--leader-elect-namespace", "kube-system"}
	if workers > 0 {
		args = append(args, "--workers", strconv.Itoa(workers))
	}
	args = append(args, extra...)
	cmd := exec.Command(bin, args...)
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
// Events, and returns how many it recorded. When lossy (client-go's
// broadcasters drop Events under a burst), it stops once the count has not
// grown for 3 s. With want 0 it checks once that there are none.
func waitEvents(ctx context.Context, client kubernetes.Interface, want int, lossy bool) int {
	n, same := -1, 0
	wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := countEvents(ctx, client)
		if err != nil {
			return false, nil
		}
		if got == n {
			same++
		} else {
			n, same = got, 0
		}
		return n >= want || (lossy && same >= 12), nil
	})
	return max(n, 0)
}

// countEvents counts the approver's Events, whichever API wrote them.
func countEvents(ctx context.Context, client kubernetes.Interface) (int, error) {
	list, err := client.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range list.Items {
		if e.Source.Component == "tlsboot-approver" || e.ReportingController == "tlsboot-approver" {
			n++
		}
	}
	return n, nil
}
