package crash

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// tally counts what one kind of kill test did.
type tally struct {
	kind   string
	window time.Duration // kill instants are uniform in [0, window)
	// windowLo and windowHi bound the window when it follows the load
	// (run); both are window otherwise.
	windowLo, windowHi time.Duration
	cycles             int            // completed cycles
	phases             map[string]int // kills by the phase they landed in
	missed             int            // the process had exited before its kill instant
	leftovers          int            // tolerated leftovers of interrupted writes seen after kills
	violations         int
	took               time.Duration
}

var (
	talliesMu sync.Mutex // guards tallies and enospc
	tallies   = map[string]*tally{}
	enospc    []string // ENOSPC cases that passed
)

func newTally(kind string) *tally {
	t := &tally{kind: kind, phases: map[string]int{}}
	talliesMu.Lock()
	defer talliesMu.Unlock()
	tallies[kind] = t
	return t
}

func passedENOSPC(name string) {
	talliesMu.Lock()
	defer talliesMu.Unlock()
	enospc = append(enospc, name)
}

// phaseOrder lists the phases in the order a run goes through them.
var phaseOrder = []string{"start", "trigger", "key", "csr-create", "wait", "persist", "finish"}

func (t *tally) phaseText() string {
	var parts []string
	for _, p := range phaseOrder {
		if n := t.phases[p]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", p, n))
		}
	}
	return strings.Join(parts, ", ")
}

// summary is the tallies as plain text, for the test log.
func summary() string {
	talliesMu.Lock()
	defer talliesMu.Unlock()
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(tallies)) {
		t := tallies[k]
		fmt.Fprintf(&b, "crash: %s: %d cycles in %s, kill window %s (%s..%s), kills by phase: %s; exited before the kill %d; leftovers after kills %d; violations %d\n",
			t.kind, t.cycles, t.took.Round(time.Second), t.window.Round(time.Millisecond), t.windowLo.Round(time.Millisecond), t.windowHi.Round(time.Millisecond), t.phaseText(), t.missed, t.leftovers, t.violations)
	}
	if len(enospc) > 0 {
		fmt.Fprintf(&b, "crash: ENOSPC cases passed: %d (%s)\n", len(enospc), strings.Join(enospc, "; "))
	}
	return b.String()
}

// report is what the tests did, as JSON for bench/crash, which writes
// the crash section of BENCHMARKS.md from it (through
// bench/internal/mdsection, which this package may not import).
type report struct {
	Seed    uint64         `json:"seed"`
	Cycles  int            `json:"cycles_per_kind"`
	Seconds float64        `json:"seconds"`
	Kinds   []reportedKind `json:"kinds"`
	ENOSPC  []string       `json:"enospc_passed"`
}

type reportedKind struct {
	Kind       string         `json:"kind"`
	WindowMS   float64        `json:"kill_window_ms"`
	WindowLoMS float64        `json:"kill_window_min_ms"`
	WindowHiMS float64        `json:"kill_window_max_ms"`
	Cycles     int            `json:"cycles"`
	Phases     map[string]int `json:"kills_by_phase"`
	PhaseText  string         `json:"kills_by_phase_text"`
	Missed     int            `json:"exited_before_kill"`
	Leftovers  int            `json:"leftovers_after_kills"`
	Violations int            `json:"violations"`
	Seconds    float64        `json:"seconds"`
}

// writeReport writes the report as JSON to path. It writes nothing unless
// both kill tests ran.
func writeReport(path string, took time.Duration) error {
	talliesMu.Lock()
	defer talliesMu.Unlock()
	r := report{Seed: seed, Cycles: cycles, Seconds: took.Seconds(), ENOSPC: enospc}
	for _, k := range []string{"bootstrap", "run"} {
		t := tallies[k]
		if t == nil {
			return fmt.Errorf("the %s kill test did not run (filtered out with -run?): nothing to report", k)
		}
		r.Kinds = append(r.Kinds, reportedKind{
			Kind: t.kind, WindowMS: ms(t.window), WindowLoMS: ms(t.windowLo), WindowHiMS: ms(t.windowHi), Cycles: t.cycles,
			Phases: t.phases, PhaseText: t.phaseText(), Missed: t.missed, Leftovers: t.leftovers,
			Violations: t.violations, Seconds: t.took.Seconds(),
		})
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
