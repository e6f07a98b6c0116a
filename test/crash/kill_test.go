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
	tl.violations += len(f.violations)
	for _, v := range f.violations {
		t.Error(v)
	}
}

// violation is findings of one violation.
func violation(line string) findings { return findings{violations: []string{line}} }

// warmUps undisturbed runs come first and are not measured (the first
// runs fill caches and are slower); undisturbedRuns are then measured.
const warmUps, undisturbedRuns = 2, 5

// window is the longest of the measured durations: kill instants are drawn
// uniformly below it, so that they land in every phase of a run, even of
// one as slow as the slowest measured. (The median was tried: with
// durations that vary by a factor of 4 on a busy machine, it left whole
// phases without kills.)
func window(d []time.Duration) time.Duration { return slices.Max(d) }

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

	// undisturbed bootstraps a new node without a kill and returns how
	// long it took.
	undisturbed := func() time.Duration {
		n := newNode(t, c, "b")
		r := start(t, n.args("bootstrap")...).wait(t)
		if r.code != 0 {
			t.Fatalf("undisturbed bootstrap: %s", r)
		}
		record(t, tl, ck.check(t, n, complete))
		ck.forget(t, n)
		return r.took
	}
	var measured []time.Duration
	for i := range warmUps + undisturbedRuns {
		if d := undisturbed(); i >= warmUps {
			measured = append(measured, d)
		}
	}
	tl.window = window(measured)
	tl.windowLo, tl.windowHi = tl.window, tl.window
	t.Logf("seed %d; undisturbed bootstraps took %v: killing uniformly within %v", seed, measured, tl.window)

	for i := range cycles {
		if i%10 == 9 {
			// A new undisturbed run replaces the oldest measured one,
			// so that the window follows the machine's load.
			measured = append(measured[1:], undisturbed())
			w := window(measured)
			tl.windowLo, tl.windowHi = min(tl.windowLo, w), max(tl.windowHi, w)
		}
		n := newNode(t, c, "b")
		p := start(t, n.args("bootstrap")...)
		if p.killAfter(time.Duration(rnd.Int64N(int64(window(measured))))) {
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
		ck.forget(t, n)
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

	// Measured as the cycles run: a fresh agent, SIGHUP once it listens
	// for it, the rotation logged. (A warm agent rotates several times
	// faster than one that has just started and verifies its certificate
	// with the server: measured that way, most kills landed before the
	// rotation began.)
	var undisturbed []time.Duration
	for i := range warmUps + undisturbedRuns {
		a := startAgent(t, n)
		a.hup(t)
		hup := time.Now()
		awaitRotated(t, a, 1)
		if i >= warmUps {
			undisturbed = append(undisturbed, time.Since(hup))
		}
		a.stop(t)
	}
	tl.window = window(undisturbed)
	tl.windowLo, tl.windowHi = tl.window, tl.window
	t.Logf("seed %d; undisturbed rotations took %v: killing uniformly within %v after SIGHUP", seed, undisturbed, tl.window)

	for i := range cycles {
		a := startAgent(t, n)
		before := n.serial()
		a.hup(t)
		hup := time.Now()
		offset := time.Duration(rnd.Int64N(int64(window(undisturbed))))
		if !a.killAfter(hup.Sub(a.started) + offset) {
			record(t, tl, violation(n.name+": the agent exited by itself: "+a.wait(t).String()))
			continue
		}
		tl.phases[runPhase(a.proc, n, before)]++
		record(t, tl, ck.check(t, n, holding))

		resumes := exists(n.pendingKey())
		b := startAgent(t, n)
		if n.serial() == before && !resumes {
			// Killed before the rotation left anything: ask again. This
			// rotation is an undisturbed one of a fresh agent, measured
			// as the first ones were: it replaces the oldest of them, so
			// that the window follows the machine's load (a busy
			// machine slows the agent several times over, and a window
			// measured before would leave most kills before the
			// rotation began).
			b.hup(t)
			hup := time.Now()
			awaitSerialChange(t, b, n, before)
			undisturbed = append(undisturbed[1:], time.Since(hup))
			w := window(undisturbed)
			tl.windowLo, tl.windowHi = min(tl.windowLo, w), max(tl.windowHi, w)
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
	awaitOutput(t, a.proc, func() bool { return a.stderr.count(`"Certificate rotated"`) >= n })
}

// awaitSerialChange waits until the stored certificate is no longer the one
// with serial before. The agent logs the rotation after storing it, so
// each time it writes is a time to look again.
func awaitSerialChange(t *testing.T, a *agent, n *node, before string) {
	t.Helper()
	awaitOutput(t, a.proc, func() bool { return n.serial() != before })
}

// awaitOutput waits until cond holds, looking again each time the process
// writes to stderr; it fails the test if the process exits first or
// writes nothing for 3 minutes (stuck, not slow).
func awaitOutput(t *testing.T, p *proc, cond func() bool) {
	t.Helper()
	for {
		// Take the channel before looking, so that a write between the
		// look and the wait is not missed.
		p.stderr.mu.Lock()
		changed := p.stderr.changed
		p.stderr.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-p.done:
			if cond() {
				return
			}
			t.Fatalf("%v exited:\n%s", p.cmd.Args[:2], p.stderr)
		case <-time.After(3 * time.Minute):
			t.Fatalf("%v wrote nothing for 3m:\n%s", p.cmd.Args[:2], p.stderr)
		}
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
