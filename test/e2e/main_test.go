// Package e2e runs the built tlsboot binary against real local control
// planes (internal/testcluster): real bootstrap tokens, RBAC, CSR approval
// and signing. Nothing here is faked.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tlsboot/tlsboot/internal/testbin"
	"github.com/tlsboot/tlsboot/internal/testcluster"
)

var (
	tlsbootBin string // the binary under test
	peerBin    string // the kubelet's own bootstrap code (hack/controlplane)

	clustersMu sync.Mutex // guards clusters
	clusters   = map[string]*testcluster.Cluster{}
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		bin, cleanup, err := testbin.Build()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cleanup()
		tlsbootBin = bin
		code := m.Run()
		clustersMu.Lock()
		defer clustersMu.Unlock()
		for name, c := range clusters {
			if code != 0 {
				fmt.Fprintf(os.Stderr, "control plane %q logs:%s\n", name, c.Logs(40))
			}
			c.Stop()
		}
		return code
	}())
}

// sharedKinds are the options of the shared clusters, by kind: "auto"
// (kube-controller-manager approves node client CSRs), "manual"
// (csrapproving off: the test approves or denies), "short" (1-minute
// certificates, backdated by 5 minutes as kube-controller-manager does, and
// node client CSRs approved) and "nosigner" (no approver and no signer: the
// test is both).
var sharedKinds = map[string]testcluster.Options{
	"auto":     {SigningDuration: time.Hour},
	"manual":   {SigningDuration: time.Hour, Controllers: []string{"csrsigning", "csrcleaner"}},
	"short":    {SigningDuration: time.Minute},
	"nosigner": {Controllers: []string{"csrcleaner"}},
}

// cluster returns the shared cluster of kind (see sharedKinds) in the
// single-CA layout, starting it on first use.
func cluster(t *testing.T, kind string) *testcluster.Cluster {
	t.Helper()
	return clusterIn(t, kind, testcluster.LayoutSingle)
}

// clusterIn returns the shared cluster of kind in layout, starting it on
// first use; TestMain stops it.
func clusterIn(t *testing.T, kind string, layout testcluster.Layout) *testcluster.Cluster {
	t.Helper()
	clustersMu.Lock()
	defer clustersMu.Unlock()
	key := kind + "/" + string(layout)
	if c, ok := clusters[key]; ok {
		return c
	}
	opts, ok := sharedKinds[kind]
	if !ok {
		t.Fatalf("no shared cluster of kind %q", kind)
	}
	opts.Layout = layout
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := testcluster.Start(ctx, opts)
	if err != nil {
		t.Fatalf("starting the %s control plane: %v", key, err)
	}
	clusters[key] = c
	return c
}

// inLayouts runs f as a subtest in each CA layout of testcluster.Layouts:
// one CA for everything (kubeadm), a server CA apart from the client and
// kubelet-serving CAs (k3s, RKE2), and kube-apiserver's self-signed serving
// certificate. Every node-side test runs in all of them: a check that holds
// only where one CA does everything refuses real clusters.
func inLayouts(t *testing.T, f func(t *testing.T, layout testcluster.Layout)) {
	t.Helper()
	for _, l := range testcluster.Layouts {
		t.Run(string(l), func(t *testing.T) { f(t, l) })
	}
}

// nodeSeq numbers the nodes of this test process.
var nodeSeq atomic.Int64

// node is one simulated node: its directories and flags.
type node struct {
	name, dir, certDir, kubeconfig, bootstrapKubeconfig string
}

func newNode(t *testing.T, c *testcluster.Cluster) *node {
	t.Helper()
	dir := t.TempDir()
	// A node name from the test's, made unique in this process so that
	// -count=N runs against the shared clusters do not meet old CSRs.
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' {
			return r
		}
		return '-'
	}, strings.ToLower(t.Name()))
	if len(name) > 50 {
		name = name[len(name)-50:]
	}
	name = fmt.Sprintf("%s-%d", strings.Trim(name, "-."), nodeSeq.Add(1))
	return &node{
		name:                name,
		dir:                 dir,
		certDir:             filepath.Join(dir, "pki"),
		kubeconfig:          filepath.Join(dir, "kubelet.conf"),
		bootstrapKubeconfig: c.BootstrapKubeconfig,
	}
}

func (n *node) args(extra ...string) []string {
	return append([]string{"bootstrap",
		"--bootstrap-kubeconfig", n.bootstrapKubeconfig,
		"--kubeconfig", n.kubeconfig,
		"--cert-dir", n.certDir,
		"--node-name", n.name,
		"--server-wait", "5s",
		"--wait-timeout", "2m",
	}, extra...)
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// lastLine is the one line a failed run should print.
func (r result) lastLine() string {
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	return lines[len(lines)-1]
}

// run runs the binary to completion (bounded by a timeout).
func run(t *testing.T, bin string, args ...string) result {
	t.Helper()
	p := start(t, bin, args...)
	return p.wait(t)
}

type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{}
}

func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	return startEnv(t, nil, bin, args...)
}

// startEnv is start with extra environment variables.
func startEnv(t *testing.T, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *proc) wait(t *testing.T) result {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(3 * time.Minute):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s did not finish in 3m:\n%s\n%s", p.cmd.Args, p.stdout, p.stderr)
	}
	return result{stdout: p.stdout.String(), stderr: p.stderr.String(), code: p.cmd.ProcessState.ExitCode()}
}

func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
