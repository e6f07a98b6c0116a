package bootstrap

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/internal/testpki"
	"github.com/tlsboot/tlsboot/kubeconfig"
)

// fakeSigner makes client issue every CSR it creates, as approver and
// signer would: the issued CSR comes as a Modified event on the watch that
// follows the create.
func fakeSigner(t *testing.T, client *fake.Clientset, ca *testpki.CA) {
	t.Helper()
	w := watch.NewFakeWithChanSize(1, false)
	t.Cleanup(w.Stop)
	client.PrependReactor("create", "certificatesigningrequests", func(a k8stesting.Action) (bool, k8sruntime.Object, error) {
		obj := a.(k8stesting.CreateAction).GetObject().(*certificatesv1.CertificateSigningRequest).DeepCopy()
		block, _ := pem.Decode(obj.Spec.Request)
		cr, err := x509.ParseCertificateRequest(block.Bytes)
		if err != nil {
			t.Errorf("created CSR does not parse: %v", err)
			return false, nil, nil
		}
		obj.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: "True"}}
		obj.Status.Certificate = ca.Issue(t, testpki.Spec{Key: cr.PublicKey, Subject: cr.Subject}).CertPEM
		w.Modify(obj)
		return false, nil, nil // the tracker stores the CSR as created
	})
	client.PrependWatchReactor("certificatesigningrequests", func(k8stesting.Action) (bool, watch.Interface, error) {
		return true, w, nil
	})
}

// fakeOptions returns Options for a node whose bootstrap kubeconfig trusts
// ca, in a new directory, with client as the API client and a fake clock.
func fakeOptions(t *testing.T, client *fake.Clientset, ca *testpki.CA) Options {
	t.Helper()
	dir := t.TempDir()
	bootstrapPath := filepath.Join(dir, "bootstrap.conf")
	if err := clientcmd.WriteToFile(clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"c": {Server: "https://127.0.0.1:1", CertificateAuthorityData: ca.PEM()}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"u": {Token: "abcdef.0123456789abcdef"}},
		Contexts:       map[string]*clientcmdapi.Context{"x": {Cluster: "c", AuthInfo: "u"}},
		CurrentContext: "x",
	}, bootstrapPath); err != nil {
		t.Fatal(err)
	}
	asNode(client, "node-1")
	return Options{
		KubeconfigPath:          filepath.Join(dir, "kubelet.conf"),
		BootstrapKubeconfigPath: bootstrapPath,
		CertDir:                 filepath.Join(dir, "pki"),
		NodeName:                "node-1",
		Clock:                   clocktesting.NewFakeClock(time.Now()),
		NewClient:               func(*rest.Config) (kubernetes.Interface, error) { return client, nil },
	}
}

// TestRunWithFakeServer: Run end to end against a fake clientset and a fake
// clock: the certificate is requested for a new pending key, stored, the
// kubeconfig points at it, and the pending key is gone.
func TestRunWithFakeServer(t *testing.T) {
	ca := testpki.NewCA(t)
	client := fake.NewClientset()
	fakeSigner(t, client, ca)
	opts := fakeOptions(t, client, ca)
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	current := filepath.Join(opts.CertDir, "kubelet-client-current.pem")
	if !res.Bootstrapped || res.Reattached || res.CSRName == "" || res.CertPath != current || res.Certificate.Subject.CommonName != "system:node:node-1" {
		t.Errorf("Run = %+v", res)
	}
	cfg, leaf, err := kubeconfig.LoadUsable(opts.KubeconfigPath, time.Now())
	if err != nil || cfg.CertFile != current || !leaf.Equal(res.Certificate) {
		t.Errorf("written kubeconfig: %v (cert %q)", err, cfg.CertFile)
	}
	if _, err := os.Lstat(filepath.Join(opts.CertDir, "kubelet-client.key.tmp")); !os.IsNotExist(err) {
		t.Errorf("pending key left after success: %v", err)
	}

	// A second run finds the kubeconfig usable and makes no request.
	client.ClearActions()
	again, err := Run(context.Background(), opts)
	if err != nil || again.Bootstrapped || len(client.Actions()) != 0 {
		t.Errorf("second Run = %+v, %v with %d requests; want nothing to do", again, err, len(client.Actions()))
	}
}

// TestRunWaitTimeout: a CSR nobody approves ends the run when WaitTimeout
// has passed on the clock, with a *csr.TimeoutError naming the CSR; the
// pending key stays for the next run and no kubeconfig is written.
func TestRunWaitTimeout(t *testing.T) {
	client := fake.NewClientset()
	w := watch.NewFake() // never delivers an event
	t.Cleanup(w.Stop)
	client.PrependWatchReactor("certificatesigningrequests", func(k8stesting.Action) (bool, watch.Interface, error) {
		return true, w, nil
	})
	opts := fakeOptions(t, client, testpki.NewCA(t))
	opts.WaitTimeout = 10 * time.Minute
	clk := opts.Clock.(*clocktesting.FakeClock)

	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		_, err = Run(context.Background(), opts)
	}()
	drive(clk, 2, time.Minute, done) // the timeout and the progress ticker
	var timeout *csr.TimeoutError
	if !errors.As(err, &timeout) || timeout.CSR == "" || timeout.Waited != opts.WaitTimeout || !strings.Contains(err.Error(), timeout.CSR) {
		t.Fatalf("Run error = %v, want a *csr.TimeoutError naming the CSR", err)
	}
	if _, err := os.Stat(filepath.Join(opts.CertDir, "kubelet-client.key.tmp")); err != nil {
		t.Errorf("pending key not kept: %v", err)
	}
	if _, err := os.Stat(opts.KubeconfigPath); !os.IsNotExist(err) {
		t.Errorf("kubeconfig written: %v", err)
	}
}
