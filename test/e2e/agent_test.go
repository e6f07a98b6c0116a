package e2e

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"

	"github.com/tlsboot/tlsboot/internal/testcluster"
)

// TestAgentRotation: bootstrap, a forced rotation (SIGHUP) and a rotation
// at the deadline of a 1-minute certificate that kube-controller-manager
// backdated by 5 minutes, all without restarting the agent or rewriting
// the kubeconfig, which keeps working.
func TestAgentRotation(t *testing.T) {
	t.Parallel()
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		t.Parallel()
		c := clusterIn(t, "short", layout)
		n := newNode(t, c)
		a := startAgent(t, n)
		a.awaitReady(t, http.StatusOK)
		a.awaitMetric(t, rotations("client", "missing"), 1, time.Minute)
		if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
			t.Fatalf("whoami: %s", u.Username)
		}
		kubeconfigBefore, _ := os.ReadFile(n.kubeconfig)
		first := leafOf(t, filepath.Join(n.certDir, "kubelet-client-current.pem"))

		a.signal(t, syscall.SIGHUP)
		a.awaitMetric(t, rotations("client", "forced"), 1, time.Minute)
		a.awaitMetric(t, rotations("client", "due"), 1, 2*time.Minute)
		after := leafOf(t, filepath.Join(n.certDir, "kubelet-client-current.pem"))
		if after.SerialNumber.Cmp(first.SerialNumber) == 0 {
			t.Fatal("the certificate did not change")
		}
		if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
			t.Fatalf("whoami after rotation: %s", u.Username)
		}
		if kubeconfigAfter, _ := os.ReadFile(n.kubeconfig); !bytes.Equal(kubeconfigBefore, kubeconfigAfter) {
			t.Error("the kubeconfig was rewritten by a rotation")
		}
		// No renewal loop: one due rotation per certificate, and the agent
		// is asleep in between (the counter did not run away).
		if due := a.metric(t, rotations("client", "due")); due > 2 {
			t.Errorf("%v due rotations: renewing in a loop", due)
		}
		if v := a.metric(t, `tlsboot_certificate_expiry_seconds{certificate="client"}`); v <= 0 {
			t.Errorf("expiry gauge %v, want > 0", v)
		}
		if v := a.metric(t, "tlsboot_bootstrap_credentials_in_use"); v != 0 {
			t.Errorf("bootstrap_credentials_in_use %v, want 0", v)
		}
		if v := a.metric(t, `tlsboot_csr_issuance_duration_seconds_count{certificate="client"}`); v < 3 {
			t.Errorf("issuance histogram count %v, want >= 3", v)
		}
		if code, _ := a.get(t, "/healthz"); code != http.StatusOK {
			t.Errorf("/healthz %d", code)
		}
		r := a.stop(t)
		if os.Getenv("TLSBOOT_E2E_SHOW_LOGS") != "" {
			t.Log(r.stderr)
		}
	})
}

// TestAgentRecoversExpiredCertificate: a node powered off past expiry,
// first without bootstrap credentials (not ready, says so, keeps retrying),
// then with them: it recovers on its own.
func TestAgentRecoversExpiredCertificate(t *testing.T) {
	t.Parallel()
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		t.Parallel()
		c := clusterIn(t, "auto", layout)
		n := newNode(t, c)
		forge(t, c, n, forgeOptions{notBefore: time.Now().Add(-2 * time.Hour), notAfter: time.Now().Add(-time.Hour)})
		n.bootstrapKubeconfig = filepath.Join(n.dir, "bootstrap.kubeconfig") // absent for now
		a := startAgent(t, n)

		a.awaitMetric(t, failures("client", "no_bootstrap_credentials"), 1, time.Minute)
		body := a.awaitReady(t, http.StatusServiceUnavailable)
		for _, want := range []string{"expired", "bootstrap kubeconfig " + n.bootstrapKubeconfig + " does not exist"} {
			if !strings.Contains(body, want) {
				t.Errorf("/readyz body %q does not say %q", body, want)
			}
		}
		if v := a.metric(t, "tlsboot_bootstrap_credentials_in_use"); v != 1 {
			t.Errorf("bootstrap_credentials_in_use %v, want 1", v)
		}

		if err := c.WriteBootstrapKubeconfig(n.bootstrapKubeconfig, c.Token); err != nil {
			t.Fatal(err)
		}
		a.awaitMetric(t, rotations("client", "expired"), 1, 2*time.Minute)
		a.awaitReady(t, http.StatusOK)
		if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
			t.Fatalf("whoami: %s", u.Username)
		}
		if v := a.metric(t, "tlsboot_bootstrap_credentials_in_use"); v != 0 {
			t.Errorf("bootstrap_credentials_in_use %v after recovery, want 0", v)
		}
		a.stop(t)
	})
}

// TestAgentReBootstrapsOn401: a certificate valid by its dates but from a
// CA the cluster does not trust (a rebuilt cluster) is rejected; the agent
// re-bootstraps.
func TestAgentReBootstrapsOn401(t *testing.T) {
	t.Parallel()
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		t.Parallel()
		c := clusterIn(t, "auto", layout)
		n := newNode(t, c)
		forge(t, c, n, forgeOptions{notBefore: time.Now().Add(-time.Minute), notAfter: time.Now().Add(time.Hour), foreignCA: true})
		a := startAgent(t, n)
		a.awaitMetric(t, rotations("client", "unauthorized"), 1, time.Minute)
		if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
			t.Fatalf("whoami: %s", u.Username)
		}
		a.stop(t)
	})
}

// TestAgentSurvivesAPIServerDown: a rotation while the API server is down
// fails, is counted, does not affect readiness, and completes once it is back.
func TestAgentSurvivesAPIServerDown(t *testing.T) {
	t.Parallel()
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		t.Parallel()
		c := testcluster.StartT(t, testcluster.Options{Layout: layout, SigningDuration: time.Hour})
		n := newNode(t, c)
		a := startAgent(t, n)
		a.awaitReady(t, http.StatusOK)
		if err := c.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		a.signal(t, syscall.SIGHUP)
		a.awaitMetric(t, failures("client", "unreachable"), 1, time.Minute)
		if code, body := a.get(t, "/readyz"); code != http.StatusOK {
			t.Errorf("/readyz %d %q while the API server is down with a valid certificate, want 200", code, body)
		}
		if err := c.StartAPIServer(t.Context()); err != nil {
			t.Fatal(err)
		}
		a.awaitMetric(t, rotations("client", "forced"), 1, 3*time.Minute)
		if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
			t.Fatalf("whoami: %s", u.Username)
		}
		a.stop(t)
	})
}

// TestAgentServingCertificate: the serving CSR has the requested signer,
// usages and SANs; an operator approves it; the post-rotation hook runs;
// a restart with another --node-ip asks again.
func TestAgentServingCertificate(t *testing.T) {
	t.Parallel()
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		t.Parallel()
		c := clusterIn(t, "auto", layout)
		client := admin(t, c)
		n := newNode(t, c)
		hookOut := filepath.Join(n.dir, "hook.out")
		hook := `echo "$TLSBOOT_CERT_NAME $TLSBOOT_ROTATION_REASON $TLSBOOT_CERT_PATH" >> ` + hookOut
		args := []string{"--serving-cert", "--node-ip", "10.1.2.3", "--hostname-override", n.name + ".example", "--on-rotate", hook}
		a := startAgent(t, n, args...)

		first := awaitCSR(t, a, client, n.name, certificatesv1.KubeletServingSignerName)
		if want := []certificatesv1.KeyUsage{"digital signature", "server auth"}; !equalUsages(first.Spec.Usages, want) {
			t.Errorf("usages %v, want %v", first.Spec.Usages, want)
		}
		decide(t, client, first.Name, certificatesv1.CertificateApproved)
		a.awaitMetric(t, rotations("serving", "missing"), 1, time.Minute)
		servingPath := filepath.Join(n.certDir, "kubelet-server-current.pem")
		leaf := leafOf(t, servingPath)
		if leaf.Subject.CommonName != "system:node:"+n.name || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("10.1.2.3")) ||
			len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != n.name+".example" {
			t.Errorf("serving certificate %s IPs %v DNS %v", leaf.Subject, leaf.IPAddresses, leaf.DNSNames)
		}
		await(t, a, time.Minute, "the on-rotate hook", func() bool {
			out, _ := os.ReadFile(hookOut)
			return strings.Contains(string(out), "serving missing "+servingPath)
		})
		a.stop(t)

		args[2] = "10.9.9.9"
		a = startAgent(t, n, args...)
		second := awaitCSR(t, a, client, n.name, certificatesv1.KubeletServingSignerName, first.Name)
		decide(t, client, second.Name, certificatesv1.CertificateApproved)
		a.awaitMetric(t, rotations("serving", "template_changed"), 1, time.Minute)
		if ips := leafOf(t, servingPath).IPAddresses; len(ips) != 1 || !ips[0].Equal(net.ParseIP("10.9.9.9")) {
			t.Errorf("after the SAN change: IPs %v, want [10.9.9.9]", ips)
		}
		a.stop(t)
	})
}

func equalUsages(a, b []certificatesv1.KeyUsage) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestAgentSignerDropsSANs: a signer that issues serving certificates
// without the requested SANs gets no hot loop: the certificate is not
// stored, the mismatch is counted, the agent backs off, then asks again
// under a new CSR and takes the good certificate.
func TestAgentSignerDropsSANs(t *testing.T) {
	t.Parallel()
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		t.Parallel()
		// No csrsigning: the test is the signer.
		c := testcluster.StartT(t, testcluster.Options{Layout: layout, Controllers: []string{"csrapproving", "csrcleaner"}})
		client := admin(t, c)
		n := newNode(t, c)
		a := startAgent(t, n, "--serving-cert", "--node-ip", "10.1.2.3", "--hostname-override", n.name+".example")

		clientCSR := awaitCSR(t, a, client, n.name, certificatesv1.KubeAPIServerClientKubeletSignerName)
		signCSR(t, c, client, clientCSR.Name, faithful)
		a.awaitReady(t, http.StatusOK)

		bad := awaitCSR(t, a, client, n.name, certificatesv1.KubeletServingSignerName)
		decide(t, client, bad.Name, certificatesv1.CertificateApproved)
		signCSR(t, c, client, bad.Name, dropSANs)
		a.awaitMetric(t, failures("serving", "template_mismatch"), 1, time.Minute)
		if v := a.metric(t, `tlsboot_certificate_template_mismatches_total{certificate="serving"}`); v != 1 {
			t.Errorf("template mismatches %v, want 1", v)
		}
		if d := retryDelays(a.stderr.String(), "template_mismatch"); len(d) != 1 || d[0] < 4*time.Second {
			t.Errorf("backoff after the mismatch %v, want one of at least 4s", d)
		}
		if exists(filepath.Join(n.certDir, "kubelet-server-current.pem")) {
			t.Error("the certificate without SANs was stored")
		}

		good := awaitCSR(t, a, client, n.name, certificatesv1.KubeletServingSignerName, bad.Name)
		decide(t, client, good.Name, certificatesv1.CertificateApproved)
		signCSR(t, c, client, good.Name, faithful)
		a.awaitMetric(t, rotations("serving", "missing"), 1, time.Minute)
		if v := a.metric(t, `tlsboot_certificate_template_mismatches_total{certificate="serving"}`); v != 1 {
			t.Errorf("template mismatches %v after success, want 1", v)
		}
		a.stop(t)
	})
}

// TestAgentSIGTERMMidRotation: SIGTERM while a renewal CSR is pending exits
// 0 and leaves the store as it was (the old certificate current, the new
// key pending); a restart resumes the same CSR.
func TestAgentSIGTERMMidRotation(t *testing.T) {
	t.Parallel()
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		t.Parallel()
		c := clusterIn(t, "manual", layout)
		client := admin(t, c)
		n := newNode(t, c)
		a := startAgent(t, n)
		first := waitCSR(t, client, n.name)
		decide(t, client, first.Name, certificatesv1.CertificateApproved)
		a.awaitReady(t, http.StatusOK)
		current := filepath.Join(n.certDir, "kubelet-client-current.pem")
		before, _ := filepath.EvalSymlinks(current)

		a.signal(t, syscall.SIGHUP)
		renewal := awaitCSR(t, a, client, n.name, certificatesv1.KubeAPIServerClientKubeletSignerName, first.Name)
		a.stop(t)
		if after, _ := filepath.EvalSymlinks(current); after != before {
			t.Errorf("current certificate changed from %s to %s", before, after)
		}
		if !exists(filepath.Join(n.certDir, "kubelet-client.key.tmp")) {
			t.Error("the pending renewal's key was not kept")
		}
		if r := run(t, tlsbootBin, "status", "--cert-dir", n.certDir, "--kubeconfig", n.kubeconfig); r.code != 0 || !strings.Contains(r.stdout, "pending key") {
			t.Errorf("status after SIGTERM: %s", r)
		}
		if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
			t.Fatalf("whoami: %s", u.Username)
		}

		a = startAgent(t, n)
		waitOutput(t, a.proc, `reattached=true`)
		decide(t, client, renewal.Name, certificatesv1.CertificateApproved)
		a.awaitMetric(t, rotations("client", "resume"), 1, time.Minute)
		if got := len(nodeCSRs(t, client, n.name)); got != 2 {
			t.Errorf("%d CSRs for the node, want 2 (the resumed one reused)", got)
		}
		a.stop(t)
	})
}
