package testcluster

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestKubelet: two real kubelets bootstrap through kube-controller-manager,
// register their Nodes (with the version ldflags in place) and renew their
// Leases; one is started again after SIGKILL, the other restarted. Nothing they mount or create
// shows outside their mount namespaces, and the host's kernel settings they would tune keep
// their values, while they run and after.
func TestKubelet(t *testing.T) {
	c := StartT(t, Options{})
	before := snapshotHost(t)
	a := c.StartKubelet(t, "kubelet-a", KubeletOptions{})
	b := c.StartKubelet(t, "kubelet-b", KubeletOptions{})
	start := time.Now()
	for _, k := range []*Kubelet{a, b} {
		node, _, err := k.WaitRegistered(t.Context(), start)
		if err != nil {
			t.Fatal(err)
		}
		if v := node.Status.NodeInfo.KubeletVersion; v != Version {
			t.Errorf("Node %s reports kubelet version %q, want %s", k.Name(), v, Version)
		}
	}
	assertNoLeftovers(t, c.Dir(), before)

	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	if done, _ := a.Exited(); !done {
		t.Error("kubelet-a still runs after Kill")
	}
	assertNoLeftovers(t, c.Dir(), before)
	restarted := time.Now()
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.WaitRegistered(t.Context(), restarted); err != nil {
		t.Fatal(err)
	}
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	// Only the new process can renew the Lease after Restart returned.
	if _, _, err := b.WaitRegistered(t.Context(), time.Now()); err != nil {
		t.Fatal(err)
	}
	// The restarted kubelets found their certificates: no new client CSR.
	client, err := c.AdminClient()
	if err != nil {
		t.Fatal(err)
	}
	csrs, err := client.CertificatesV1().CertificateSigningRequests().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, csr := range csrs.Items {
		if csr.Spec.SignerName == certificatesv1.KubeAPIServerClientKubeletSignerName {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d kubelet client CSRs, want 2 (one per kubelet, none after the restarts)", n)
	}
	for _, k := range []*Kubelet{a, b} {
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	assertNoLeftovers(t, c.Dir(), before)
}

// sharedPaths are host paths a kubelet (or mount(8) on its behalf: utab
// in /run/mount) would create whatever its flags say.
var sharedPaths = []string{"/var/lib/kubelet/device-plugins/kubelet.sock", "/var/log/containers", "/run/mount"}

// hostSysctls are the global (not namespaced) kernel settings the kubelet
// tunes at start-up (its setupKernelTunables).
var hostSysctls = []string{
	"vm/overcommit_memory",
	"vm/panic_on_oom",
	"kernel/panic",
	"kernel/panic_on_oops",
	"kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes",
}

// hostState is what a kubelet must leave as it found it.
type hostState struct {
	exists  map[string]bool   // sharedPaths
	sysctls map[string]string // hostSysctls
}

func snapshotHost(t *testing.T) hostState {
	t.Helper()
	s := hostState{exists: map[string]bool{}, sysctls: map[string]string{}}
	for _, p := range sharedPaths {
		_, err := os.Lstat(p)
		s.exists[p] = err == nil
	}
	for _, name := range hostSysctls {
		data, err := os.ReadFile("/proc/sys/" + name)
		if err != nil {
			t.Fatal(err)
		}
		s.sysctls[name] = strings.TrimSpace(string(data))
	}
	return s
}

// assertNoLeftovers: no mount of this process's mount namespace is under
// dir or a tmpfs of the kubelets, and the shared paths and the host's
// kernel settings are as they were before.
func assertNoLeftovers(t *testing.T, dir string, before hostState) {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); strings.Contains(line, dir) || strings.Contains(line, "tlsboot-kubelet") {
			t.Errorf("mount left outside the kubelet's namespace: %s", line)
		}
	}
	now := snapshotHost(t)
	for _, p := range sharedPaths {
		if now.exists[p] != before.exists[p] {
			t.Errorf("%s exists=%t outside the kubelet's namespace, was %t before", p, now.exists[p], before.exists[p])
		}
	}
	for _, name := range hostSysctls {
		if now.sysctls[name] != before.sysctls[name] {
			t.Errorf("host /proc/sys/%s is %s, was %s before the kubelets: restore it with sysctl -w %s=%[3]s",
				name, now.sysctls[name], before.sysctls[name], strings.ReplaceAll(name, "/", "."))
		}
	}
}
