// Command crash runs test/crash's full form (`make crashtest`): it runs
// `go test ./test/crash/` with -crash.cycles kill cycles of each kind
// (tlsboot bootstrap and tlsboot run, SIGKILLed at random instants) and the
// ENOSPC cases, passes the test's output through, and once everything
// passed writes the counts, the seed and the machine to the crash section
// of -out (through bench/internal/mdsection, which test/crash may not
// import). A failing test writes nothing and exits non-zero.
//
//	go run ./bench/crash -cycles 500 -out BENCHMARKS.md [-seed N]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/tlsboot/tlsboot/bench/internal/machine"
	"github.com/tlsboot/tlsboot/bench/internal/mdsection"
)

func main() {
	cycles := flag.Int("cycles", 500, "kill cycles per kind")
	seed := flag.Uint64("seed", 0, "seed of the kill instants (0: the test picks one from the clock and prints it)")
	timeout := flag.Duration("timeout", 150*time.Minute, "go test -timeout")
	out := flag.String("out", "", "Markdown file whose crash section gets the counts (default: print only)")
	flag.Parse()
	if *cycles < 1 {
		fmt.Fprintln(os.Stderr, "bench/crash: -cycles must be at least 1")
		os.Exit(2)
	}
	if err := run(*cycles, *seed, *timeout, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench/crash:", err)
		os.Exit(1)
	}
}

// report is test/crash's JSON report (its report type).
type report struct {
	Seed    uint64  `json:"seed"`
	Cycles  int     `json:"cycles_per_kind"`
	Seconds float64 `json:"seconds"`
	Kinds   []struct {
		Kind       string  `json:"kind"`
		WindowMS   float64 `json:"kill_window_ms"`
		WindowLoMS float64 `json:"kill_window_min_ms"`
		WindowHiMS float64 `json:"kill_window_max_ms"`
		Cycles     int     `json:"cycles"`
		PhaseText  string  `json:"kills_by_phase_text"`
		Missed     int     `json:"exited_before_kill"`
		Leftovers  int     `json:"leftovers_after_kills"`
		Violations int     `json:"violations"`
		Seconds    float64 `json:"seconds"`
	} `json:"kinds"`
	ENOSPC []string `json:"enospc_passed"`
}

func run(cycles int, seed uint64, timeout time.Duration, out string) error {
	dir, err := os.MkdirTemp("", "tlsboot-crash-report-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	jsonPath := filepath.Join(dir, "crash.json")
	args := []string{"test", "-count=1", "-v", "-timeout", timeout.String(), "./test/crash/",
		"-crash.cycles=" + strconv.Itoa(cycles), "-crash.report=" + jsonPath}
	if seed != 0 {
		args = append(args, "-seed="+strconv.FormatUint(seed, 10))
	}
	loadBefore := loadAverage()
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	fmt.Fprintf(os.Stderr, "bench/crash: go %s\n", strings.Join(args, " "))
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("the crash test failed (%v): nothing written", err)
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		return fmt.Errorf("reading the test's report: %w", err)
	}
	var r report
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("parsing the test's report %s: %w", jsonPath, err)
	}
	section := markdown(r, seed != 0, loadBefore, loadAverage())
	fmt.Println(section)
	if out == "" {
		return nil
	}
	return mdsection.Update(out, "crash", section)
}

func markdown(r report, seeded bool, loadBefore, loadAfter string) string {
	var s strings.Builder
	s.WriteString("## Crash at any instant (`make crashtest`)\n\n")
	seedArg, seedFrom := fmt.Sprintf(" SEED=%d", r.Seed), "given"
	if !seeded {
		seedArg, seedFrom = "", "picked from the clock"
	}
	fmt.Fprintf(&s, "Command: `make crashtest CRASH_CYCLES=%d%s` (`go run ./bench/crash -cycles %d -out BENCHMARKS.md`, which runs "+
		"`go test -count=1 -v ./test/crash/ -crash.cycles=%d`); seed **%d** (%s; `make crashtest SEED=%d` replays the kill instants, "+
		"not the machine's timing). Machine: %s, %d cores, Linux %s, %s; load average (1, 5, 15 min) %s before and %s after; %s. The test took %s.\n\n",
		r.Cycles, seedArg, r.Cycles, r.Cycles, r.Seed, seedFrom, r.Seed, machine.CPUModel(), runtime.NumCPU(), kernel(), runtime.Version(),
		loadBefore, loadAfter, time.Now().UTC().Format("2006-01-02 15:04 UTC"), (time.Duration(r.Seconds) * time.Second).String())
	s.WriteString("One local control plane (internal/testcluster, v1.37.2: etcd, kube-apiserver, kube-controller-manager with `csrapproving` " +
		"approving and `csrsigning` signing 1 h certificates), a real bootstrap token and kubeadm's RBAC; files on ext4 (real fsyncs). " +
		"**bootstrap**: each cycle a new node runs `tlsboot bootstrap`, is SIGKILLed at an instant uniform over the kill window " +
		"(the longest of the last 5 undisturbed runs: first 5 after 2 warm-ups, then one more every 10 cycles replacing the oldest), " +
		"is checked, then runs again to completion and is checked again. " +
		"**run**: one node across all cycles; each cycle `tlsboot run` gets SIGHUP (rotate now), is SIGKILLed at an instant uniform " +
		"over the window after it, is checked, restarts until the rotation is done, stops with SIGTERM and is checked again; " +
		"the window is the longest of the last 5 undisturbed rotations of a fresh agent (first 5 measured after 2 warm-ups, then each " +
		"restart that had to be asked again with SIGHUP replaces the oldest), so that it follows the machine's load. The phase of a kill is told from the killed process's log lines (-v=2) and the files it left; " +
		"\"start\" is process start-up before the first step, \"finish\" after the certificate was stored; \"exited before the kill\" " +
		"counts cycles whose run had finished before its kill instant (checked all the same).\n\n")
	s.WriteString("| kind | cycles | kill window | kills by phase | exited before the kill | leftovers after kills | invariant violations | took |\n")
	s.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, k := range r.Kinds {
		win := fmt.Sprintf("%.0f ms", k.WindowMS)
		if k.WindowLoMS != k.WindowHiMS {
			win = fmt.Sprintf("%.0f ms at first, %.0f–%.0f ms", k.WindowMS, k.WindowLoMS, k.WindowHiMS)
		}
		fmt.Fprintf(&s, "| %s | %d | %s | %s | %d | %d | **%d** | %s |\n", k.Kind, k.Cycles, win, k.PhaseText, k.Missed, k.Leftovers,
			k.Violations, (time.Duration(k.Seconds) * time.Second).String())
	}
	s.WriteString("\nChecked after every kill and after every completed run: at most one CSR per key (the public keys of all the node's CSRs); " +
		"client-go's `certificate.NewFileStore(\"kubelet-client\", dir, dir, \"\", \"\").Current()` reads the store; the kubeconfig parses and " +
		"authenticates (a SelfSubjectReview answers `system:node:<name>`); no torn or zero-length file; at most one temporary key; a valid " +
		"certificate, once stored, is never replaced by nothing. *Leftovers* are what a kill inside a write leaves and the design tolerates " +
		"until the next run (an empty pair file nothing points at, an unrenamed temporary file); after a completed run any leftover is a violation.\n\n")
	if len(r.ENOSPC) > 0 {
		fmt.Fprintf(&s, "ENOSPC (root: a 64 KiB tmpfs under the certificate directory and another under the kubeconfig, filled so that exactly the "+
			"named write fails; each case: a one-line error naming the file and a non-zero exit, or for `tlsboot run` a logged retry naming it; "+
			"nothing valid lost; a later run with space completes on the same CSR): %d cases passed — %s.\n", len(r.ENOSPC), strings.Join(r.ENOSPC, "; "))
	}
	return s.String()
}

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	data, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

func kernel() string {
	data, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(data))
}
