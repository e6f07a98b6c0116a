package crash

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/internal/testbin"
	"github.com/tlsboot/tlsboot/internal/testcluster"
)

var (
	seedFlag   = flag.Uint64("seed", 0, "seed of the random kill instants; 0 takes $TLSBOOT_CRASH_SEED, else the clock (the seed is printed either way)")
	cyclesFlag = flag.Int("crash.cycles", 0, "kill cycles per kind (bootstrap, run); 0 takes $TLSBOOT_CRASH_CYCLES, else 50")
	reportFlag = flag.String("crash.report", "", "file to write the counts to as JSON once every test passed (bench/crash turns it into BENCHMARKS.md's section); empty writes nothing")
)

var (
	seed       uint64 // the seed in use, from -seed, $TLSBOOT_CRASH_SEED or the clock
	cycles     int    // kill cycles per kind
	tlsbootBin string // the binary under test, built once by TestMain

	clusterMu sync.Mutex // guards shared
	shared    *testcluster.Cluster
)

func TestMain(m *testing.M) { os.Exit(mainRun(m)) }

func mainRun(m *testing.M) int {
	flag.Parse()
	// client-go's file store, which the checks read the store with, logs
	// every load through klog: not this test's output.
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	// The agents inherit SIGHUP ignored, so that one sent before they
	// listen for it is lost rather than fatal (see agent.hup).
	signal.Ignore(syscall.SIGHUP)
	if err := settings(); err != nil {
		fmt.Fprintln(os.Stderr, "crash:", err)
		return 2
	}
	fmt.Fprintf(os.Stderr, "crash: seed %d (run again with -seed=%d), %d cycles per kind\n", seed, seed, cycles)
	bin, cleanup, err := testbin.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	tlsbootBin = bin
	start := time.Now()
	code := m.Run()
	took := time.Since(start)
	clusterMu.Lock()
	if shared != nil {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "control plane logs:%s\n", shared.Logs(40))
		}
		shared.Stop()
	}
	clusterMu.Unlock()
	fmt.Fprintf(os.Stderr, "crash: seed %d, took %s\n%s", seed, took.Round(time.Second), summary())
	if code == 0 && *reportFlag != "" {
		if err := writeReport(*reportFlag, took); err != nil {
			fmt.Fprintln(os.Stderr, "crash: writing the report:", err)
			return 1
		}
	}
	return code
}

// settings resolves seed and cycles from the flags, the environment and
// the defaults.
func settings() error {
	seed, cycles = *seedFlag, *cyclesFlag
	if s := os.Getenv("TLSBOOT_CRASH_SEED"); seed == 0 && s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return fmt.Errorf("TLSBOOT_CRASH_SEED=%q is not an unsigned integer", s)
		}
		seed = v
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	if s := os.Getenv("TLSBOOT_CRASH_CYCLES"); cycles == 0 && s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			return fmt.Errorf("TLSBOOT_CRASH_CYCLES=%q is not a positive integer", s)
		}
		cycles = v
	}
	if cycles == 0 {
		cycles = 50
	}
	if cycles < 0 {
		return fmt.Errorf("-crash.cycles=%d must be positive", cycles)
	}
	return nil
}

// rng returns the random source of one kind of test: the seed and the
// kind's number, so that tests running in parallel do not share one.
func rng(kind uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, kind)) }

// cluster returns the one control plane every test of the package uses,
// starting it on first use: kube-controller-manager's csrapproving
// approves node client CSRs (bootstrap and renewal) and csrsigning signs
// them for an hour. TestMain stops it.
func cluster(t *testing.T) *testcluster.Cluster {
	t.Helper()
	clusterMu.Lock()
	defer clusterMu.Unlock()
	if shared != nil {
		return shared
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := testcluster.Start(ctx, testcluster.Options{SigningDuration: time.Hour})
	if err != nil {
		t.Fatalf("starting the control plane: %v", err)
	}
	shared = c
	return c
}
