package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/bootstrap"
	"github.com/tlsboot/tlsboot/internal/testcluster"
)

type contender string

const (
	tlsbootApprover contender = "tlsboot"
	kubeletKCM      contender = "kubelet"
)

// result is one run of one contender.
type result struct {
	n        int
	wall     time.Duration   // release to the last node's end, as the fleet program measures it
	joins    []time.Duration // per node, sorted
	failed   []string        // nodes that did not bootstrap, with why
	unusable []string        // nodes whose kubeconfig did not check out
	verified int             // kubeconfigs that authenticated
	requests requests        // from the audit log, fleet start to the end of verification
	apiCPU   float64         // kube-apiserver CPU-seconds during the fleet
	etcdCPU  float64         // etcd CPU-seconds during the fleet
	fleetCPU float64         // the fleet process's CPU-seconds, start-up included
}

func (r result) summary() string {
	return fmt.Sprintf("%d nodes in %s (p50 %s, max %s), %d failed, %d unusable, %.2f node requests per node (%v 429s), apiserver %.1f CPU-s, etcd %.1f CPU-s",
		r.n, r.wall.Round(time.Millisecond), pct(r.joins, 50).Round(time.Millisecond), pct(r.joins, 100).Round(time.Millisecond),
		len(r.failed), len(r.unusable), total(r.requests[byNodes])/float64(r.n), withCode(r.requests[byNodes], 429), r.apiCPU, r.etcdCPU)
}

// baseControllers run in every cluster; kube-controller-manager's
// csrapproving is added for the kubelet contender only, so that it and
// tlsboot approver never both decide.
var baseControllers = []string{"csrsigning", "csrcleaner", "bootstrapsigner", "tokencleaner"}

func runOnce(ctx context.Context, who contender, n, sample int, self, tlsboot string) (result, error) {
	dir, err := os.MkdirTemp("", "tlsboot-fleet-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	policy, auditLog := filepath.Join(dir, "audit-policy.yaml"), filepath.Join(dir, "audit.log")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return result{}, err
	}
	controllers := slices.Clone(baseControllers)
	if who == kubeletKCM {
		controllers = append(controllers, "csrapproving")
	}
	c, err := testcluster.Start(ctx, testcluster.Options{
		Controllers:                controllers,
		ExtraAPIServerArgs:         []string{"--audit-policy-file=" + policy, "--audit-log-path=" + auditLog},
		ExtraControllerManagerArgs: kcmArgs,
	})
	if err != nil {
		return result{}, err
	}
	defer c.Stop()
	if who == tlsbootApprover {
		stop, err := startApprover(ctx, tlsboot, c, dir)
		if err != nil {
			return result{}, err
		}
		defer stop()
	}
	// One node first, so that the approver and the signer are known to
	// work before the clock starts.
	if _, err := bootstrap.Run(klog.NewContext(ctx, logr.Discard()), bootstrap.Options{
		KubeconfigPath: filepath.Join(dir, "warmup", "kubelet.conf"), BootstrapKubeconfigPath: c.BootstrapKubeconfig,
		CertDir: filepath.Join(dir, "warmup", "pki"), NodeName: "warmup", WaitTimeout: 2 * time.Minute,
	}); err != nil {
		return result{}, fmt.Errorf("warm-up node: %w", err)
	}
	pids, err := componentPIDs(c)
	if err != nil {
		return result{}, err
	}
	st, err := os.Stat(auditLog)
	if err != nil {
		return result{}, err
	}
	cpuBefore, err := cpuSeconds(pids["kube-apiserver"], pids["etcd"])
	if err != nil {
		return result{}, err
	}

	nodesDir := filepath.Join(dir, "nodes")
	var cmd *exec.Cmd
	if who == tlsbootApprover {
		cmd = exec.CommandContext(ctx, self, "-child", "-n", strconv.Itoa(n), "-dir", nodesDir, "-bootstrap-kubeconfig", c.BootstrapKubeconfig)
	} else {
		cmd = exec.CommandContext(ctx, filepath.Join(c.BinDir(), "kubelet-fleet"), "-n", strconv.Itoa(n), "-dir", nodesDir,
			"-bootstrap-kubeconfig", c.BootstrapKubeconfig, "-prefix", nodePrefix)
	}
	fr, fleetCPU, err := runFleet(cmd, filepath.Join(dir, "fleet.log"))
	if err != nil {
		return result{}, err
	}
	cpuAfter, err := cpuSeconds(pids["kube-apiserver"], pids["etcd"])
	if err != nil {
		return result{}, err
	}
	r := result{n: n, wall: fr.Wall, fleetCPU: fleetCPU, apiCPU: cpuAfter[0] - cpuBefore[0], etcdCPU: cpuAfter[1] - cpuBefore[1]}
	if len(fr.Nodes) != n {
		return result{}, fmt.Errorf("the fleet reported %d nodes, want %d", len(fr.Nodes), n)
	}
	ca, err := os.ReadFile(c.CAFile())
	if err != nil {
		return result{}, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	for i, nd := range fr.Nodes {
		r.joins = append(r.joins, nd.Join)
		if nd.Error != "" {
			r.failed = append(r.failed, nd.Name+": "+nd.Error)
			continue
		}
		// Every kubeconfig is checked offline; the first sample of them
		// also authenticate, spread over the fleet.
		online := sample > 0 && i%max(1, n/sample) == 0 && r.verified < sample
		if err := verify(ctx, nd, roots, online); err != nil {
			r.unusable = append(r.unusable, err.Error())
		} else if online {
			r.verified++
		}
	}
	slices.Sort(r.joins)
	if r.requests, err = readAudit(auditLog, st.Size()); err != nil {
		return result{}, err
	}
	return r, nil
}

// runFleet runs a fleet program and returns its report and CPU time.
func runFleet(cmd *exec.Cmd, logPath string) (fleetReport, float64, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return fleetReport{}, 0, err
	}
	defer log.Close()
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		tail, _ := os.ReadFile(logPath)
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return fleetReport{}, 0, fmt.Errorf("%s: %w: %s", filepath.Base(cmd.Path), err, tail)
	}
	var fr fleetReport
	if err := json.Unmarshal(stdout.Bytes(), &fr); err != nil {
		return fleetReport{}, 0, fmt.Errorf("%s's report: %w", filepath.Base(cmd.Path), err)
	}
	cpu := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	return fr, cpu, nil
}

// verify checks that a node's kubeconfig is usable: it parses, its
// certificate and key are a pair, the certificate is from the cluster CA
// for client auth as system:node:<name> in system:nodes, and, when online,
// the API server authenticates it as that user.
func verify(ctx context.Context, nd *fleetNode, roots *x509.CertPool, online bool) error {
	path := filepath.Join(nd.Dir, "kubelet.conf")
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	pair, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Errorf("%s: %w", cfg.CertFile, err)
	}
	user := "system:node:" + nd.Name
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("%s: %w", cfg.CertFile, err)
	}
	if leaf.Subject.CommonName != user || !slices.Equal(leaf.Subject.Organization, []string{"system:nodes"}) {
		return fmt.Errorf("%s: subject %s, want CN=%s, O=system:nodes", cfg.CertFile, leaf.Subject, user)
	}
	if !online {
		return nil
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	ssr, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("%s: authenticating: %w", path, err)
	}
	if got := ssr.Status.UserInfo.Username; got != user {
		return fmt.Errorf("%s: authenticated as %q, want %q", path, got, user)
	}
	return nil
}

// componentPIDs finds the process IDs of etcd and kube-apiserver among
// the cluster's.
func componentPIDs(c *testcluster.Cluster) (map[string]int, error) {
	out := map[string]int{}
	for _, pid := range c.PIDs() {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil {
			return nil, err
		}
		out[strings.TrimSpace(string(comm))] = pid
	}
	if out["etcd"] == 0 || out["kube-apiserver"] == 0 {
		return nil, fmt.Errorf("found no etcd or kube-apiserver among the cluster's processes %v", out)
	}
	return out, nil
}

// cpuSeconds reads the user and system CPU time of each process from
// /proc/<pid>/stat.
func cpuSeconds(pids ...int) ([]float64, error) {
	var out []float64
	for _, pid := range pids {
		path := fmt.Sprintf("/proc/%d/stat", pid)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		s, err := statCPU(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// statCPU returns utime+stime, in seconds, of a /proc/<pid>/stat line.
func statCPU(stat []byte) (float64, error) {
	const ticks = 100 // USER_HZ, 100 on every Linux architecture Go supports
	// The command name, in parentheses, may hold spaces and parentheses:
	// fields count from after its last closing parenthesis.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	// utime and stime are fields 14 and 15 of proc(5), 12th and 13th
	// after the name.
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return (utime + stime) / ticks, nil
}

// startApprover starts `tlsboot approver` with its default flags except
// those the benchmark needs: the admin kubeconfig (there is no in-cluster
// configuration) and a free metrics port. It returns once it leads.
func startApprover(ctx context.Context, bin string, c *testcluster.Cluster, dir string) (stop func(), err error) {
	logPath := filepath.Join(dir, "approver.log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "approver", "--kubeconfig", c.AdminKubeconfig, "--metrics-bind-address", "127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		select {
		case <-done:
			return false, errors.New("tlsboot approver exited: see " + logPath)
		default:
		}
		b, _ := os.ReadFile(logPath)
		return bytes.Contains(b, []byte(`"Became the leader`)), nil
	})
	if err != nil {
		stop()
		return nil, fmt.Errorf("waiting for tlsboot approver to lead: %w", err)
	}
	return stop, nil
}
