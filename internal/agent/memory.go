package agent

import (
	"context"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/rotation"
)

// ReleaseExecutableEnv names the environment variable that turns off the
// release of the executable's pages (see releaseMemory) when set to a false
// value ("0", "false"). The heap is returned to the OS regardless.
const ReleaseExecutableEnv = "TLSBOOT_RELEASE_EXECUTABLE"

// releaseExecutableEnabled reports whether ReleaseExecutableEnv allows the
// release; unset or unparsable means yes.
func releaseExecutableEnabled() bool {
	v, ok := os.LookupEnv(ReleaseExecutableEnv)
	if !ok {
		return true
	}
	on, err := strconv.ParseBool(v)
	return err != nil || on
}

// releaseMemory gives back to the OS what an idle agent holds but will not
// use until its next deadline, hours away: the garbage a rotation leaves
// (TLS handshakes, a watch, JSON decoding), and the pages of its own
// executable that start-up and the rotation touched. Most of an idle Go
// agent's resident memory is the latter: the initialisation of client-go's
// scheme, which registers every Kubernetes API group, reads code and type
// data spread over the whole binary, and the pages stay resident although
// nothing reads them again. The kernel reads back from the file whatever is
// used later (a minor or major fault, never a failure); where it refuses
// (no MADV_PAGEOUT before Linux 5.4, or a binary this user neither owns nor
// may write, which the kernel protects from being evicted by others) the
// pages simply stay.
func (a *agent) releaseMemory(ctx context.Context) {
	start := time.Now()
	debug.FreeOSMemory()
	if !a.releaseExecutable {
		return
	}
	n, err := releaseExecutable()
	logger := klog.FromContext(ctx).V(4)
	if err != nil {
		logger.Info("Could not release the executable's pages; they stay resident", "err", err)
		return
	}
	logger.Info("Released memory", "executable_bytes", n, "took", time.Since(start).String())
}

// withMemoryRelease releases memory after each rotation (see releaseMemory).
func (a *agent) withMemoryRelease(ctx context.Context, hooks rotation.Hooks) rotation.Hooks {
	prev := hooks.Rotated
	hooks.Rotated = func(name string, reason rotation.Reason, issuance time.Duration) {
		if prev != nil {
			prev(name, reason, issuance)
		}
		a.releaseMemory(ctx)
	}
	return hooks
}
