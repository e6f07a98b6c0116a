package crash

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// proc is a running tlsboot.
type proc struct {
	cmd     *exec.Cmd
	stdout  *logBuffer
	stderr  *logBuffer
	started time.Time
	done    chan struct{} // closed once the process has exited and been reaped
	took    time.Duration // from start to exit, set before done closes
}

// start runs tlsboot with args. The process gets SIGKILL when the test
// process dies, and at the latest in t.Cleanup.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{stdout: newLogBuffer(), stderr: newLogBuffer(), done: make(chan struct{})}
	p.cmd = exec.Command(tlsbootBin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.started = time.Now()
	go func() {
		p.cmd.Wait()
		p.took = time.Since(p.started)
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// killAfter sends SIGKILL once d has passed since the process started and
// waits until it is reaped. It reports false when the process had exited
// by itself before.
func (p *proc) killAfter(d time.Duration) bool {
	timer := time.NewTimer(time.Until(p.started.Add(d)))
	defer timer.Stop()
	select {
	case <-p.done:
		return false
	case <-timer.C:
	}
	p.cmd.Process.Kill()
	<-p.done
	return p.signal() == syscall.SIGKILL
}

// signal is the signal that ended the process, or 0.
func (p *proc) signal() syscall.Signal {
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal()
	}
	return 0
}

// wait waits for the process to exit, for at most 3 minutes (a liveness
// bound: a run that long is stuck, not slow).
func (p *proc) wait(t *testing.T) result {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(3 * time.Minute):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%v did not finish in 3m\nstderr:\n%s", p.cmd.Args, p.stderr)
	}
	return result{stdout: p.stdout.String(), stderr: p.stderr.String(), code: p.cmd.ProcessState.ExitCode(), took: p.took}
}

// awaitLog waits until the process has written s to stderr.
func (p *proc) awaitLog(t *testing.T, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := p.stderr.await(ctx, p.done, s); err != nil {
		t.Fatalf("waiting for %q in the output of %v: %v\nstderr:\n%s", s, p.cmd.Args[:2], err, p.stderr)
	}
}

type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// lastLine is the one line a failed run prints.
func (r result) lastLine() string {
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	return lines[len(lines)-1]
}

// agent is a running `tlsboot run`.
type agent struct {
	*proc
	url string // http://host:port of /readyz
}

var errExited = errors.New("the process exited")

// startAgent runs `tlsboot run` for n and waits until /readyz answers 200:
// a valid client certificate is on disk.
func startAgent(t *testing.T, n *node) *agent {
	t.Helper()
	p := start(t, n.args("run", "--metrics-bind-address", "127.0.0.1:0")...)
	const marker = `"Serving metrics and health endpoints" address="`
	p.awaitLog(t, marker)
	out := p.stderr.String()
	addr := out[strings.Index(out, marker)+len(marker):]
	a := &agent{proc: p, url: "http://" + addr[:strings.Index(addr, `"`)]}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		if p.exited() {
			return false, errExited
		}
		resp, err := client.Get(a.url + "/readyz")
		if err != nil {
			return false, nil
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("waiting for the agent's /readyz: %v\nstderr:\n%s", err, p.stderr)
	}
	return a
}

// hup sends SIGHUP (rotate now) once the agent listens for it. The test
// process ignores SIGHUP (TestMain), so the agent starts with it ignored
// and a SIGHUP that arrives early is lost instead of killing it; its
// signal.Notify then installs a handler, which clears SIGHUP from the
// SigIgn mask in /proc/<pid>/status: that is the condition awaited.
func (a *agent) hup(t *testing.T) {
	t.Helper()
	status := fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid)
	err := wait.PollUntilContextTimeout(t.Context(), 5*time.Millisecond, 3*time.Minute, true, func(context.Context) (bool, error) {
		if a.exited() {
			return false, errExited
		}
		data, err := os.ReadFile(status)
		if err != nil {
			return false, nil
		}
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "SigIgn:"); ok {
				mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				return err == nil && mask&(1<<(syscall.SIGHUP-1)) == 0, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("waiting for the agent to handle SIGHUP: %v\nstderr:\n%s", err, a.stderr)
	}
	a.cmd.Process.Signal(syscall.SIGHUP)
}

// stop sends SIGTERM and fails the test unless the agent exits 0.
func (a *agent) stop(t *testing.T) {
	t.Helper()
	a.cmd.Process.Signal(syscall.SIGTERM)
	if r := a.wait(t); r.code != 0 {
		t.Fatalf("the agent exited %d after SIGTERM, want 0\n%s", r.code, r)
	}
}

// logBuffer collects output and lets a test wait for a string in it.
type logBuffer struct {
	mu      sync.Mutex // guards b and changed
	b       bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func newLogBuffer() *logBuffer { return &logBuffer{changed: make(chan struct{})} }

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.changed)
	l.changed = make(chan struct{})
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// count is how often s occurs in the output so far.
func (l *logBuffer) count(s string) int { return strings.Count(l.String(), s) }

// await returns once s is in the output, or an error when ctx ends or done
// is closed first.
func (l *logBuffer) await(ctx context.Context, done <-chan struct{}, s string) error {
	for {
		l.mu.Lock()
		found, changed := strings.Contains(l.b.String(), s), l.changed
		l.mu.Unlock()
		if found {
			return nil
		}
		select {
		case <-changed:
		case <-done:
			if strings.Contains(l.String(), s) {
				return nil
			}
			return errExited
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
