package e2e

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestExampleAgent runs examples/agent, the program that shows how to build
// a node agent on the library, against a cluster that signs 1-minute
// certificates. It bootstraps, authenticates as system:node:<name>, and its
// Lease heartbeat goes on across two rotations, past the expiry of each
// replaced certificate (the API server checks a client certificate's
// validity at every request, so a heartbeat after that expiry was made with
// the new one), in one process that logs no error and no failed renewal.
func TestExampleAgent(t *testing.T) {
	t.Parallel()
	bin := buildExampleAgent(t)
	c := cluster(t, "short")
	client := admin(t, c)
	n := newNode(t, c)
	a := &agentProc{proc: start(t, bin,
		"--bootstrap-kubeconfig", n.bootstrapKubeconfig,
		"--kubeconfig", n.kubeconfig,
		"--cert-dir", n.certDir,
		"--node-name", n.name,
		"--heartbeat", "1s",
	)}

	waitOutput(t, a.proc, `"Lease renewed"`)
	waitOutput(t, a.proc, fmt.Sprintf(`"Authenticated" user="system:node:%s"`, n.name))
	lease := func() *coordinationv1.Lease {
		l, err := client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(t.Context(), n.name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("reading the Lease of node %s: %v", n.name, err)
		}
		return l
	}
	if h := lease().Spec.HolderIdentity; h == nil || *h != n.name {
		t.Errorf("Lease holder %v, want %s", h, n.name)
	}

	path := filepath.Join(n.certDir, "kubelet-client-current.pem")
	cur := leafOf(t, path)
	for i := 1; i <= 2; i++ {
		var next *x509.Certificate
		await(t, a, 2*time.Minute, fmt.Sprintf("rotation %d", i), func() bool {
			if l := leafOf(t, path); l.SerialNumber.Cmp(cur.SerialNumber) != 0 {
				next = l
				return true
			}
			return false
		})
		// The agent says it renewed with the new certificate after the
		// old one expired, and the Lease shows such a renewal.
		await(t, a, 2*time.Minute, fmt.Sprintf("a heartbeat after certificate %d expired", i), func() bool {
			return renewedAfter(a.stderr.String(), next.SerialNumber.Text(16), cur.NotAfter) &&
				lease().Spec.RenewTime.After(cur.NotAfter)
		})
		cur = next
	}

	r := a.stop(t)
	if !strings.Contains(r.stderr, `"Stopped"`) {
		t.Errorf("no \"Stopped\" line after SIGTERM:\n%s", r.stderr)
	}
	checkAgentLog(t, r.stderr, a.cmd.Process.Pid)
	if os.Getenv("TLSBOOT_E2E_SHOW_LOGS") != "" {
		t.Log(r.stderr)
	}
}

// buildExampleAgent builds examples/agent into a temporary directory.
func buildExampleAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "agent")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/tlsboot/tlsboot/examples/agent").CombinedOutput()
	if err != nil {
		t.Fatalf("building examples/agent: %v\n%s", err, out)
	}
	return bin
}

var leaseRenewedRE = regexp.MustCompile(`"Lease renewed" .*renew_time="([^"]+)" serial="([0-9a-f]+)"`)

// renewedAfter reports whether the log has a Lease renewal made with the
// certificate of serial (hex) at a time after t.
func renewedAfter(log, serial string, t time.Time) bool {
	for _, m := range leaseRenewedRE.FindAllStringSubmatch(log, -1) {
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err == nil && m[2] == serial && at.After(t) {
			return true
		}
	}
	return false
}

// klogHeaderRE matches the header of a klog line: severity, date, time,
// process ID.
var klogHeaderRE = regexp.MustCompile(`^([IWEF])\d{4} [0-9:.]+\s+(\d+) `)

// checkAgentLog fails t for an error line, a failed renewal or heartbeat,
// or a line of another process than pid (a restart).
func checkAgentLog(t *testing.T, log string, pid int) {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		m := klogHeaderRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if m[1] == "E" || m[1] == "F" || strings.Contains(line, "renewal failed") || strings.Contains(line, "Heartbeat failed") {
			t.Errorf("agent logged a failure: %s", line)
		}
		if p, _ := strconv.Atoi(m[2]); p != pid {
			t.Errorf("a line of process %d, want only %d: %s", p, pid, line)
		}
	}
}
