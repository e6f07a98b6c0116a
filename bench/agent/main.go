// Command agent measures the idle cost of `tlsboot run`: it starts a local
// control plane (internal/testcluster) whose signer issues 24h
// certificates, runs the agent until it has bootstrapped and is ready,
// then leaves it idle for -idle and reads, from /proc, the CPU time it used
// while idle and its resident memory.
//
//	go run ./bench/agent -idle 60s -out BENCHMARKS.md
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tlsboot/tlsboot/bench/internal/mdsection"
	"github.com/tlsboot/tlsboot/internal/testcluster"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

func main() {
	idle := flag.Duration("idle", 60*time.Second, "how long to leave the agent idle")
	bin := flag.String("bin", "", "tlsboot binary (default: build one)")
	out := flag.String("out", "", "write a Markdown section to this file (default: stdout only)")
	flag.Parse()
	if err := run(*bin, *idle, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench/agent:", err)
		os.Exit(1)
	}
}

type sample struct {
	cpu      time.Duration // utime + stime
	rss, hwm int64         // kB
}

func run(bin string, idle time.Duration, out string) error {
	dir, err := os.MkdirTemp("", "tlsboot-bench-agent-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin == "" {
		bin = filepath.Join(dir, "tlsboot")
		if err := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/tlsboot").Run(); err != nil {
			return fmt.Errorf("building tlsboot: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := testcluster.Start(ctx, testcluster.Options{SigningDuration: 24 * time.Hour})
	if err != nil {
		return err
	}
	defer c.Stop()
	cmd, url, err := startAgent(bin, c, filepath.Join(dir, "tlsboot"))
	if err != nil {
		return err
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	peer, err := startPeer(filepath.Join(c.BinDir(), "kubelet-agent"), c, filepath.Join(dir, "kubelet"))
	if err != nil {
		return err
	}
	defer func() { peer.Process.Signal(syscall.SIGTERM); peer.Wait() }()
	if err := waitReady(url, time.Minute); err != nil {
		return err
	}
	// Let start-up work (bootstrap, first GC) settle before measuring.
	time.Sleep(2 * time.Second)
	pids := []int{cmd.Process.Pid, peer.Process.Pid}
	before, err := readAll(pids)
	if err != nil {
		return err
	}
	time.Sleep(idle)
	after, err := readAll(pids)
	if err != nil {
		return err
	}
	return report(out, idle, before, after)
}

func readAll(pids []int) ([]sample, error) {
	var out []sample
	for _, pid := range pids {
		s, err := read(pid)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// startPeer starts the kubelet's own certificate manager (kubelet-agent)
// and returns once it has a certificate.
func startPeer(bin string, c *testcluster.Cluster, dir string) (*exec.Cmd, error) {
	cmd := exec.Command(bin, "--bootstrap-kubeconfig", c.BootstrapKubeconfig,
		"--kubeconfig", filepath.Join(dir, "kubelet.conf"), "--cert-dir", filepath.Join(dir, "pki"), "--node-name", "bench-kubelet-node")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if sc.Text() == "ready" {
			go io.Copy(io.Discard, stdout)
			return cmd, nil
		}
	}
	cmd.Wait()
	return nil, errors.New("kubelet-agent exited before it had a certificate")
}

func startAgent(bin string, c *testcluster.Cluster, dir string) (*exec.Cmd, string, error) {
	cmd := exec.Command(bin, "run", "--bootstrap-kubeconfig", c.BootstrapKubeconfig,
		"--kubeconfig", filepath.Join(dir, "kubelet.conf"), "--cert-dir", filepath.Join(dir, "pki"),
		"--node-name", "bench-node", "--metrics-bind-address", "127.0.0.1:0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	re := regexp.MustCompile(`"Serving metrics and health endpoints" address="([^"]+)"`)
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			go io.Copy(io.Discard, stderr)
			return cmd, "http://" + m[1], nil
		}
	}
	cmd.Wait()
	return nil, "", errors.New("the agent exited before serving its endpoints")
}

func waitReady(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("the agent did not become ready")
}

// read returns the CPU time and memory of pid from /proc.
func read(pid int) (sample, error) {
	var s sample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command name, which is in parentheses and may
	// contain spaces: utime and stime are fields 14 and 15 of the line.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	s.cpu = time.Duration(utime+stime) * time.Second / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			s.rss, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			s.hwm, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return s, nil
}

func report(out string, idle time.Duration, before, after []sample) error {
	cpu := func(i int) time.Duration { return after[i].cpu - before[i].cpu }
	pct := func(i int) float64 { return 100 * cpu(i).Seconds() / idle.Seconds() }
	mib := func(kb int64) float64 { return float64(kb) / 1024 }
	text := fmt.Sprintf(`## Agent: idle cost of `+"`tlsboot run`"+` vs the kubelet's certificate manager

Command: `+"`go run ./bench/agent -idle %v -out BENCHMARKS.md`"+`. One local control plane issuing 24h
certificates; `+"`tlsboot run`"+` (metrics endpoint on, not scraped) and the kubelet's own client
certificate path (`+"`kubelet-agent`"+`: bootstrap.LoadClientConfig, the kubelet's client certificate
manager on client-go's util/certificate, UpdateTransport — as cmd/kubelet/app starts it; no HTTP
server) both bootstrap a node, then both idle for the same period. Figures from /proc/PID/stat and
/proc/PID/status (CPU in 10 ms ticks).

| measure | tlsboot run | kubelet code | ratio |
|---|---:|---:|---:|
| CPU used in %v idle | %v (%.3f%% of a core) | %v (%.3f%% of a core) | %s |
| RSS at the end (VmRSS) | %.1f MiB | %.1f MiB | %.2f |
| peak RSS (VmHWM, includes the bootstrap) | %.1f MiB | %.1f MiB | %.2f |

Goal: RSS under 30 MiB. Measured on %s, %s.
`, idle, idle, cpu(0), pct(0), cpu(1), pct(1), ratioText(cpu(0), cpu(1)),
		mib(after[0].rss), mib(after[1].rss), float64(after[0].rss)/float64(after[1].rss),
		mib(after[0].hwm), mib(after[1].hwm), float64(after[0].hwm)/float64(after[1].hwm),
		time.Now().UTC().Format("2006-01-02"), machine())
	fmt.Print(text)
	if out == "" {
		return nil
	}
	return mdsection.Update(out, "bench/agent", text)
}

func ratioText(a, b time.Duration) string {
	switch {
	case a == 0 && b == 0:
		return "— (both below one tick)"
	case b == 0:
		return "— (kubelet code below one tick)"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}

func machine() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	model := ""
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
			break
		}
	}
	return fmt.Sprintf("%s, %d CPUs visible", model, strings.Count(string(data), "processor\t:"))
}
