package crash

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// record counts the findings of one check in tl and reports each
// violation.
func record(t *testing.T, tl *tally, f findings) {
	t.Helper()
	tl.leftovers += f.leftovers
	tl.staleKubeconfigTemps += f.staleKubeconfigTemps
	tl.violations += len(f.violations)
	for _, v := range f.violations {
		t.Error(v)
	}
	if f.staleKubeconfigTemps > 0 {
		t.Logf("known issue: a stale temporary file of the kubeconfig survived a completed run (%d new)", f.staleKubeconfigTemps)
	}
}

// violation is findings of one violation.
func violation(line string) findings { return findings{violations: []string{line}} }

// undisturbedRuns is how many undisturbed runs the kill window is measured
// from.
const undisturbedRuns = 5

// window is 1.25 times the median of the measured durations: kill instants
// are drawn uniformly below it, so that they land in every phase of a run
// and a little after. The median, not the longest: a first run that warms
// caches up would otherwise stretch the window and waste kills on an idle
// agent.
func window(d []time.Duration) time.Duration {
	d = slices.Clone(d)
	slices.Sort(d)
	return d[len(d)/2] * 5 / 4
}

// TestKillBootstrap SIGKILLs `tlsboot bootstrap` at random instants: each
// cycle a new node bootstraps, is killed, is checked, runs again to
// completion and is checked again.
func TestKillBootstrap(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	ck := newChecker(t, c)
	tl := newTally("bootstrap")
	rnd := rng(1)
	began := time.Now()

	var undisturbed []time.Duration
	for range undisturbedRuns {
		n := newNode(t, c, "b")
		r := start(t, n.args("bootstrap")...).wait(t)
		if r.code != 0 {
			t.Fatalf("undisturbed bootstrap: %s", r)
		}
		undisturbed = append(undisturbed, r.took)
		record(t, tl, ck.check(t, n, complete))
	}
	tl.window = window(undisturbed)
	t.Logf("seed %d; undisturbed bootstraps took %v: killing uniformly within %v", seed, undisturbed, tl.window)

	for i := range cycles {
		n := newNode(t, c, "b")
		p := start(t, n.args("bootstrap")...)
		if p.killAfter(time.Duration(rnd.Int64N(int64(tl.window)))) {
			tl.phases[bootstrapPhase(p, n)]++
		} else {
			tl.missed++
		}
		record(t, tl, ck.check(t, n, killedFresh))

		r := start(t, n.args("bootstrap")...).wait(t)
		if r.code != 0 {
			record(t, tl, violation(n.name+": the run after the kill failed: "+r.String()))
			continue
		}
		record(t, tl, ck.check(t, n, complete))
		tl.cycles++
		if (i+1)%50 == 0 {
			t.Logf("bootstrap: %d cycles, %s, %d violations", i+1, tl.phaseText(), tl.violations)
		}
	}
	tl.took = time.Since(began)
}

// bootstrapPhase tells from the killed run's log lines and files which
// step the kill interrupted.
func bootstrapPhase(p *proc, n *node) string {
	out := p.stderr.String()
	switch {
	case !strings.Contains(out, "Bootstrapping client certificate"):
		return "start"
	case !strings.Contains(out, "Certificate signing request submitted"):
		if exists(n.pendingKey()) {
			return "csr-create"
		}
		return "key"
	case strings.Contains(out, "Client certificate issued"):
		return "finish"
	case exists(n.kubeconfig) || n.current() != nil || hasPairFile(n):
		return "persist"
	}
	return "wait"
}

func hasPairFile(n *node) bool {
	m, _ := filepath.Glob(filepath.Join(n.certDir, prefix+"-2*.pem"))
	return len(m) > 0
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// TestKillRun SIGKILLs `tlsboot run` while it rotates: each cycle the agent
// gets SIGHUP (rotate now), is killed at a random instant, is checked,
// restarts until the rotation is done, stops, and is checked again. The
// node keeps its files across all cycles.
func TestKillRun(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	ck := newChecker(t, c)
	tl := newTally("run")
	rnd := rng(2)
	began := time.Now()

	n := newNode(t, c, "r")
	if r := start(t, n.args("bootstrap")...).wait(t); r.code != 0 {
		t.Fatalf("bootstrap: %s", r)
	}
	record(t, tl, ck.check(t, n, complete))

	var undisturbed []time.Duration
	a := startAgent(t, n)
	for i := range undisturbedRuns {
		hup := time.Now()
		a.hup(t)
		awaitRotated(t, a, i+1)
		undisturbed = append(undisturbed, time.Since(hup))
	}
	a.stop(t)
	tl.window = window(undisturbed)
	t.Logf("seed %d; undisturbed rotations took %v: killing uniformly within %v after SIGHUP", seed, undisturbed, tl.window)

	for i := range cycles {
		a := startAgent(t, n)
		before := n.serial()
		a.hup(t)
		hup := time.Now()
		offset := time.Duration(rnd.Int64N(int64(tl.window)))
		if !a.killAfter(hup.Sub(a.started) + offset) {
			record(t, tl, violation(n.name+": the agent exited by itself: "+a.wait(t).String()))
			continue
		}
		tl.phases[runPhase(a.proc, n, before)]++
		record(t, tl, ck.check(t, n, holding))

		resumes := exists(n.pendingKey())
		b := startAgent(t, n)
		if n.serial() == before && !resumes {
			// Killed before the rotation left anything: ask again.
			b.hup(t)
		}
		awaitSerialChange(t, b, n, before)
		b.stop(t)
		record(t, tl, ck.check(t, n, complete))
		tl.cycles++
		if (i+1)%50 == 0 {
			t.Logf("run: %d cycles, %s, %d violations", i+1, tl.phaseText(), tl.violations)
		}
	}
	tl.took = time.Since(began)
}

// awaitRotated waits until the agent has logged its n-th rotation.
func awaitRotated(t *testing.T, a *agent, n int) {
	t.Helper()
	for a.stderr.count(`"Certificate rotated"`) < n {
		awaitMore(t, a.proc)
	}
}

// awaitMore waits until the process writes anything more to stderr.
func awaitMore(t *testing.T, p *proc) {
	t.Helper()
	p.stderr.mu.Lock()
	changed := p.stderr.changed
	p.stderr.mu.Unlock()
	select {
	case <-changed:
	case <-p.done:
		t.Fatalf("%v exited:\n%s", p.cmd.Args[:2], p.stderr)
	case <-time.After(3 * time.Minute):
		t.Fatalf("%v wrote nothing for 3m:\n%s", p.cmd.Args[:2], p.stderr)
	}
}

// awaitSerialChange waits until the stored certificate is no longer the one
// with serial before, and the agent has finished the rotation that stored
// it (logged it, or found it done at start).
func awaitSerialChange(t *testing.T, a *agent, n *node, before string) {
	t.Helper()
	for n.serial() == before {
		awaitMore(t, a.proc)
	}
}

// runPhase tells from the killed agent's log lines and files which step of
// the rotation the kill interrupted.
func runPhase(p *proc, n *node, before string) string {
	out := p.stderr.String()
	switch {
	case !strings.Contains(out, `"Renewing certificate"`):
		return "trigger"
	case !strings.Contains(out, "Certificate signing request submitted"):
		if exists(n.pendingKey()) {
			return "csr-create"
		}
		return "key"
	case strings.Contains(out, `"Certificate rotated"`):
		return "finish"
	case n.serial() != before:
		return "persist"
	}
	return "wait"
}
