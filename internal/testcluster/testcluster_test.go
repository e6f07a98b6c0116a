package testcluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/client-go/util/retry"
)

func clientFor(t *testing.T, kubeconfig string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func whoami(ctx context.Context, client kubernetes.Interface) (authenticationv1.UserInfo, error) {
	r, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return authenticationv1.UserInfo{}, err
	}
	return r.Status.UserInfo, nil
}

func createNodeCSR(ctx context.Context, t *testing.T, client kubernetes.Interface, node string) string {
	t.Helper()
	return createCSR(ctx, t, client, certificatesv1.KubeAPIServerClientKubeletSignerName, node,
		[]certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}, nil)
}

// waitIssued waits until the CSR has a certificate and returns it parsed.
func waitIssued(ctx context.Context, t *testing.T, client kubernetes.Interface, name string) *x509.Certificate {
	t.Helper()
	var cert []byte
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		csr, err := client.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		cert = csr.Status.Certificate
		return len(cert) > 0, nil
	})
	if err != nil {
		t.Fatalf("CSR %s not issued: %v", name, err)
	}
	block, _ := pem.Decode(cert)
	if block == nil {
		t.Fatalf("CSR %s: certificate is not PEM", name)
	}
	parsed, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return parsed
}

func TestCluster(t *testing.T) {
	c := StartT(t, Options{SigningDuration: 30 * time.Minute})
	ctx := t.Context()
	admin := clientFor(t, c.AdminKubeconfig)
	boot := clientFor(t, c.BootstrapKubeconfig)

	t.Run("admin is system:masters", func(t *testing.T) {
		u, err := whoami(ctx, admin)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(u.Groups, "system:masters") {
			t.Errorf("admin groups = %v, want system:masters", u.Groups)
		}
	})

	t.Run("bootstrap token authenticates", func(t *testing.T) {
		u, err := whoami(ctx, boot)
		if err != nil {
			t.Fatal(err)
		}
		id, _, _ := strings.Cut(c.Token, ".")
		if u.Username != "system:bootstrap:"+id {
			t.Errorf("username = %q, want system:bootstrap:%s", u.Username, id)
		}
		for _, g := range []string{"system:bootstrappers", DefaultTokenGroup} {
			if !slices.Contains(u.Groups, g) {
				t.Errorf("groups = %v, missing %s", u.Groups, g)
			}
		}
	})

	t.Run("expired token is rejected", func(t *testing.T) {
		token, err := c.CreateToken(ctx, TokenOptions{TTL: -time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "expired.kubeconfig")
		if err := c.WriteBootstrapKubeconfig(path, token); err != nil {
			t.Fatal(err)
		}
		_, err = whoami(ctx, clientFor(t, path))
		if !apierrors.IsUnauthorized(err) {
			t.Errorf("whoami with an expired token: err = %v, want 401 Unauthorized", err)
		}
	})

	t.Run("node client CSR is approved and signed by the cluster CA", func(t *testing.T) {
		name := createNodeCSR(ctx, t, boot, "harness-node")
		cert := waitIssued(ctx, t, admin, name)
		if cert.Subject.CommonName != "system:node:harness-node" {
			t.Errorf("issued CN = %q", cert.Subject.CommonName)
		}
		caPEM, err := os.ReadFile(c.ClientCAFile())
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("issued certificate does not verify against the cluster CA: %v", err)
		}
		// kube-controller-manager backdates NotBefore by 5 minutes.
		if got := cert.NotAfter.Sub(cert.NotBefore); got > 30*time.Minute+5*time.Minute+time.Minute || got < 30*time.Minute {
			t.Errorf("certificate lifetime = %v, want about 30m (+5m backdating)", got)
		}
	})

	t.Run("controller manager stop and start", func(t *testing.T) {
		if err := c.StopControllerManager(); err != nil {
			t.Fatal(err)
		}
		name := createNodeCSR(ctx, t, boot, "harness-node-2")
		csr, err := admin.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(csr.Status.Conditions) != 0 {
			t.Fatalf("CSR %s decided while kube-controller-manager is stopped: %v", name, csr.Status.Conditions)
		}
		if err := c.StartControllerManager(ctx); err != nil {
			t.Fatal(err)
		}
		waitIssued(ctx, t, admin, name)
	})

	t.Run("bootstrapsigner and tokencleaner run, as kubeadm configures them", func(t *testing.T) {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cluster-info", Namespace: "kube-public"}, Data: map[string]string{"kubeconfig": "test"}}
		if _, err := admin.CoreV1().ConfigMaps("kube-public").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			admin.CoreV1().ConfigMaps("kube-public").Delete(context.Background(), "cluster-info", metav1.DeleteOptions{})
		})
		id, _, _ := strings.Cut(c.Token, ".")
		awaitObject(ctx, t, admin, "configmaps", "kube-public", "cluster-info", &corev1.ConfigMap{}, func(ev watch.Event) bool {
			cm, ok := ev.Object.(*corev1.ConfigMap)
			return ok && cm.Data["jws-kubeconfig-"+id] != ""
		})
		expired, err := c.CreateToken(ctx, TokenOptions{TTL: -time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		expiredID, _, _ := strings.Cut(expired, ".")
		awaitObject(ctx, t, admin, "secrets", "kube-system", "bootstrap-token-"+expiredID, &corev1.Secret{}, func(ev watch.Event) bool {
			return ev.Type == watch.Deleted
		})
	})

	t.Run("apiserver restart keeps state", func(t *testing.T) {
		if err := c.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		if _, err := whoami(ctx, admin); err == nil {
			t.Fatal("apiserver answered while stopped")
		}
		if err := c.StartAPIServer(ctx); err != nil {
			t.Fatal(err)
		}
		// The bootstrap token (stored in etcd) still works.
		if _, err := whoami(ctx, boot); err != nil {
			t.Fatalf("bootstrap token after restart: %v", err)
		}
	})
}

func TestStopLeavesNoProcess(t *testing.T) {
	ctx := t.Context()
	c, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pids := c.PIDs()
	if len(pids) != 3 {
		t.Errorf("PIDs = %v, want 3 components", pids)
	}
	dir := c.Dir()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists after Stop (kill -0: %v)", pid, err)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("cluster directory %s still exists after Stop", dir)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestMissingBinaries(t *testing.T) {
	_, err := Start(t.Context(), Options{BinDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "make controlplane") {
		t.Fatalf("Start with no binaries: err = %v, want one that says to run make controlplane", err)
	}
}

// awaitObject watches one object by name (client-go's UntilWithSync: a
// list, then a watch) until cond holds for an event, failing the test after
// a minute. An object that does not exist at the start is a Deleted event.
func awaitObject(ctx context.Context, t *testing.T, client kubernetes.Interface, resource, namespace, name string, obj runtime.Object, cond func(watch.Event) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	lw := cache.NewListWatchFromClient(client.CoreV1().RESTClient(), resource, namespace, fields.OneTermEqualSelector("metadata.name", name))
	pre := func(store cache.Store) (bool, error) {
		if len(store.List()) == 0 {
			return cond(watch.Event{Type: watch.Deleted}), nil
		}
		return cond(watch.Event{Type: watch.Added, Object: store.List()[0].(runtime.Object)}), nil
	}
	if _, err := watchtools.UntilWithSync(ctx, lw, obj, pre, func(ev watch.Event) (bool, error) { return cond(ev), nil }); err != nil {
		t.Fatalf("waiting for %s %s/%s: %v", resource, namespace, name, err)
	}
}

// TestLayouts proves each layout against the real server: which CA
// verifies the API server, which signs each kind of CSR, and which does not.
func TestLayouts(t *testing.T) {
	for _, layout := range Layouts {
		t.Run(string(layout), func(t *testing.T) {
			c := StartT(t, Options{Layout: layout})
			if c.Layout() != layout {
				t.Fatalf("Layout() = %q, want %q", c.Layout(), layout)
			}
			ctx := t.Context()
			admin := clientFor(t, c.AdminKubeconfig)
			separate := layout != LayoutSingle // the API server's CA is not the client CA

			t.Run("admin client works", func(t *testing.T) {
				if _, err := admin.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
					t.Fatalf("listing namespaces as admin: %v", err)
				}
			})

			t.Run("serving certificate verifies against CAFile only", func(t *testing.T) {
				chain := servingChain(t, c.URL())
				if err := verify(t, chain, c.CAFile(), x509.ExtKeyUsageServerAuth); err != nil {
					t.Errorf("API server certificate does not verify against CAFile: %v", err)
				}
				if err := verify(t, chain, c.ClientCAFile(), x509.ExtKeyUsageServerAuth); separate && err == nil {
					t.Errorf("API server certificate verifies against ClientCAFile")
				}
			})

			t.Run("node client certificate is signed by ClientCAFile", func(t *testing.T) {
				name := createCSR(ctx, t, admin, certificatesv1.KubeAPIServerClientKubeletSignerName, "layout-client",
					[]certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}, nil)
				approve(ctx, t, admin, name)
				cert := []*x509.Certificate{waitIssued(ctx, t, admin, name)}
				if err := verify(t, cert, c.ClientCAFile(), x509.ExtKeyUsageClientAuth); err != nil {
					t.Errorf("node client certificate does not verify against ClientCAFile: %v", err)
				}
				if err := verify(t, cert, c.CAFile(), x509.ExtKeyUsageClientAuth); separate && err == nil {
					t.Errorf("node client certificate verifies against CAFile")
				}
			})

			t.Run("kubelet serving certificate is signed by KubeletServingCAFile", func(t *testing.T) {
				name := createCSR(ctx, t, admin, certificatesv1.KubeletServingSignerName, "layout-serving",
					[]certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
					[]net.IP{net.ParseIP("192.0.2.10")})
				approve(ctx, t, admin, name)
				cert := []*x509.Certificate{waitIssued(ctx, t, admin, name)}
				if err := verify(t, cert, c.KubeletServingCAFile(), x509.ExtKeyUsageServerAuth); err != nil {
					t.Errorf("kubelet serving certificate does not verify against KubeletServingCAFile: %v", err)
				}
				if layout != LayoutSplit {
					return
				}
				for _, other := range []string{c.ClientCAFile(), c.CAFile()} {
					if err := verify(t, cert, other, x509.ExtKeyUsageServerAuth); err == nil {
						t.Errorf("kubelet serving certificate verifies against %s", other)
					}
				}
			})

			t.Run("bootstrap kubeconfig authenticates as the token", func(t *testing.T) {
				u, err := whoami(ctx, clientFor(t, c.BootstrapKubeconfig))
				if err != nil {
					t.Fatal(err)
				}
				id, _, _ := strings.Cut(c.Token, ".")
				if u.Username != "system:bootstrap:"+id {
					t.Errorf("username = %q, want system:bootstrap:%s", u.Username, id)
				}
			})

			t.Run("CAFile still verifies the API server after a restart", func(t *testing.T) {
				before, err := os.ReadFile(c.CAFile())
				if err != nil {
					t.Fatal(err)
				}
				if err := c.StopAPIServer(); err != nil {
					t.Fatal(err)
				}
				if err := c.StartAPIServer(ctx); err != nil {
					t.Fatal(err)
				}
				after, err := os.ReadFile(c.CAFile())
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(before, after) {
					t.Errorf("CAFile changed across an API server restart")
				}
				if err := verify(t, servingChain(t, c.URL()), c.CAFile(), x509.ExtKeyUsageServerAuth); err != nil {
					t.Errorf("API server certificate after a restart does not verify against CAFile: %v", err)
				}
				if _, err := admin.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
					t.Errorf("listing namespaces as admin after a restart: %v", err)
				}
			})
		})
	}
}

func TestUnknownLayout(t *testing.T) {
	_, err := Start(t.Context(), Options{Layout: "kubespray"})
	if err == nil || !strings.Contains(err.Error(), `"kubespray"`) {
		t.Fatalf("Start with an unknown layout: err = %v, want one naming it", err)
	}
}

// servingChain returns the certificates the API server at url serves.
func servingChain(t *testing.T, url string) []*x509.Certificate {
	t.Helper()
	// Verification is the test's, against each CA in turn.
	conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates
}

// verify verifies chain[0], with the rest of chain as intermediates,
// against the CA certificates in caFile, for usage.
func verify(t *testing.T, chain []*x509.Certificate, caFile string, usage x509.ExtKeyUsage) error {
	t.Helper()
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("no certificate in %s", caFile)
	}
	intermediates := x509.NewCertPool()
	for _, cert := range chain[1:] {
		intermediates.AddCert(cert)
	}
	_, err = chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

// createCSR creates a CSR for node's identity (CN system:node:<node>, O
// system:nodes) with signer, usages and IP SANs.
func createCSR(ctx context.Context, t *testing.T, client kubernetes.Interface, signer, node string, usages []certificatesv1.KeyUsage, ips []net.IP) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}},
		IPAddresses: ips,
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "harness-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: signer,
			Usages:     usages,
		},
	}
	created, err := client.CertificatesV1().CertificateSigningRequests().Create(ctx, csr, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating %s CSR: %v", signer, err)
	}
	return created.Name
}

// approve approves the CSR unless it is approved already (csrapproving
// approves node client CSRs of requesters allowed to create them, which
// the admin is).
func approve(ctx context.Context, t *testing.T, client kubernetes.Interface, name string) {
	t.Helper()
	csrs := client.CertificatesV1().CertificateSigningRequests()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		csr, err := csrs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range csr.Status.Conditions {
			if cond.Type == certificatesv1.CertificateApproved {
				return nil
			}
		}
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "TestLayouts",
		})
		_, err = csrs.UpdateApproval(ctx, name, csr, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("approving CSR %s: %v", name, err)
	}
}
