// Command agent measures the idle cost of `tlsboot run`: it starts a local
// control plane (internal/testcluster) whose signer issues 24h
// certificates, runs side by side `tlsboot run`, `tlsboot run` with the
// release of its executable's pages turned off (TLSBOOT_RELEASE_EXECUTABLE=0)
// and the kubelet's own certificate manager (hack/controlplane's
// kubelet-agent) until all have bootstrapped, leaves them idle for -idle and
// reads, from /proc, the CPU time each used while idle and its resident
// memory, split by what backs it; then it scrapes the agent's /metrics once
// and reads its memory again. It repeats this -runs times, each on a fresh
// control plane, and reports the medians and every run's raw numbers.
//
//	go run ./bench/agent -bin bin/tlsboot -idle 150s -runs 3 -out BENCHMARKS.md
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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tlsboot/tlsboot/bench/internal/machine"
	"github.com/tlsboot/tlsboot/bench/internal/mdsection"
	"github.com/tlsboot/tlsboot/internal/agent"
	"github.com/tlsboot/tlsboot/internal/testcluster"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

func main() {
	idle := flag.Duration("idle", 60*time.Second, "how long to leave the agents idle in each run")
	bin := flag.String("bin", "", "tlsboot binary (default: build one as `make build` does)")
	runs := flag.Int("runs", 3, "runs, each on a fresh control plane (medians are reported)")
	out := flag.String("out", "", "write a Markdown section to this file (default: stdout only)")
	flag.Parse()
	if *runs < 1 {
		fmt.Fprintln(os.Stderr, "bench/agent: -runs must be at least 1")
		os.Exit(2)
	}
	if err := run(*bin, *idle, *runs, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench/agent:", err)
		os.Exit(1)
	}
}

// sample is what /proc says about one process at one instant.
type sample struct {
	cpu      time.Duration // utime + stime
	rss, hwm int64         // kB, VmRSS and VmHWM
	mem      breakdown
}

// breakdown splits the resident set (kB) by what backs it, from
// /proc/PID/smaps: the executable's code, its read-only data (type
// information, tables, string constants), its writable data and BSS, and
// anonymous memory (the Go heap, goroutine stacks, runtime structures).
type breakdown struct {
	text, rodata, data, anon, other int64
}

// The processes measured in each run, in this order.
const (
	tlsboot   = iota // tlsboot run
	scraped          // tlsboot run, /metrics scraped every scrapeEvery
	noRelease        // tlsboot run, TLSBOOT_RELEASE_EXECUTABLE=0
	kubelet          // kubelet-agent
	nProcs
)

// scrapeEvery is how often the scraped agent's /metrics is read while
// idle: Prometheus' default scrape interval is 1m, 15s is a common setting.
const scrapeEvery = 15 * time.Second

var procNames = [nProcs]string{"tlsboot run", "tlsboot run, scraped every 15 s", "tlsboot run, executable not released", "kubelet code"}

// result is one run: the idle CPU time and the final sample of each process.
type result struct {
	cpu [nProcs]time.Duration
	end [nProcs]sample
}

func run(bin string, idle time.Duration, runs int, out string) error {
	dir, err := os.MkdirTemp("", "tlsboot-bench-agent-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin == "" {
		bin = filepath.Join(dir, "tlsboot")
		build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/tlsboot")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building tlsboot: %w", err)
		}
	}
	// A private copy, so that a rebuild of -bin during the runs changes
	// nothing, written back to disk as an installed binary is (the kernel
	// does not release dirty pages).
	private := filepath.Join(dir, "bin", "tlsboot")
	if err := copyFile(bin, private); err != nil {
		return err
	}
	bin = private
	var results []result
	for i := range runs {
		fmt.Fprintf(os.Stderr, "run %d/%d: the four processes idle for %v...\n", i+1, runs, idle)
		r, err := once(bin, idle, filepath.Join(dir, strconv.Itoa(i)))
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		results = append(results, r)
	}
	info, err := os.Stat(bin)
	if err != nil {
		return err
	}
	return report(out, idle, info.Size(), results)
}

// once runs the three processes on a fresh control plane and measures them.
func once(bin string, idle time.Duration, dir string) (result, error) {
	var r result
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := testcluster.Start(ctx, testcluster.Options{SigningDuration: 24 * time.Hour})
	if err != nil {
		return r, err
	}
	defer c.Stop()
	var cmds [nProcs]*exec.Cmd
	defer func() {
		for _, cmd := range cmds {
			if cmd != nil {
				cmd.Process.Signal(syscall.SIGTERM)
				cmd.Wait()
			}
		}
	}()
	var urls [nProcs]string
	// Each agent runs its own copy of the binary: the kernel releases only
	// pages that no other process maps, and processes of one file share
	// its pages.
	for _, i := range []int{tlsboot, scraped, noRelease} {
		exe := filepath.Join(dir, "bin", strconv.Itoa(i), "tlsboot")
		if err := copyFile(bin, exe); err != nil {
			return r, err
		}
		if err := evict(exe); err != nil {
			return r, err
		}
		var env []string
		if i == noRelease {
			env = []string{agent.ReleaseExecutableEnv + "=0"}
		}
		if cmds[i], urls[i], err = startAgent(exe, env, c, filepath.Join(dir, strconv.Itoa(i))); err != nil {
			return r, err
		}
	}
	peerBin := filepath.Join(c.BinDir(), "kubelet-agent")
	if err := evict(peerBin); err != nil {
		return r, err
	}
	if cmds[kubelet], err = startPeer(peerBin, c, filepath.Join(dir, "kubelet")); err != nil {
		return r, err
	}
	for _, i := range []int{tlsboot, scraped, noRelease} {
		if err := waitReady(urls[i], time.Minute); err != nil {
			return r, err
		}
	}
	// Let start-up work (bootstrap, first GC) settle before measuring.
	time.Sleep(2 * time.Second)
	var pids []int
	for _, cmd := range cmds {
		pids = append(pids, cmd.Process.Pid)
	}
	before, err := readAll(pids)
	if err != nil {
		return r, err
	}
	if err := scrapeWhile(urls[scraped], idle); err != nil {
		return r, err
	}
	after, err := readAll(pids)
	if err != nil {
		return r, err
	}
	for i := range pids {
		r.cpu[i] = after[i].cpu - before[i].cpu
		r.end[i] = after[i]
	}
	return r, nil
}

// scrapeWhile reads url's /metrics every scrapeEvery, as Prometheus would,
// for the period d.
func scrapeWhile(url string, d time.Duration) error {
	end := time.Now().Add(d)
	tick := time.NewTicker(scrapeEvery)
	defer tick.Stop()
	for {
		wait := time.Until(end)
		if wait <= 0 {
			return nil
		}
		select {
		case <-time.After(wait):
			return nil
		case <-tick.C:
			if err := scrape(url); err != nil {
				return err
			}
		}
	}
}

// evict writes path back to disk and drops it from the page cache, so that
// a process started from it begins with a cold cache, as at boot: what the
// kernel maps around each page a process touches (fault-around) depends on
// what is already cached, and a just-written copy is cached whole.
func evict(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return err
	}
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(to, data, 0o755); err != nil {
		return err
	}
	return syncFile(to)
}

// scrape reads the agent's /metrics as Prometheus would.
func scrape(url string) error {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s/metrics: %s", url, resp.Status)
	}
	return nil
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

func startAgent(bin string, env []string, c *testcluster.Cluster, dir string) (*exec.Cmd, string, error) {
	cmd := exec.Command(bin, "run", "--bootstrap-kubeconfig", c.BootstrapKubeconfig,
		"--kubeconfig", filepath.Join(dir, "kubelet.conf"), "--cert-dir", filepath.Join(dir, "pki"),
		"--node-name", "bench-node-"+filepath.Base(dir), "--metrics-bind-address", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), env...)
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
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return s, err
	}
	s.mem, err = readSmaps(pid, exe)
	return s, err
}

// readSmaps sums the Rss of pid's mappings by kind (see breakdown).
func readSmaps(pid int, exe string) (breakdown, error) {
	var b breakdown
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return b, err
	}
	defer f.Close()
	var kind *int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if v, ok := strings.CutSuffix(fields[0], ":"); ok {
			if v == "Rss" && kind != nil && len(fields) > 1 {
				n, _ := strconv.ParseInt(fields[1], 10, 64)
				*kind += n
			}
			continue
		}
		// A mapping's header: address perms offset dev inode [path].
		perms, path := fields[1], ""
		if len(fields) > 5 {
			path = fields[5]
		}
		switch {
		case path == exe && strings.HasPrefix(perms, "r-x"):
			kind = &b.text
		case path == exe && strings.HasPrefix(perms, "r--"):
			kind = &b.rodata
		case path == exe:
			kind = &b.data
		case path == "" || path == "[heap]" || path == "[stack]":
			kind = &b.anon
		default:
			kind = &b.other
		}
	}
	return b, sc.Err()
}

func median[T int64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func report(out string, idle time.Duration, binSize int64, rs []result) error {
	mib := func(kb int64) float64 { return float64(kb) / 1024 }
	// med returns the median over the runs of f of each process's sample.
	med := func(f func(sample) int64) (m [nProcs]int64) {
		for i := range nProcs {
			var xs []int64
			for _, r := range rs {
				xs = append(xs, f(r.end[i]))
			}
			m[i] = median(xs)
		}
		return m
	}
	var cpu [nProcs]time.Duration
	for i := range nProcs {
		var xs []time.Duration
		for _, r := range rs {
			xs = append(xs, r.cpu[i])
		}
		cpu[i] = median(xs)
	}
	rss := med(func(s sample) int64 { return s.rss })
	hwm := med(func(s sample) int64 { return s.hwm })
	var b strings.Builder
	fmt.Fprintf(&b, `## Agent: idle cost of `+"`tlsboot run`"+` vs the kubelet's certificate manager

Command: `+"`go run ./bench/agent -bin bin/tlsboot -idle %v -runs %d -out BENCHMARKS.md`"+` after `+"`make build`"+`
(CGO_ENABLED=0, -trimpath -ldflags '-s -w'; the binary is %.1f MiB). Each run starts a fresh local control
plane issuing 24h certificates and four processes side by side, each bootstrapping its own node:
`+"`tlsboot run`"+` (metrics endpoint on, not scraped); the same with its `+"`/metrics`"+` read every %v; the same
with `+"`TLSBOOT_RELEASE_EXECUTABLE=0`"+` (the executable's pages are not released after start-up and
rotations, see below); and the kubelet's own client certificate path (`+"`kubelet-agent`"+`:
bootstrap.LoadClientConfig, the kubelet's client certificate manager on client-go's util/certificate,
UpdateTransport — as cmd/kubelet/app starts it; no HTTP server). Each tlsboot process runs its own copy
of the binary, and every binary is written back and dropped from the page cache before its process
starts, as at boot. All idle for the same period; a period over 2 minutes includes the Go runtime's
periodic forced GC, which reads type data and function tables of the executable again (shorter ones
flatter a process that released them). Figures from /proc/PID/stat, /proc/PID/status and
/proc/PID/smaps (CPU in 10 ms ticks); medians of %d runs; ratios against the kubelet code of the same run.

`, idle, len(rs), float64(binSize)/(1<<20), scrapeEvery, len(rs))
	row := func(cells ...string) { b.WriteString("| " + strings.Join(cells, " | ") + " |\n") }
	header := []string{"measure"}
	align := []string{"---"}
	for _, n := range procNames {
		header, align = append(header, n), append(align, "---:")
	}
	row(header...)
	row(align...)
	cells := []string{fmt.Sprintf("CPU used in %v idle", idle)}
	for i := range nProcs {
		cells = append(cells, fmt.Sprintf("%v (%.3f%%)", cpu[i], 100*cpu[i].Seconds()/idle.Seconds()))
	}
	row(cells...)
	for _, m := range []struct {
		name string
		v    [nProcs]int64
	}{{"RSS at the end (VmRSS)", rss}, {"peak RSS (VmHWM, includes the bootstrap)", hwm}} {
		cells := []string{m.name}
		for i := range nProcs {
			c := fmt.Sprintf("%.1f MiB", mib(m.v[i]))
			if i != kubelet {
				c += fmt.Sprintf(" (%.2f×)", float64(m.v[i])/float64(m.v[kubelet]))
			}
			if i == tlsboot && m.name == "RSS at the end (VmRSS)" {
				c = "**" + c + "**"
			}
			cells = append(cells, c)
		}
		row(cells...)
	}
	b.WriteString("\nWhere the resident memory is at the end (medians, MiB; /proc/PID/smaps):\n\n")
	header[0] = "resident"
	row(header...)
	row(align...)
	for _, k := range []struct {
		name string
		f    func(breakdown) int64
	}{
		{"executable code (text)", func(m breakdown) int64 { return m.text }},
		{"executable read-only data (types, pclntab, tables)", func(m breakdown) int64 { return m.rodata }},
		{"executable data and BSS", func(m breakdown) int64 { return m.data }},
		{"anonymous (Go heap, stacks, runtime)", func(m breakdown) int64 { return m.anon }},
		{"shared libraries (libc, ld.so: cgo), vDSO", func(m breakdown) int64 { return m.other }},
	} {
		v := med(func(s sample) int64 { return k.f(s.mem) })
		cells := []string{k.name}
		for i := range nProcs {
			cells = append(cells, fmt.Sprintf("%.1f", mib(v[i])))
		}
		row(cells...)
	}
	b.WriteString("\nRaw numbers per run (idle CPU; VmRSS; VmHWM; memory in MiB):\n\n")
	header[0] = "run"
	row(append(header, "RSS ratio, tlsboot run", "RSS ratio, scraped")...)
	row(append(align, "---:", "---:")...)
	for i, r := range rs {
		cells := []string{strconv.Itoa(i + 1)}
		for p := range nProcs {
			cells = append(cells, fmt.Sprintf("%v; %.1f; %.1f", r.cpu[p], mib(r.end[p].rss), mib(r.end[p].hwm)))
		}
		cells = append(cells, fmt.Sprintf("%.2f", float64(r.end[tlsboot].rss)/float64(r.end[kubelet].rss)),
			fmt.Sprintf("%.2f", float64(r.end[scraped].rss)/float64(r.end[kubelet].rss)))
		row(cells...)
	}
	b.WriteString(findings)
	fmt.Fprintf(&b, "\nGoal: idle RSS at most 0.6× the kubelet code's. Measured on %s, %s.\n", time.Now().UTC().Format("2006-01-02"), machine.Describe())
	text := b.String()
	fmt.Print(text)
	if out == "" {
		return nil
	}
	return mdsection.Update(out, "bench/agent", text)
}

// findings are the one-off measurements behind the agent's memory release
// (internal/agent/memory.go), kept with the figures they explain.
const findings = `
Where the memory goes, and why the agent releases its executable's pages (one-off measurements,
2026-12-01, this machine; cgo builds, -trimpath -ldflags '-s -w'):

| program, idle | resident | of it, the executable's code and read-only data |
|---|---:|---:|
| an empty Go program | 1.8 MiB | 1.2 MiB |
| importing only k8s.io/api/certificates/v1 and authentication/v1, client-go's rest, tools/cache and tools/clientcmd | 9.7 MiB | 6.4 MiB |
| importing only k8s.io/client-go/kubernetes (the clientset) | 17.7 MiB | 12.9 MiB |
| ` + "`tlsboot run`" + ` before this change, after bootstrapping | 29.6 MiB | 22.6 MiB |

- ` + "`GODEBUG=inittrace=1 tlsboot version`" + `: package initialisation allocates 2.3 MB in 17,667 allocations,
  client-go's kubernetes/scheme (every API group registered) 645 kB of it; what stays is less the heap
  than the code and type data those initialisers read, spread over the whole binary (plus the kernel's
  fault-around, which maps up to 64 kB around each touched page).
- A minimal scheme in the agent's path alone would not remove that: every typed client package
  (typed/certificates/v1 included) imports kubernetes/scheme, and the binary links the clientset anyway
  for the approver, token and setup and through the libraries' API (csrwait, rotation and bootstrap take
  a kubernetes.Interface). Package initialisation cannot be made lazy per subcommand.
- So the agent releases the pages instead, once the client certificate is valid at start-up and after
  each rotation (` + "`TLSBOOT_RELEASE_EXECUTABLE=0`" + ` turns it off: the third column).
- The Go heap: 1.7 MiB live and 3.2–3.5 MiB in use at idle; GOGC=25 or GOGC=off with GOMEMLIMIT=8MiB
  moved idle RSS by at most 0.5 MiB, so the runtime defaults stay. The Prometheus Go and process
  collectors cost nothing idle and 0.6 MiB after a scrape, and stay (` + "`process_resident_memory_bytes`" + `
  is how operators see this very figure). CGO_ENABLED=0 drops libc and ld.so: 1.5 MiB.
`

func ratioText(a, b time.Duration) string {
	switch {
	case a == 0 && b == 0:
		return "— (both below one tick)"
	case b == 0:
		return "— (kubelet code below one tick)"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}
