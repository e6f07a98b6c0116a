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
// shows outside their mount namespaces, then or after.
func TestKubelet(t *testing.T) {
	c := StartT(t, Options{})
	sharedPaths := []string{"/var/lib/kubelet/device-plugins/kubelet.sock", "/var/log/containers"}
	before := map[string]bool{}
	for _, p := range sharedPaths {
		_, err := os.Lstat(p)
		before[p] = err == nil
	}
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
	assertNoLeftovers(t, c.Dir(), sharedPaths, before)

	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	if done, _ := a.Exited(); !done {
		t.Error("kubelet-a still runs after Kill")
	}
	assertNoLeftovers(t, c.Dir(), sharedPaths, before)
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
	assertNoLeftovers(t, c.Dir(), sharedPaths, before)
}

// assertNoLeftovers: no mount of this process's mount namespace is under
// dir or a tmpfs of the kubelets, and the kubelets' shared paths are as
// they were before.
func assertNoLeftovers(t *testing.T, dir string, shared []string, before map[string]bool) {
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
	for _, p := range shared {
		_, err := os.Lstat(p)
		if exists := err == nil; exists != before[p] {
			t.Errorf("%s exists=%t outside the kubelet's namespace, was %t before", p, exists, before[p])
		}
	}
}
