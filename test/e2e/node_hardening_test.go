package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tlsboot/tlsboot/internal/testcluster"
	"github.com/tlsboot/tlsboot/internal/testpki"
)

// The node side of issue 8, "secure by default": the real binary against
// the real control plane, with someone else writing to the node's disk or
// signing its certificates.

// diskState describes everything under dir: path, type, mode, owner, link
// target and content, so that "nothing changed" means exactly that.
func diskState(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %v uid=%d", path, fi.Mode(), st.Uid)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(path)
			line += " -> " + target
		case fi.Mode().IsRegular():
			data, _ := os.ReadFile(path)
			line += fmt.Sprintf(" %d bytes %x", len(data), data[:min(len(data), 64)])
		}
		lines = append(lines, line)
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// refused runs the bootstrap for n and checks what every refusal must be:
// a non-zero exit, one error line containing want, no stack trace, no
// token, nothing changed under n.dir, and no CSR created.
func refused(t *testing.T, c *testcluster.Cluster, n *node, want ...string) result {
	t.Helper()
	before := diskState(t, n.dir)
	r := run(t, tlsbootBin, n.args()...)
	if r.code == 0 {
		t.Fatalf("run succeeded: %s", r)
	}
	line := r.lastLine()
	if !strings.HasPrefix(line, "tlsboot: ") {
		t.Errorf("last line %q is not tlsboot's error line\n%s", line, r)
	}
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Errorf("last line %q does not contain %q", line, w)
		}
	}
	if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic") {
		t.Errorf("stack trace in the output:\n%s", r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, strings.Split(c.Token, ".")[1]) {
		t.Error("the bootstrap token's secret appears in the output")
	}
	if after := diskState(t, n.dir); after != before {
		t.Errorf("the node's files changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if got := nodeCSRs(t, admin(t, c), n.name); len(got) > 0 {
		t.Errorf("%d CSRs were created by a refused run", len(got))
	}
	return r
}

// TestNodeHardeningDirectoriesAndFiles: what someone who can write to the
// node's disk may have prepared is refused by name before anything is
// sent, and left exactly as it was.
func TestNodeHardeningDirectoriesAndFiles(t *testing.T) {
	c := cluster(t, "auto")
	victimKey := testpki.KeyPEM(t, testpki.Key(t, "ecdsa"))
	tmpKey := func(n *node) string { return filepath.Join(n.certDir, "kubelet-client.key.tmp") }
	mkCertDir := func(t *testing.T, n *node) {
		if err := os.MkdirAll(n.certDir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, n *node) []string // returns what the error line must contain
	}{
		{"world-writable certificate directory", func(t *testing.T, n *node) []string {
			mkCertDir(t, n)
			os.Chmod(n.certDir, 0o777)
			return []string{"certificate directory " + n.certDir, "writable", "chmod 700 " + n.certDir}
		}},
		{"group-writable certificate directory", func(t *testing.T, n *node) []string {
			mkCertDir(t, n)
			os.Chmod(n.certDir, 0o770)
			return []string{n.certDir, "chmod 700"}
		}},
		// Issue 24, finding 5: like ssh's StrictModes, the owner and the
		// parents count too (uid 65534 plays another local user).
		{"certificate directory owned by another user, mode 0755", func(t *testing.T, n *node) []string {
			needRoot(t)
			mkCertDir(t, n)
			os.Chmod(n.certDir, 0o755)
			os.Chown(n.certDir, 65534, 65534)
			return []string{"certificate directory " + n.certDir, "owned by uid 65534", "chown 0 " + n.certDir}
		}},
		{"certificate directory inside another user's directory", func(t *testing.T, n *node) []string {
			needRoot(t)
			home := filepath.Join(n.dir, "home")
			os.Mkdir(home, 0o755)
			os.Chown(home, 65534, 65534)
			n.certDir = filepath.Join(home, "pki")
			mkCertDir(t, n)
			return []string{"certificate directory " + n.certDir, "inside " + home, "owned by uid 65534", "chown 0 " + home}
		}},
		{"world-writable kubeconfig directory", func(t *testing.T, n *node) []string {
			dir := filepath.Join(n.dir, "etc")
			os.Mkdir(dir, 0o700)
			os.Chmod(dir, 0o1777)
			n.kubeconfig = filepath.Join(dir, "kubelet.conf")
			return []string{"kubeconfig directory " + dir, "chmod 700"}
		}},
		{"temporary key is a symlink", func(t *testing.T, n *node) []string {
			mkCertDir(t, n)
			target := filepath.Join(n.dir, "attacker.key")
			os.WriteFile(target, victimKey, 0o600)
			os.Symlink(target, tmpKey(n))
			return []string{tmpKey(n), "symbolic link"}
		}},
		{"temporary key is a dangling symlink", func(t *testing.T, n *node) []string {
			mkCertDir(t, n)
			os.Symlink(filepath.Join(n.dir, "will-be-created"), tmpKey(n))
			return []string{tmpKey(n), "symbolic link"}
		}},
		{"temporary key is mode 0644", func(t *testing.T, n *node) []string {
			mkCertDir(t, n)
			os.WriteFile(tmpKey(n), victimKey, 0o600)
			os.Chmod(tmpKey(n), 0o644)
			return []string{tmpKey(n), "mode 0644"}
		}},
		{"temporary key owned by another user", func(t *testing.T, n *node) []string {
			mkCertDir(t, n)
			os.WriteFile(tmpKey(n), victimKey, 0o600)
			if err := os.Chown(tmpKey(n), os.Geteuid()+4242, -1); err != nil {
				t.Skipf("cannot chown as uid %d: %v", os.Geteuid(), err)
			}
			return []string{tmpKey(n), "owned by uid"}
		}},
		{"temporary key is a FIFO", func(t *testing.T, n *node) []string {
			mkCertDir(t, n)
			if err := syscall.Mkfifo(tmpKey(n), 0o600); err != nil {
				t.Fatal(err)
			}
			return []string{tmpKey(n), "not a regular file"}
		}},
		{"temporary key is a directory", func(t *testing.T, n *node) []string {
			mkCertDir(t, n)
			os.Mkdir(tmpKey(n), 0o700)
			return []string{tmpKey(n), "not a regular file"}
		}},
		{"huge bootstrap kubeconfig", func(t *testing.T, n *node) []string {
			n.bootstrapKubeconfig = filepath.Join(n.dir, "bootstrap.kubeconfig")
			data, err := os.ReadFile(c.BootstrapKubeconfig)
			if err != nil {
				t.Fatal(err)
			}
			data = append(data, bytes.Repeat([]byte("# padding padding padding padding\n"), 40000)...) // 1.3 MiB
			os.WriteFile(n.bootstrapKubeconfig, data, 0o600)
			return []string{"bootstrap kubeconfig " + n.bootstrapKubeconfig, "larger than 1024 KiB"}
		}},
		{"huge current certificate", func(t *testing.T, n *node) []string {
			mkCertDir(t, n)
			cur := filepath.Join(n.certDir, "kubelet-client-current.pem")
			os.WriteFile(cur, bytes.Repeat([]byte("A"), 2<<20), 0o600)
			return []string{cur, "larger than 1024 KiB"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := newNode(t, c)
			want := tt.setup(t, n)
			start := time.Now()
			refused(t, c, n, want...)
			if d := time.Since(start); d > 30*time.Second {
				t.Errorf("the refusal took %v", d)
			}
		})
	}
}

// TestNodeHardeningHugeKubeconfig: a node kubeconfig past 1 MiB is not
// read; like any unusable kubeconfig it is the reason to bootstrap, and it
// is replaced by a small private one.
func TestNodeHardeningHugeKubeconfig(t *testing.T) {
	c := cluster(t, "auto")
	n := newNode(t, c)
	if err := os.WriteFile(n.kubeconfig, bytes.Repeat([]byte("# x\n"), 1<<19), 0o600); err != nil { // 2 MiB
		t.Fatal(err)
	}
	r := run(t, tlsbootBin, n.args()...)
	if r.code != 0 {
		t.Fatalf("bootstrap failed: %s", r)
	}
	if !strings.Contains(r.stderr, n.kubeconfig+" is larger than 1024 KiB") {
		t.Errorf("the reason to bootstrap does not say the kubeconfig is too large:\n%s", r.stderr)
	}
	fi, err := os.Lstat(n.kubeconfig)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > 64<<10 || fi.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig after the run: %v, %v; want a small regular 0600 file", fi, err)
	}
	if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
		t.Errorf("the new kubeconfig authenticates as %q", u.Username)
	}
}

// TestNodeHardeningCreatesPrivateFiles: what tlsboot creates itself is
// private: the certificate directory 0700, keys and kubeconfig 0600.
func TestNodeHardeningCreatesPrivateFiles(t *testing.T) {
	c := cluster(t, "auto")
	n := newNode(t, c)
	n.certDir = filepath.Join(n.dir, "var", "lib", "kubelet", "pki")
	r := run(t, tlsbootBin, n.args()...)
	if r.code != 0 {
		t.Fatalf("bootstrap failed: %s", r)
	}
	if m := fileMode(t, n.certDir); m != 0o700 {
		t.Errorf("certificate directory mode %v, want 0700", m)
	}
	for _, p := range []string{n.kubeconfig, filepath.Join(n.certDir, "kubelet-client-current.pem")} {
		if m := fileMode(t, p); m != 0o600 {
			t.Errorf("%s mode %v, want 0600", p, m)
		}
	}
}

// TestNodeHardeningInsecureWarning: a bootstrap kubeconfig with
// insecure-skip-tls-verify works, but every run says, in one line, that the
// token travels over an unverified connection: bootstrap when it
// bootstraps, bootstrap when there is nothing to do, and run.
func TestNodeHardeningInsecureWarning(t *testing.T) {
	c := cluster(t, "auto")
	n := newNode(t, c)
	n.bootstrapKubeconfig = filepath.Join(n.dir, "bootstrap.kubeconfig")
	cfg, err := clientcmd.LoadFromFile(c.BootstrapKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range cfg.Clusters {
		cl.CertificateAuthority, cl.CertificateAuthorityData, cl.InsecureSkipTLSVerify = "", nil, true
	}
	if err := clientcmd.WriteToFile(*cfg, n.bootstrapKubeconfig); err != nil {
		t.Fatal(err)
	}
	secret := strings.Split(c.Token, ".")[1]
	const warning = "insecure-skip-tls-verify"
	check := func(what string, r result, wantCode int) {
		t.Helper()
		if r.code != wantCode {
			t.Fatalf("%s: exit %d, want %d: %s", what, r.code, wantCode, r)
		}
		var lines []string
		for _, l := range strings.Split(r.stderr, "\n") {
			if strings.Contains(l, warning) {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], n.bootstrapKubeconfig) {
			t.Errorf("%s: %d warning lines naming the file, want 1:\n%s", what, len(lines), r.stderr)
		}
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("%s: the token's secret appears in the output", what)
		}
	}
	check("bootstrap", run(t, tlsbootBin, n.args()...), 0)
	check("bootstrap with nothing to do", run(t, tlsbootBin, n.args()...), 0)

	a := startAgent(t, n)
	waitOutput(t, a.proc, warning)
	check("run", a.stop(t), 0)
}

// maliciousSign approves CSR name and writes a certificate for the
// requested key and subject, made as spec says.
func maliciousSign(t *testing.T, c *testcluster.Cluster, client kubernetes.Interface, name string, ca *testpki.CA, edit func(*testpki.Spec)) {
	t.Helper()
	decide(t, client, name, certificatesv1.CertificateApproved)
	obj, err := client.CertificatesV1().CertificateSigningRequests().Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(obj.Spec.Request)
	if block == nil {
		t.Fatalf("CSR %s holds no PEM request", name)
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	spec := testpki.Spec{Key: req.PublicKey, Subject: req.Subject, NotBefore: time.Now().Add(-5 * time.Minute), Lifetime: time.Hour}
	if edit != nil {
		edit(&spec)
	}
	obj.Status.Certificate = ca.Issue(t, spec).CertPEM
	if _, err := client.CertificatesV1().CertificateSigningRequests().UpdateStatus(t.Context(), obj, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("signing CSR %s: %v", name, err)
	}
}

// TestNodeHardeningMaliciousSigner: a signer that returns, for the node's
// own key and name, a CA certificate, a certificate that also serves, or one
// from a CA the API server does not trust for client certificates gets
// nothing stored: one line naming the CSR and what to do, no kubeconfig, no
// certificate, and the temporary key dropped so that running again asks
// with a new key under a new CSR. The untrusted signer's certificate passes
// every offline check: only the API server's answer (401) refuses it. A
// faithful signer on the same cluster succeeds.
func TestNodeHardeningMaliciousSigner(t *testing.T) {
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		c := clusterIn(t, "nosigner", layout)
		client := admin(t, c)
		clientCA := signerCA(t, c, certificatesv1.KubeAPIServerClientKubeletSignerName)
		tests := []struct {
			name string
			ca   *testpki.CA
			edit func(*testpki.Spec)
			want []string // in the error line; none for success
		}{
			{"CA certificate", clientCA, func(s *testpki.Spec) {
				s.IsCA, s.KeyUsage = true, x509.KeyUsageDigitalSignature|x509.KeyUsageCertSign
			}, []string{"the signer returned a CA certificate", "kubectl delete csr"}},
			{"client and server auth", clientCA, func(s *testpki.Spec) {
				s.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
			}, []string{"the signer returned a certificate for other usages"}},
			{"no extended key usage", clientCA, func(s *testpki.Spec) { s.ExtKeyUsage = []x509.ExtKeyUsage{} },
				[]string{"the signer returned a certificate for other usages"}},
			{"signer the API server does not trust", testpki.NewCA(t), nil,
				[]string{"the API server at " + c.URL() + " rejected the issued certificate (401 Unauthorized", "--client-ca-file", "a new key and CSR are used"}},
			{"faithful", clientCA, nil, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				n := newNode(t, c)
				p := start(t, tlsbootBin, n.args()...)
				csr := waitCSR(t, client, n.name)
				maliciousSign(t, c, client, csr.Name, tt.ca, tt.edit)
				r := p.wait(t)
				cur := filepath.Join(n.certDir, "kubelet-client-current.pem")
				if tt.want == nil {
					if r.code != 0 || !exists(cur) || !exists(n.kubeconfig) {
						t.Fatalf("faithful signer: %s", r)
					}
					return
				}
				if r.code == 0 {
					t.Fatalf("run succeeded: %s", r)
				}
				line := r.lastLine()
				for _, w := range append([]string{"tlsboot: ", csr.Name, "not stored"}, tt.want...) {
					if !strings.Contains(line, w) {
						t.Errorf("last line %q does not contain %q", line, w)
					}
				}
				if strings.Contains(r.stderr, "goroutine ") {
					t.Errorf("stack trace:\n%s", r.stderr)
				}
				if exists(cur) || exists(n.kubeconfig) {
					t.Error("the certificate or kubeconfig was stored")
				}
				if pairs, _ := filepath.Glob(filepath.Join(n.certDir, "kubelet-client-2*.pem")); len(pairs) > 0 {
					t.Errorf("pair files stored: %v", pairs)
				}
				if exists(filepath.Join(n.certDir, "kubelet-client.key.tmp")) {
					t.Error("the temporary key was kept: running again would fetch the same certificate")
				}
				// Running again asks under a new CSR, which a faithful
				// signer issues.
				p = start(t, tlsbootBin, n.args()...)
				var again certificatesv1.CertificateSigningRequest
				err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
					for _, x := range nodeCSRs(t, client, n.name) {
						if x.Name != csr.Name {
							again = x
							return true, nil
						}
					}
					return false, nil
				})
				if err != nil {
					t.Fatalf("running again made no new CSR: %v", err)
				}
				maliciousSign(t, c, client, again.Name, clientCA, nil)
				if r := p.wait(t); r.code != 0 {
					t.Fatalf("running again: %s", r)
				}
				if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
					t.Errorf("kubeconfig authenticates as %q", u.Username)
				}
			})
		}
	})
}

// refusal is an issued client certificate that `tlsboot run` must not
// store: made by ca, edited by edit, counted as failure and logged with
// log.
type refusal struct {
	name         string
	ca           *testpki.CA
	edit         func(*testpki.Spec)
	failure, log string
}

// refusals are the two kinds of refusal: one the node's own checks catch
// (a CA certificate from the cluster's client CA), and one only the API
// server's answer catches (a faithful certificate from a CA it does not
// trust).
func refusals(t *testing.T, clientCA *testpki.CA) []refusal {
	return []refusal{
		{"CA certificate", clientCA, func(s *testpki.Spec) {
			s.IsCA, s.KeyUsage = true, x509.KeyUsageDigitalSignature|x509.KeyUsageCertSign
		}, "template_mismatch", "the signer returned a CA certificate"},
		{"untrusted signer", testpki.NewCA(t), nil, "identity_rejected", "rejected the issued certificate (401 Unauthorized"},
	}
}

// TestNodeHardeningAgentRefusesRenewal: `tlsboot run` renewing its client
// certificate is answered with a CA certificate for its own key and name,
// or with a certificate from a signer the API server does not trust: not
// stored, the old certificate stays current and the agent ready, the
// failure is counted (template_mismatch, identity_rejected) and logged on
// one line naming the CSR, and the next attempt asks under a new CSR.
func TestNodeHardeningAgentRefusesRenewal(t *testing.T) {
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		c := clusterIn(t, "nosigner", layout)
		client := admin(t, c)
		clientCA := signerCA(t, c, certificatesv1.KubeAPIServerClientKubeletSignerName)
		for _, tt := range refusals(t, clientCA) {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				n := newNode(t, c)
				a := startAgent(t, n)
				first := awaitCSR(t, a, client, n.name, certificatesv1.KubeAPIServerClientKubeletSignerName)
				maliciousSign(t, c, client, first.Name, clientCA, nil)
				a.awaitReady(t, http.StatusOK)
				cur := filepath.Join(n.certDir, "kubelet-client-current.pem")
				old := leafOf(t, cur)

				a.signal(t, syscall.SIGHUP)
				renewal := awaitCSR(t, a, client, n.name, certificatesv1.KubeAPIServerClientKubeletSignerName, first.Name)
				maliciousSign(t, c, client, renewal.Name, tt.ca, tt.edit)
				a.awaitMetric(t, failures("client", tt.failure), 1, time.Minute)
				if now := leafOf(t, cur); now.SerialNumber.Cmp(old.SerialNumber) != 0 {
					t.Errorf("the current certificate changed to serial %v", now.SerialNumber)
				}
				if code, _ := a.get(t, "/readyz"); code != http.StatusOK {
					t.Errorf("/readyz %d after the refused renewal, want 200", code)
				}
				if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
					t.Errorf("kubeconfig authenticates as %q after the refused renewal", u.Username)
				}
				next := awaitCSR(t, a, client, n.name, certificatesv1.KubeAPIServerClientKubeletSignerName, first.Name, renewal.Name)
				maliciousSign(t, c, client, next.Name, clientCA, nil)
				a.awaitMetric(t, rotations("client", "forced"), 1, time.Minute)
				r := a.stop(t)
				var lines []string
				for _, l := range strings.Split(r.stderr, "\n") {
					if strings.Contains(l, tt.log) {
						lines = append(lines, l)
					}
				}
				if len(lines) != 1 || !strings.Contains(lines[0], renewal.Name) || !strings.Contains(lines[0], "not stored") {
					t.Errorf("want one log line saying why CSR %s was refused; got %q\n%s", renewal.Name, lines, r.stderr)
				}
			})
		}
	})
}

// TestNodeHardeningAgentRecoveryStartsOver: a node with no certificate
// whose first CSR is answered with a certificate that must not be stored
// (a CA certificate, or one from a signer the API server does not trust)
// starts over with a new key under a new CSR after its backoff, and
// recovers once that one is signed faithfully. It used to re-attach to the
// first CSR, get the same certificate again, and loop until someone
// deleted the CSR.
func TestNodeHardeningAgentRecoveryStartsOver(t *testing.T) {
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		c := clusterIn(t, "nosigner", layout)
		client := admin(t, c)
		clientCA := signerCA(t, c, certificatesv1.KubeAPIServerClientKubeletSignerName)
		for _, tt := range refusals(t, clientCA) {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				n := newNode(t, c)
				a := startAgent(t, n)
				first := awaitCSR(t, a, client, n.name, certificatesv1.KubeAPIServerClientKubeletSignerName)
				maliciousSign(t, c, client, first.Name, tt.ca, tt.edit)
				a.awaitMetric(t, failures("client", tt.failure), 1, time.Minute)
				if exists(filepath.Join(n.certDir, "kubelet-client-current.pem")) {
					t.Fatal("the refused certificate was stored")
				}
				second := awaitCSR(t, a, client, n.name, certificatesv1.KubeAPIServerClientKubeletSignerName, first.Name)
				maliciousSign(t, c, client, second.Name, clientCA, nil)
				a.awaitReady(t, http.StatusOK)
				if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
					t.Errorf("kubeconfig authenticates as %q", u.Username)
				}
				if got := len(nodeCSRs(t, client, n.name)); got != 2 {
					t.Errorf("%d CSRs for the node, want 2", got)
				}
				a.stop(t)
			})
		}
	})
}

// TestNodeHardeningAgentServingCA: `tlsboot run --serving-cert` is issued a
// serving certificate, for its own key, names and usages, by a CA of its
// own. Without --serving-ca-file it is stored after the checks of the
// request, as the kubelet stores it: the API server cannot vouch for a
// serving certificate, and kubelet-serving signers often use a CA other
// than the kubeconfig's. With --serving-ca-file it is stored only if it
// chains to that file's CA; otherwise one log line naming the CSR says it
// does not chain, and the failure is counted as a template mismatch.
func TestNodeHardeningAgentServingCA(t *testing.T) {
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		c := clusterIn(t, "nosigner", layout)
		client := admin(t, c)
		clientCA, servingCA := signerCA(t, c, certificatesv1.KubeAPIServerClientKubeletSignerName), testpki.NewCA(t)
		for _, tt := range []struct {
			name   string
			caFile *testpki.CA // --serving-ca-file with this CA; nil for none
			stored bool
		}{
			{"no serving CA file", nil, true},
			{"serving CA file of the signer", servingCA, true},
			{"serving CA file of another CA", testpki.NewCA(t), false},
		} {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				n := newNode(t, c)
				args := []string{"--serving-cert", "--node-ip", "10.1.2.3", "--hostname-override", n.name + ".example"}
				if tt.caFile != nil {
					file := filepath.Join(n.dir, "serving-ca.pem")
					if err := os.WriteFile(file, tt.caFile.PEM(), 0o644); err != nil {
						t.Fatal(err)
					}
					args = append(args, "--serving-ca-file", file)
				}
				a := startAgent(t, n, args...)
				clientCSR := awaitCSR(t, a, client, n.name, certificatesv1.KubeAPIServerClientKubeletSignerName)
				maliciousSign(t, c, client, clientCSR.Name, clientCA, nil)
				a.awaitReady(t, http.StatusOK)

				serving := awaitCSR(t, a, client, n.name, certificatesv1.KubeletServingSignerName)
				maliciousSign(t, c, client, serving.Name, servingCA, func(s *testpki.Spec) {
					s.DNSNames, s.IPs = []string{n.name + ".example"}, []net.IP{net.ParseIP("10.1.2.3")}
				})
				cur := filepath.Join(n.certDir, "kubelet-server-current.pem")
				if tt.stored {
					a.awaitMetric(t, rotations("serving", "missing"), 1, time.Minute)
					if err := leafOf(t, cur).CheckSignatureFrom(servingCA.Cert); err != nil {
						t.Errorf("the stored serving certificate is not the one the serving CA signed: %v", err)
					}
					a.stop(t)
					return
				}
				a.awaitMetric(t, failures("serving", "template_mismatch"), 1, time.Minute)
				if exists(cur) {
					t.Error("the serving certificate of the other CA was stored")
				}
				if pairs, _ := filepath.Glob(filepath.Join(n.certDir, "kubelet-server-2*.pem")); len(pairs) > 0 {
					t.Errorf("pair files stored: %v", pairs)
				}
				r := a.stop(t)
				var lines []string
				for _, l := range strings.Split(r.stderr, "\n") {
					if strings.Contains(l, serving.Name) && strings.Contains(l, "does not chain to the required CA") {
						lines = append(lines, l)
					}
				}
				if len(lines) != 1 || !strings.Contains(lines[0], "not stored") || !strings.Contains(lines[0], "kubectl delete csr "+serving.Name) {
					t.Errorf("want one line saying CSR %s does not chain, is not stored and how to delete it; got %q\n%s", serving.Name, lines, r.stderr)
				}
			})
		}
	})
}
