package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/tlsboot/tlsboot/approval"
	"github.com/tlsboot/tlsboot/internal/testcluster"
)

// These tests run a real kubelet (internal/testcluster.StartKubelet: the
// kubelet built by `make controlplane`, on an in-memory container runtime,
// in its own mount namespace). It needs root, which CI has.

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the kubelet runs as root in its own mount namespace (unshare -m); CI runs these tests as root")
	}
}

// heartbeats waits until the kubelet has registered its Node and then
// renewed its Lease once more, and returns the Node.
func heartbeats(t *testing.T, k *testcluster.Kubelet, since time.Time) *corev1.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	_, lease, err := k.WaitRegistered(ctx, since)
	if err != nil {
		t.Fatal(err)
	}
	node, next, err := k.WaitRegistered(ctx, lease.Spec.RenewTime.Time)
	if err != nil {
		t.Fatalf("kubelet %s registered but did not renew its Lease again: %v", k.Name(), err)
	}
	if *next.Spec.HolderIdentity != k.Name() {
		t.Errorf("Lease %s held by %q, want %s", k.Name(), *next.Spec.HolderIdentity, k.Name())
	}
	return node
}

// csrsBySigner lists the node's CSRs (CN system:node:<node>) of one signer.
func csrsBySigner(t *testing.T, client kubernetes.Interface, node, signer string) []certificatesv1.CertificateSigningRequest {
	t.Helper()
	var out []certificatesv1.CertificateSigningRequest
	for _, c := range nodeCSRs(t, client, node) {
		if c.Spec.SignerName == signer {
			out = append(out, c)
		}
	}
	return out
}

// TestKubeletOnTlsbootIdentity: a kubelet configured as kubeadm configures
// it (bootstrap kubeconfig, rotation on) starts on the identity `tlsboot
// bootstrap` wrote: it finds the kubeconfig usable, files no client CSR of
// its own, registers its Node and heartbeats.
func TestKubeletOnTlsbootIdentity(t *testing.T) {
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		needRoot(t)
		c := clusterIn(t, "auto", layout)
		client := admin(t, c)
		n := newNode(t, c)
		if r := run(t, tlsbootBin, n.args()...); r.code != 0 {
			t.Fatalf("tlsboot bootstrap: %s", r)
		}
		start := time.Now()
		k := c.StartKubelet(t, n.name, testcluster.KubeletOptions{
			Kubeconfig: n.kubeconfig, CertDir: n.certDir, BootstrapKubeconfig: c.BootstrapKubeconfig, RotateCertificates: true})
		node := heartbeats(t, k, start)
		if v := node.Status.NodeInfo.KubeletVersion; v != testcluster.Version {
			t.Errorf("Node reports kubelet %q, want %s", v, testcluster.Version)
		}
		// With rotation on the kubelet takes the kubeconfig through
		// bootstrap.LoadClientConfig, which says so at -v=2.
		if !k.LogContains("Current kubeconfig file contents are still valid, no bootstrap necessary") {
			t.Errorf("the kubelet did not log that the kubeconfig needs no bootstrap")
		}
		if got := csrsBySigner(t, client, n.name, certificatesv1.KubeAPIServerClientKubeletSignerName); len(got) != 1 {
			t.Errorf("%d client CSRs for %s, want only tlsboot's", len(got), n.name)
		}
		if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
			t.Errorf("the kubeconfig authenticates as %q after the kubelet ran, want system:node:%s", u.Username, n.name)
		}
	})
}

// TestKubeletThenTlsboot: a kubelet bootstraps by itself (kube-controller-
// manager approves); `tlsboot status` explains its files and `tlsboot
// bootstrap` has nothing to do on them.
func TestKubeletThenTlsboot(t *testing.T) {
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		needRoot(t)
		c := clusterIn(t, "auto", layout)
		client := admin(t, c)
		n := newNode(t, c)
		start := time.Now()
		k := c.StartKubelet(t, n.name, testcluster.KubeletOptions{
			Kubeconfig: n.kubeconfig, CertDir: n.certDir, BootstrapKubeconfig: c.BootstrapKubeconfig, RotateCertificates: true})
		heartbeats(t, k, start)

		text, js, _ := status(t, n)
		if text.code != 0 || len(js.Certificates) == 0 {
			t.Fatalf("status of the kubelet's files: %s", text)
		}
		if cl := js.Certificates[0]; cl.State != "valid" || cl.Subject != "CN=system:node:"+n.name+",O=system:nodes" || cl.RotationBy == "" {
			t.Errorf("client certificate: %+v\n%s", cl, text.stdout)
		}
		if kc := js.Kubeconfig; kc == nil || !kc.UsesStore || !kc.Usable {
			t.Errorf("kubeconfig: %+v\n%s", js.Kubeconfig, text.stdout)
		}
		r := run(t, tlsbootBin, n.args()...)
		if r.code != 0 || !strings.Contains(r.stdout, "nothing to do") {
			t.Errorf("tlsboot bootstrap on the kubelet's identity: %s", r)
		}
		if got := csrsBySigner(t, client, n.name, certificatesv1.KubeAPIServerClientKubeletSignerName); len(got) != 1 {
			t.Errorf("%d client CSRs for %s, want only the kubelet's", len(got), n.name)
		}
	})
}

// kubeletApprover starts a cluster whose kube-controller-manager signs but
// does not approve, and `tlsboot approver` as deployed (its ServiceAccount
// and RBAC) with a serving scope of exactly the node's IP and name.
func kubeletApprover(t *testing.T, name, nodeIP string, extra ...string) (*testcluster.Cluster, *proc) {
	t.Helper()
	c := testcluster.StartT(t, approverClusterOptions)
	applyManifests(t, c)
	kubeconfig, _ := serviceAccountKubeconfig(t, c)
	args := append([]string{"--leader-elect-namespace", approverNamespace,
		"--allowed-ip-cidrs", nodeIP + "/32", "--allowed-dns-regex", regexp.QuoteMeta(name)}, extra...)
	p := startApprover(t, kubeconfig, args...)
	waitOutput(t, p, `"Became the leader`)
	return c, p
}

// nodeIP is the address a kubelet here reports (testcluster.NodeIP).
func nodeIP(t *testing.T) string {
	t.Helper()
	ip, err := testcluster.NodeIP()
	if err != nil {
		t.Fatal(err)
	}
	return ip
}

// TestKubeletServingCertificate: `tlsboot approver`, scoped to the node's
// network, approves the real kubelet's client and serving CSRs, and the
// kubelet then serves with the issued serving certificate.
func TestKubeletServingCertificate(t *testing.T) {
	needRoot(t)
	name := uniqueNodeName("kubelet-serving")
	c, _ := kubeletApprover(t, name, nodeIP(t))
	client := admin(t, c)
	start := time.Now()
	k := c.StartKubelet(t, name, testcluster.KubeletOptions{ServerTLSBootstrap: true, RotateCertificates: true})
	heartbeats(t, k, start)

	var serving certificatesv1.CertificateSigningRequest
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		got := csrsBySigner(t, client, name, certificatesv1.KubeletServingSignerName)
		if len(got) > 1 {
			t.Fatalf("%d serving CSRs for %s, want 1", len(got), name)
		}
		if len(got) == 1 && len(got[0].Status.Certificate) > 0 {
			serving = got[0]
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("the kubelet's serving CSR was not issued: %v", err)
	}
	if cond := serving.Status.Conditions; len(cond) == 0 || cond[0].Type != certificatesv1.CertificateApproved || cond[0].Reason != approval.ReasonAutoApproved {
		t.Errorf("serving CSR %s conditions %+v, want approved by tlsboot approver", serving.Name, cond)
	}
	block, _ := pem.Decode(serving.Status.Certificate)
	if block == nil {
		t.Fatalf("serving CSR %s: no PEM certificate", serving.Name)
	}
	issued, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(issued.DNSNames, []string{name}) || len(issued.IPAddresses) != 1 || issued.IPAddresses[0].String() != k.NodeIP() {
		t.Errorf("serving certificate SANs %v %v, want %s and %s", issued.DNSNames, issued.IPAddresses, name, k.NodeIP())
	}

	// The kubelet swaps in the new certificate by itself; poll its port
	// until it presents it.
	var last string
	err = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} // checked below, by serial
		conn, err := d.DialContext(ctx, "tcp", k.Address())
		if err != nil {
			last = err.Error()
			return false, nil
		}
		defer conn.Close()
		peer := conn.(*tls.Conn).ConnectionState().PeerCertificates[0]
		last = "serial " + peer.SerialNumber.String() + " issued by " + peer.Issuer.String()
		return peer.SerialNumber.Cmp(issued.SerialNumber) == 0, nil
	})
	if err != nil {
		t.Fatalf("the kubelet at %s does not serve the certificate of CSR %s (serial %s); last: %s", k.Address(), serving.Name, issued.SerialNumber, last)
	}
}

// TestKubeletLiveNode: with the secure-by-default live-node rule, a
// bootstrap token cannot take over the name of a kubelet that heartbeats;
// once the kubelet is stopped and its Lease is older than
// --node-alive-grace, a re-bootstrap for that name is approved.
func TestKubeletLiveNode(t *testing.T) {
	needRoot(t)
	const grace = 15 * time.Second
	name := uniqueNodeName("kubelet-live")
	c, _ := kubeletApprover(t, name, nodeIP(t), "--node-alive-grace", grace.String())
	client := admin(t, c)
	start := time.Now()
	k := c.StartKubelet(t, name, testcluster.KubeletOptions{RotateCertificates: true})
	heartbeats(t, k, start)

	thief := newNode(t, c)
	thief.name = name
	r := run(t, tlsbootBin, thief.args("--wait-timeout", "1m")...)
	if r.code == 0 || !strings.Contains(strings.ToLower(r.lastLine()), "alive") {
		t.Fatalf("a bootstrap token for the heartbeating node %s: %s, want denied as alive", name, r)
	}
	denied := 0
	for _, csr := range csrsBySigner(t, client, name, certificatesv1.KubeAPIServerClientKubeletSignerName) {
		for _, cond := range csr.Status.Conditions {
			if cond.Type == certificatesv1.CertificateDenied && cond.Reason == approval.ReasonNodeAlive {
				denied++
			}
		}
	}
	if denied != 1 {
		t.Errorf("%d client CSRs for %s denied with %s, want 1", denied, name, approval.ReasonNodeAlive)
	}

	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
	// Await the Lease going stale: its last renewal older than the grace.
	err := wait.PollUntilContextTimeout(t.Context(), 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		lease, err := client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return time.Since(lease.Spec.RenewTime.Time) > grace+time.Second, nil
	})
	if err != nil {
		t.Fatalf("the stopped kubelet's Lease did not go stale: %v", err)
	}
	back := newNode(t, c)
	back.name = name
	if r := run(t, tlsbootBin, back.args()...); r.code != 0 {
		t.Fatalf("re-bootstrap of %s after its kubelet stopped: %s", name, r)
	}
	if u := whoami(t, back.kubeconfig); u.Username != "system:node:"+name {
		t.Errorf("re-bootstrapped identity %q, want system:node:%s", u.Username, name)
	}
}

// TestKubeletSharesTlsbootRunIdentity: `tlsboot run` owns the node's client
// identity and a kubelet with its own rotation off and no bootstrap
// kubeconfig uses the same kubeconfig and cert dir. After a rotation
// (SIGHUP) the kubelet picks up the new certificate by itself: client-go
// re-reads the kubeconfig's certificate files at every new TLS connection
// and at least every 5 minutes, and closes its connections when they
// changed. No --on-rotate restart is needed, and the kubelet heartbeats
// throughout. This is the setup the operator guide documents.
//
// It waits for client-go's 5-minute re-read, idle; it runs in parallel
// with the other parallel tests so that the wait costs little wall time.
func TestKubeletSharesTlsbootRunIdentity(t *testing.T) {
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		needRoot(t)
		t.Parallel()
		c := clusterIn(t, "auto", layout) // 1-hour certificates
		client := admin(t, c)
		n := newNode(t, c)

		// Without bootstrap credentials, a kubelet started before the agent
		// wrote the kubeconfig exits (systemd restarts it) instead of
		// bootstrapping an identity of its own.
		early := c.StartKubelet(t, n.name, testcluster.KubeletOptions{Kubeconfig: n.kubeconfig, CertDir: n.certDir, NoBootstrap: true})
		err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			done, _ := early.Exited()
			return done, nil
		})
		if err != nil || !early.LogContains("invalid kubeconfig") {
			t.Fatalf("a kubelet without its kubeconfig and bootstrap credentials did not exit saying so (%v)", err)
		}

		a := startAgent(t, n)
		a.awaitReady(t, http.StatusOK)
		current := filepath.Join(n.certDir, "kubelet-client-current.pem")
		first := leafOf(t, current)

		start := time.Now()
		k := c.StartKubelet(t, n.name, testcluster.KubeletOptions{Kubeconfig: n.kubeconfig, CertDir: n.certDir, NoBootstrap: true})
		heartbeats(t, k, start)

		a.signal(t, syscall.SIGHUP)
		a.awaitMetric(t, rotations("client", "forced"), 1, time.Minute)
		if leafOf(t, current).SerialNumber.Cmp(first.SerialNumber) == 0 {
			t.Fatal("SIGHUP did not rotate the client certificate")
		}
		// Until the kubelet switches, and once after, its Lease must never be
		// older than its 40s duration (nodeLeaseDurationSeconds; the node
		// lifecycle controller's grace): no heartbeat is missed.
		const leaseDuration = 40 * time.Second
		const rotated = "Certificate rotation detected, shutting down client connections to start using new credentials"
		var switched time.Time
		err = wait.PollUntilContextTimeout(t.Context(), time.Second, 7*time.Minute, true, func(ctx context.Context) (bool, error) {
			if done, state := k.Exited(); done {
				return false, fmt.Errorf("kubelet exited (%s)", state)
			}
			lease, err := client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, n.name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if age := time.Since(lease.Spec.RenewTime.Time); age > leaseDuration {
				return false, fmt.Errorf("the kubelet's Lease is %s old, past its %s duration: heartbeats were missed", age.Round(time.Second), leaseDuration)
			}
			if switched.IsZero() && k.LogContains(rotated) {
				switched = time.Now()
			}
			return !switched.IsZero() && lease.Spec.RenewTime.After(switched), nil
		})
		if err != nil {
			t.Fatalf("waiting for the kubelet to use the rotated certificate and heartbeat with it: %v", err)
		}
		if got := csrsBySigner(t, client, n.name, certificatesv1.KubeAPIServerClientKubeletSignerName); len(got) != 2 {
			t.Errorf("%d client CSRs for %s, want 2 (tlsboot's bootstrap and renewal; none from the kubelet)", len(got), n.name)
		}
	})
}
