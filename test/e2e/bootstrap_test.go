package e2e

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/client-go/util/certificate"

	"github.com/tlsboot/tlsboot/internal/testcluster"
)

func TestBootstrap(t *testing.T) {
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		c := clusterIn(t, "auto", layout)
		tests := []struct {
			keyType string
			check   func(pub any) bool
			usages  []certificatesv1.KeyUsage
		}{
			{"ecdsa-p256", func(pub any) bool { k, ok := pub.(*ecdsa.PublicKey); return ok && k.Curve.Params().BitSize == 256 },
				[]certificatesv1.KeyUsage{"digital signature", "client auth"}},
			{"ecdsa-p384", func(pub any) bool { k, ok := pub.(*ecdsa.PublicKey); return ok && k.Curve.Params().BitSize == 384 },
				[]certificatesv1.KeyUsage{"digital signature", "client auth"}},
			{"rsa-2048", func(pub any) bool { k, ok := pub.(*rsa.PublicKey); return ok && k.N.BitLen() == 2048 },
				[]certificatesv1.KeyUsage{"digital signature", "client auth", "key encipherment"}},
		}
		for _, tt := range tests {
			t.Run(tt.keyType, func(t *testing.T) {
				n := newNode(t, c)
				r := run(t, tlsbootBin, n.args("--key-type", tt.keyType)...)
				if r.code != 0 {
					t.Fatalf("bootstrap failed: %s", r)
				}
				if !strings.Contains(r.stdout, "certificate for system:node:"+n.name+" issued") {
					t.Errorf("stdout does not report the issued certificate:\n%s", r.stdout)
				}
				if strings.Contains(r.stdout+r.stderr, strings.Split(c.Token, ".")[1]) {
					t.Errorf("the bootstrap token's secret appears in the output")
				}

				u := whoami(t, n.kubeconfig)
				if u.Username != "system:node:"+n.name || !slices.Contains(u.Groups, "system:nodes") {
					t.Errorf("written kubeconfig authenticates as %q %v, want system:node:%s in system:nodes", u.Username, u.Groups, n.name)
				}

				csrs := nodeCSRs(t, admin(t, c), n.name)
				if len(csrs) != 1 {
					t.Fatalf("%d CSRs for the node, want 1", len(csrs))
				}
				if !strings.HasPrefix(csrs[0].Name, "node-csr-") || !slices.Equal(csrs[0].Spec.Usages, tt.usages) {
					t.Errorf("CSR %s usages %v, want node-csr-* with %v", csrs[0].Name, csrs[0].Spec.Usages, tt.usages)
				}

				// The kubelet's own store (client-go) reads what we wrote.
				store, err := certificate.NewFileStore("kubelet-client", n.certDir, n.certDir, "", "")
				if err != nil {
					t.Fatal(err)
				}
				cert, err := store.Current()
				if err != nil {
					t.Fatalf("client-go's file store cannot read the certificate: %v", err)
				}
				if !tt.check(cert.Leaf.PublicKey) {
					t.Errorf("certificate key is %T, want %s", cert.Leaf.PublicKey, tt.keyType)
				}

				for path, want := range map[string]os.FileMode{n.certDir: 0o700, n.kubeconfig: 0o600, store.CurrentPath(): 0o600} {
					if got := fileMode(t, path); got != want {
						t.Errorf("mode of %s = %v, want %v", path, got, want)
					}
				}
				if tmp := filepath.Join(n.certDir, "kubelet-client.key.tmp"); exists(tmp) {
					t.Errorf("temporary key %s left behind after success", tmp)
				}

				target, _ := os.Readlink(store.CurrentPath())
				again := run(t, tlsbootBin, n.args()...)
				if again.code != 0 || !strings.Contains(again.stdout, "nothing to do") {
					t.Fatalf("second run is not a no-op: %s", again)
				}
				if now, _ := os.Readlink(store.CurrentPath()); now != target {
					t.Errorf("second run switched the current certificate from %s to %s", target, now)
				}
				if got := nodeCSRs(t, admin(t, c), n.name); len(got) != 1 {
					t.Errorf("second run created a CSR: %d CSRs for the node", len(got))
				}
			})
		}

		// A temporary key that can never be used (it is not a key) is replaced
		// with a new one, saying so on one line that names it; the bootstrap
		// goes on (it used to stop: see certstore.Store.LoadPendingKey).
		t.Run("corrupt temporary key", func(t *testing.T) {
			n := newNode(t, c)
			tmp := filepath.Join(n.certDir, "kubelet-client.key.tmp")
			if err := os.MkdirAll(n.certDir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(tmp, []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			r := run(t, tlsbootBin, n.args()...)
			if r.code != 0 {
				t.Fatalf("bootstrap with a corrupt temporary key failed: %s", r)
			}
			var replaced []string
			for _, line := range strings.Split(r.stderr, "\n") {
				if strings.Contains(line, "Replaced an unusable temporary key") {
					replaced = append(replaced, line)
				}
			}
			if len(replaced) != 1 || !strings.Contains(replaced[0], tmp) || !strings.Contains(replaced[0], "does not parse as a private key") {
				t.Errorf("want one log line naming %s and why it was replaced, got %q\n%s", tmp, replaced, r)
			}
			if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
				t.Errorf("kubeconfig authenticates as %q", u.Username)
			}
			if exists(tmp) {
				t.Errorf("temporary key %s left behind after success", tmp)
			}
		})
	})
}

// TestResumeAfterKill kills a run while its CSR is pending; the next run
// finds the same key and CSR and completes once an operator approves.
func TestResumeAfterKill(t *testing.T) {
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		c := clusterIn(t, "manual", layout)
		client := admin(t, c)
		n := newNode(t, c)

		first := start(t, tlsbootBin, n.args()...)
		pending := waitCSR(t, client, n.name)
		waitOutput(t, first, "Certificate signing request submitted")
		first.signal(t, syscall.SIGKILL)
		first.wait(t)
		if !exists(filepath.Join(n.certDir, "kubelet-client.key.tmp")) {
			t.Fatal("temporary key missing after SIGKILL")
		}
		if exists(n.kubeconfig) {
			t.Fatal("kubeconfig written before the certificate was issued")
		}

		second := start(t, tlsbootBin, n.args()...)
		waitOutput(t, second, "Certificate signing request submitted")
		if got := nodeCSRs(t, client, n.name); len(got) != 1 || got[0].UID != pending.UID {
			t.Fatalf("after restart: %d CSRs for the node, want the original %s only", len(got), pending.Name)
		}
		decide(t, client, pending.Name, certificatesv1.CertificateApproved)
		r := second.wait(t)
		if r.code != 0 || !strings.Contains(r.stdout, "resumed") || !strings.Contains(r.stdout, pending.Name) {
			t.Fatalf("resumed run: %s", r)
		}
		if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
			t.Errorf("kubeconfig authenticates as %q", u.Username)
		}
	})
}

// TestCSROutcomes ends the wait in each way other than issuance.
func TestCSROutcomes(t *testing.T) {
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		c := clusterIn(t, "manual", layout)
		client := admin(t, c)
		tests := []struct {
			name string
			act  func(t *testing.T, p *proc, csr string)
			want []string
		}{
			{"denied", func(t *testing.T, _ *proc, csr string) { decide(t, client, csr, certificatesv1.CertificateDenied) },
				[]string{"was denied", `reason "E2ETest"`, "kubectl delete csr"}},
			{"failed", func(t *testing.T, _ *proc, csr string) { decide(t, client, csr, certificatesv1.CertificateFailed) },
				[]string{"failed", `reason "E2ETest"`}},
			{"deleted", func(t *testing.T, _ *proc, csr string) {
				if err := client.CertificatesV1().CertificateSigningRequests().Delete(t.Context(), csr, metaDelete); err != nil {
					t.Fatal(err)
				}
			}, []string{"was deleted", "run again"}},
			// A broken signer: the test signs before anyone approves, so that
			// kube-controller-manager's signer does not sign first.
			{"certificate for another key", func(t *testing.T, _ *proc, csr string) {
				signCSR(t, c, client, csr, otherKey)
			}, []string{"the signer returned a certificate for a different public key", "not stored", "kubectl delete csr"}},
			{"certificate for another node", func(t *testing.T, _ *proc, csr string) {
				signCSR(t, c, client, csr, otherSubject)
			}, []string{"the signer returned a certificate for other names", "not stored", "system:node:someone-else"}},
			{"SIGTERM", func(t *testing.T, p *proc, _ string) { p.signal(t, syscall.SIGTERM) },
				[]string{"interrupted", "run again to resume"}},
			{"SIGINT", func(t *testing.T, p *proc, _ string) { p.signal(t, syscall.SIGINT) },
				[]string{"interrupted"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				n := newNode(t, c)
				p := start(t, tlsbootBin, n.args()...)
				csr := waitCSR(t, client, n.name)
				waitOutput(t, p, "Certificate signing request submitted")
				tt.act(t, p, csr.Name)
				r := p.wait(t)
				if r.code == 0 {
					t.Fatalf("run succeeded: %s", r)
				}
				line := r.lastLine()
				for _, w := range append(tt.want, "tlsboot: ") {
					if !strings.Contains(line, w) {
						t.Errorf("last line %q does not contain %q", line, w)
					}
				}
				if tt.name != "SIGTERM" && tt.name != "SIGINT" && !strings.Contains(line, csr.Name) {
					t.Errorf("last line %q does not name the CSR %s", line, csr.Name)
				}
				if exists(n.kubeconfig) {
					t.Error("kubeconfig written although no certificate was issued")
				}
				// A certificate that must not be stored is final for its CSR:
				// the key is dropped, so that the next run asks with a new
				// key under a new CSR instead of fetching it again. Any other
				// ending keeps the key for the next run.
				refused := strings.HasPrefix(tt.name, "certificate for")
				if kept := exists(filepath.Join(n.certDir, "kubelet-client.key.tmp")); kept == refused {
					t.Errorf("temporary key kept %v, want %v", kept, !refused)
				}
			})
		}
	})
}

// TestKubeletParity moves a node with a pending CSR between the kubelet's
// own bootstrap code (built from k8s.io/kubernetes by make controlplane)
// and tlsboot, both ways. Each finds the other's key and CSR — the same
// deterministic name — so a node never gets a second CSR.
func TestKubeletParity(t *testing.T) {
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		c := clusterIn(t, "manual", layout)
		client := admin(t, c)
		peer := filepath.Join(c.BinDir(), "kubelet-bootstrap")
		if !exists(peer) {
			t.Fatalf("%s missing: run 'make controlplane'", peer)
		}
		peerArgs := func(n *node) []string {
			return []string{"--kubeconfig", n.kubeconfig, "--bootstrap-kubeconfig", n.bootstrapKubeconfig, "--cert-dir", n.certDir, "--node-name", n.name, "--v=2"}
		}
		tests := []struct {
			name          string
			first, second func(n *node) (string, []string)
			secondMarker  string
		}{
			{"kubelet then tlsboot",
				func(n *node) (string, []string) { return peer, peerArgs(n) },
				func(n *node) (string, []string) { return tlsbootBin, n.args() },
				"Certificate signing request submitted"},
			{"tlsboot then kubelet",
				func(n *node) (string, []string) { return tlsbootBin, n.args() },
				func(n *node) (string, []string) { return peer, peerArgs(n) },
				"Waiting for client certificate to be issued"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				n := newNode(t, c)
				bin, args := tt.first(n)
				first := start(t, bin, args...)
				pending := waitCSR(t, client, n.name)
				first.signal(t, syscall.SIGKILL)
				first.wait(t)

				bin, args = tt.second(n)
				second := start(t, bin, args...)
				waitOutput(t, second, tt.secondMarker)
				if got := nodeCSRs(t, client, n.name); len(got) != 1 || got[0].UID != pending.UID {
					t.Fatalf("after switching: %d CSRs for the node, want only %s", len(got), pending.Name)
				}
				decide(t, client, pending.Name, certificatesv1.CertificateApproved)
				if r := second.wait(t); r.code != 0 {
					t.Fatalf("second program: %s", r)
				}
				if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
					t.Errorf("kubeconfig authenticates as %q", u.Username)
				}
				// Each reads the other's result as a usable identity.
				if r := run(t, tlsbootBin, n.args()...); r.code != 0 || !strings.Contains(r.stdout, "nothing to do") {
					t.Errorf("tlsboot on the result: %s", r)
				}
				if r := run(t, peer, peerArgs(n)...); r.code != 0 || !strings.Contains(r.stderr, "skipping bootstrap") {
					t.Errorf("kubelet code on the result: %s", r)
				}
				if got := nodeCSRs(t, client, n.name); len(got) != 1 {
					t.Errorf("%d CSRs for the node at the end, want 1", len(got))
				}
			})
		}
	})
}
