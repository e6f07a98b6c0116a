package agent

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/internal/testpki"
	"github.com/tlsboot/tlsboot/kubeconfig"
	"github.com/tlsboot/tlsboot/rotation"
)

// TestServingCertificateChain: without ServingCAFile an issued serving
// certificate gets the checks of its request only, whatever CA signed it
// (the node kubeconfig's or another: kubelet-serving signers often have a
// CA of their own); with ServingCAFile it is stored only if it chains to
// the CA in that file. A refused one fails the attempt as a template
// mismatch (csr.ProblemChain) and leaves the store empty.
func TestServingCertificateChain(t *testing.T) {
	clusterCA, servingCA := testpki.NewCA(t), testpki.NewCA(t)
	for _, tc := range []struct {
		name   string
		signer *testpki.CA
		caFile bool // ServingCAFile holds servingCA
		stored bool
	}{
		{"cluster CA", clusterCA, false, true},
		{"another CA", servingCA, false, true},
		{"serving CA file", servingCA, true, true},
		{"cluster CA with serving CA file", clusterCA, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			a := &agent{opts: validOptions(dir)}
			a.opts.Serving, a.opts.Hostname = true, "node-a.example"
			writeNodeKubeconfig(t, a, clusterCA)
			if tc.caFile {
				a.opts.ServingCAFile = filepath.Join(dir, "serving-ca.pem")
				if err := os.WriteFile(a.opts.ServingCAFile, servingCA.PEM(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := a.opts.Validate(); err != nil {
				t.Fatal(err)
			}
			// Hooks must not block: keep the first of each.
			rotated, failed := make(chan struct{}, 1), make(chan error, 1)
			opts, err := a.servingOptions(rotation.Hooks{
				Rotated: func(string, rotation.Reason, time.Duration) {
					select {
					case rotated <- struct{}{}:
					default:
					}
				},
				Failed: func(_ string, _ rotation.Failure, err error) {
					select {
					case failed <- err:
					default:
					}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			client := fake.NewClientset()
			opts.Client = func(context.Context) (kubernetes.Interface, error) { return client, nil }
			m, err := rotation.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			t.Cleanup(func() { cancel(); wg.Wait() })
			// Watch before the manager starts, so that its CSR is seen.
			w, err := client.CertificatesV1().CertificateSigningRequests().Watch(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() { signServing(ctx, t, client, w, tc.signer) })
			wg.Go(func() { m.Run(ctx) })

			select {
			case <-rotated:
				if !tc.stored {
					t.Fatal("the certificate was stored")
				}
			case err := <-failed:
				var ce *csr.CertificateError
				if tc.stored || !errors.As(err, &ce) || ce.Problem != csr.ProblemChain {
					t.Fatalf("attempt failed: %v, want a stored certificate (%v) or %q", err, tc.stored, csr.ProblemChain)
				}
			case <-time.After(time.Minute):
				t.Fatal("no rotation and no failure within a minute")
			}
			cur, err := opts.Store.Current()
			if stored := err == nil; stored != tc.stored {
				t.Fatalf("stored %v (Current: %v), want %v", stored, err, tc.stored)
			}
			if tc.stored && cur.Leaf.CheckSignatureFrom(tc.signer.Cert) != nil {
				t.Error("the stored certificate is not the one signed")
			}
			if pairs, _ := filepath.Glob(filepath.Join(a.opts.Bootstrap.CertDir, ServingPrefix+"-2*.pem")); !tc.stored && len(pairs) > 0 {
				t.Errorf("pair files stored: %v", pairs)
			}
		})
	}
}

// writeNodeKubeconfig stores a client certificate issued by ca for a and
// writes a's node kubeconfig for a cluster with ca, using it.
func writeNodeKubeconfig(t *testing.T, a *agent, ca *testpki.CA) {
	t.Helper()
	store, err := openStore(a.opts.Bootstrap.CertDir, "kubelet-client")
	if err != nil {
		t.Fatal(err)
	}
	is := ca.Issue(t, testpki.Spec{Subject: testpki.Node(a.opts.Bootstrap.NodeName)})
	if _, err := store.Update(is.CertPEM, is.KeyPEM); err != nil {
		t.Fatal(err)
	}
	cluster := &rest.Config{Host: "https://127.0.0.1:6443", TLSClientConfig: rest.TLSClientConfig{CAData: ca.PEM()}}
	if err := kubeconfig.Write(a.opts.Bootstrap.KubeconfigPath, kubeconfig.Node(cluster, store.CurrentPath())); err != nil {
		t.Fatal(err)
	}
}

// signServing approves the CSRs that w reports and signs them with ca, as
// a kubelet-serving signer would, until ctx ends.
func signServing(ctx context.Context, t *testing.T, client kubernetes.Interface, w watch.Interface, ca *testpki.CA) {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-w.ResultChan():
			obj, ok := ev.Object.(*certificatesv1.CertificateSigningRequest)
			if !ok || ev.Type != watch.Added {
				continue
			}
			obj = obj.DeepCopy() // the fake's watch shares its tracker's object
			block, _ := pem.Decode(obj.Spec.Request)
			req, err := x509.ParseCertificateRequest(block.Bytes)
			if err != nil {
				t.Error(err)
				return
			}
			obj.Status.Certificate = ca.Issue(t, testpki.Spec{Key: req.PublicKey, Subject: req.Subject, DNSNames: req.DNSNames, IPs: req.IPAddresses,
				NotBefore: time.Now().Add(-5 * time.Minute), Lifetime: time.Hour}).CertPEM
			obj.Status.Conditions = append(obj.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
				Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "Test"})
			if _, err := client.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
				t.Error(err)
			}
		}
	}
}
