package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/rotation"
)

// hookTimeout bounds one run of the --on-rotate command.
const hookTimeout = 5 * time.Minute

// hookWaitDelay bounds the wait for the output of a killed command.
const hookWaitDelay = 10 * time.Second

// withOnRotate adds the --on-rotate command to the Rotated hook. The
// command runs in the background (hooks must not block the managers), gets
// the certificate's path in TLSBOOT_CERT_PATH, and its failure is logged,
// never fatal. The end of ctx (shutdown) stops a command still running, and
// a rotation that completes after it (a manager finishing the certificate
// it was writing) does not start the command but logs one line saying so.
// The agent waits for the commands after it has waited for the managers
// (see stop), so no command is started after that wait.
func (a *agent) withOnRotate(ctx context.Context, hooks rotation.Hooks) rotation.Hooks {
	if a.opts.OnRotate == "" {
		return hooks
	}
	prev := hooks.Rotated
	hooks.Rotated = func(name string, reason rotation.Reason, issuance time.Duration) {
		if prev != nil {
			prev(name, reason, issuance)
		}
		path := a.certPath(name)
		if ctx.Err() != nil {
			klog.FromContext(ctx).Info("Skipped the on-rotate command: the agent is stopping; run it by hand if the new certificate must be picked up now",
				"certificate", name, "reason", reason, "path", path)
			return
		}
		a.hooks.Go(func() { a.runHook(ctx, name, reason, path) })
	}
	return hooks
}

func (a *agent) certPath(name string) string {
	if name == "serving" {
		return filepath.Join(filepath.Dir(a.client.CurrentPath()), ServingPrefix+"-current.pem")
	}
	return a.client.CurrentPath()
}

func (a *agent) runHook(ctx context.Context, name string, reason rotation.Reason, path string) {
	logger := klog.FromContext(ctx)
	// Shutdown cancels ctx and so stops a command still running.
	ctx, cancel := context.WithTimeout(ctx, hookTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", a.opts.OnRotate)
	cmd.Env = append(os.Environ(),
		"TLSBOOT_CERT_PATH="+path,
		"TLSBOOT_CERT_NAME="+name,
		"TLSBOOT_ROTATION_REASON="+string(reason),
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Killing the shell does not kill what it started in the background,
	// which would keep the output pipe, and so Wait, and so the agent's
	// shutdown, open: stop waiting for the pipe a while after the kill.
	cmd.WaitDelay = hookWaitDelay
	start := time.Now()
	err := cmd.Run()
	switch {
	case err != nil && errors.Is(ctx.Err(), context.Canceled):
		logger.Info("Stopped the on-rotate command: the agent is stopping; the certificate is in place regardless", "certificate", name,
			"output", tail(out.String(), 512))
		return
	case err != nil:
		logger.Info("The on-rotate command failed; the certificate is in place regardless", "certificate", name,
			"err", err, "output", tail(out.String(), 512))
		return
	}
	logger.Info("Ran the on-rotate command", "certificate", name, "took", time.Since(start).Round(time.Millisecond).String())
}

// tail returns the last n bytes of s, trimmed.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}
