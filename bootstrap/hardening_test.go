package bootstrap

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"
	"k8s.io/utils/clock"

	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/internal/atomicfile"
	"github.com/tlsboot/tlsboot/internal/testpki"
)

// TestLoadKeyRefusesUnsafeTempKey: a temporary key that is a symbolic
// link, a FIFO, a directory, another user's file or readable by others is
// neither used nor changed, and the error names it on one line.
func TestLoadKeyRefusesUnsafeTempKey(t *testing.T) {
	ctx := klog.NewContext(context.Background(), klog.Background())
	_, goodPEM := newKey(t)
	setups := map[string]func(t *testing.T, p string) error{
		"symlink to a private key": func(t *testing.T, p string) error {
			target := filepath.Join(t.TempDir(), "real.key")
			if err := os.WriteFile(target, goodPEM, 0o600); err != nil {
				return err
			}
			return os.Symlink(target, p)
		},
		"symlink to a missing file": func(t *testing.T, p string) error { return os.Symlink("/nonexistent/key", p) },
		"mode 0644": func(t *testing.T, p string) error {
			if err := os.WriteFile(p, goodPEM, 0o600); err != nil {
				return err
			}
			return os.Chmod(p, 0o644)
		},
		"other owner": func(t *testing.T, p string) error {
			if err := os.WriteFile(p, goodPEM, 0o600); err != nil {
				return err
			}
			return os.Chown(p, os.Geteuid()+4242, -1)
		},
		"fifo":      func(t *testing.T, p string) error { return syscall.Mkfifo(p, 0o600) },
		"directory": func(t *testing.T, p string) error { return os.Mkdir(p, 0o700) },
	}
	for name, setup := range setups {
		t.Run(name, func(t *testing.T) {
			dir, opts, store := storeInTempDir(t)
			tmpPath := filepath.Join(dir, "kubelet-client.key.tmp")
			if err := setup(t, tmpPath); err != nil {
				if name == "other owner" {
					t.Skipf("cannot chown: %v", err)
				}
				t.Fatal(err)
			}
			before := snapshotDir(t, dir)
			done := make(chan error, 1)
			go func() { _, _, err := loadKey(ctx, store, opts); done <- err }()
			var err error
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("loadKey blocked")
			}
			var unsafe *atomicfile.UnsafeFileError
			if !errors.As(err, &unsafe) || !strings.Contains(err.Error(), tmpPath) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("loadKey error = %v, want a one-line *atomicfile.UnsafeFileError naming %s", err, tmpPath)
			}
			if after := snapshotDir(t, dir); after != before {
				t.Errorf("the directory changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// snapshotDir describes every entry of dir: name, type, mode, owner,
// link target.
func snapshotDir(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		fi, err := os.Lstat(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		b.WriteString(e.Name() + " " + fi.Mode().String() + " " + target + " ")
		b.WriteString(strings.Repeat("x", int(fi.Sys().(*syscall.Stat_t).Uid%7)) + ";")
	}
	return b.String()
}

// TestRequestRefusesUnsafeCertificate: a certificate for the right key
// and node that is a CA, has other usages, or comes from another CA than
// ClientCAFile's (when set) is refused with a *csr.CertificateError that
// names the CSR and says to delete it.
func TestRequestRefusesUnsafeCertificate(t *testing.T) {
	ctx := klog.NewContext(context.Background(), klog.Background())
	cluster, foreign := testpki.NewCA(t), testpki.NewCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(cluster.Cert)
	tests := []struct {
		name string
		ca   *testpki.CA
		edit func(*testpki.Spec)
		want csr.Problem
	}{
		{"good", cluster, nil, ""},
		{"CA certificate", cluster, func(s *testpki.Spec) { s.IsCA = true }, csr.ProblemCA},
		{"server auth too", cluster, func(s *testpki.Spec) {
			s.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
		}, csr.ProblemUsages},
		{"foreign CA", foreign, nil, csr.ProblemChain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, _ := newKey(t)
			opts := validOptions()
			opts.setDefaults()
			req := csr.NodeClient(opts.NodeName, key.Public())
			name, err := req.Name(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			reqPEM, err := req.PEM(key)
			if err != nil {
				t.Fatal(err)
			}
			spec := testpki.Spec{Key: key.Public(), Subject: req.Subject, NotBefore: time.Now().Add(-5 * time.Minute), Lifetime: time.Hour}
			if tt.edit != nil {
				tt.edit(&spec)
			}
			// The CSR exists already, issued: Run re-attaches to it.
			client := fake.NewSimpleClientset(&certificatesv1.CertificateSigningRequest{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec:       certificatesv1.CertificateSigningRequestSpec{Request: reqPEM, SignerName: req.SignerName, Usages: req.Usages},
				Status: certificatesv1.CertificateSigningRequestStatus{
					Conditions:  []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: "True"}},
					Certificate: tt.ca.Issue(t, spec).CertPEM,
				},
			})
			asNode(client, opts.NodeName)
			s := &server{cluster: &rest.Config{Host: "https://127.0.0.1:1"}, client: client, roots: roots, clock: clock.RealClock{},
				newClient: func(*rest.Config) (kubernetes.Interface, error) { return client, nil }}
			_, err = s.request(ctx, key, nil, opts)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("request = %v", err)
				}
				return
			}
			var ce *csr.CertificateError
			if !errors.As(err, &ce) || ce.Problem != tt.want || ce.CSR != name {
				t.Fatalf("request error = %v, want *csr.CertificateError for %s with problem %q", err, name, tt.want)
			}
			msg := err.Error()
			for _, w := range []string{name, "the signer returned " + string(tt.want), "not stored", "kubectl delete csr " + name} {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

// TestWarnInsecure: a bootstrap kubeconfig with insecure-skip-tls-verify
// gets one warning line at level 0; a verifying one gets none.
func TestWarnInsecure(t *testing.T) {
	for _, insecure := range []bool{true, false} {
		path := filepath.Join(t.TempDir(), "bootstrap.conf")
		cluster := &clientcmdapi.Cluster{Server: "https://127.0.0.1:1", InsecureSkipTLSVerify: insecure}
		if !insecure {
			cluster.CertificateAuthorityData = testpki.NewCA(t).PEM()
		}
		cfg := clientcmdapi.Config{
			Clusters:       map[string]*clientcmdapi.Cluster{"c": cluster},
			AuthInfos:      map[string]*clientcmdapi.AuthInfo{"u": {Token: "abcdef.0123456789abcdef"}},
			Contexts:       map[string]*clientcmdapi.Context{"x": {Cluster: "c", AuthInfo: "u"}},
			CurrentContext: "x",
		}
		if err := clientcmd.WriteToFile(cfg, path); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		logger := textlogger.NewLogger(textlogger.NewConfig(textlogger.Output(&buf), textlogger.Verbosity(0)))
		WarnInsecure(klog.NewContext(context.Background(), logger), path)
		out := buf.String()
		lines := strings.Count(out, "\n")
		if insecure && (lines != 1 || !strings.Contains(out, "insecure-skip-tls-verify") || !strings.Contains(out, path)) {
			t.Errorf("insecure: output %q, want one warning line naming %s", out, path)
		}
		if !insecure && out != "" {
			t.Errorf("verifying kubeconfig: output %q, want none", out)
		}
		if strings.Contains(out, "0123456789abcdef") {
			t.Error("the token appears in the warning")
		}
	}
}

// TestNewServerRefusesHugeCAFile: the bootstrap kubeconfig's CA file is
// read once with the size limit; client-go is given the bytes, so it never
// reads a file of any size itself.
func TestNewServerRefusesHugeCAFile(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, bytes.Repeat([]byte("A"), atomicfile.MaxReadSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	var given *rest.Config // what client-go is handed
	opts := validOptions()
	opts.setDefaults()
	opts.NewClient = func(cfg *rest.Config) (kubernetes.Interface, error) {
		given = cfg
		return fake.NewClientset(), nil
	}
	_, err := newServer(&rest.Config{Host: "https://127.0.0.1:1", TLSClientConfig: rest.TLSClientConfig{CAFile: ca}}, opts)
	var tooLarge *atomicfile.TooLargeError
	if !errors.As(err, &tooLarge) || !strings.Contains(err.Error(), ca) || given != nil {
		t.Fatalf("newServer error = %v, want *atomicfile.TooLargeError naming %s, and no client", err, ca)
	}
	good := filepath.Join(t.TempDir(), "ca.crt")
	os.WriteFile(good, testpki.NewCA(t).PEM(), 0o600)
	s, err := newServer(&rest.Config{Host: "https://127.0.0.1:1", TLSClientConfig: rest.TLSClientConfig{CAFile: good}}, opts)
	if err != nil || s.roots != nil || given == nil || given.CAFile != "" || len(given.CAData) == 0 {
		t.Fatalf("newServer with a good CA file: %v (roots %v, want none without ClientCAFile; client config %+v)", err, s != nil && s.roots != nil, given)
	}
}
