package crash

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/certificate"

	"github.com/tlsboot/tlsboot/certstore"
	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/internal/testcluster"
	"github.com/tlsboot/tlsboot/kubeconfig"
)

const prefix = "kubelet-client" // the kubelet's and tlsboot's default

// nodeSeq numbers the nodes of this test process, so that names are
// unique on the shared control plane even with -count=N.
var nodeSeq atomic.Int64

// node is one simulated node: its files, and what the checks remember
// about it across cycles.
type node struct {
	name, dir, certDir, kubeconfig, bootstrapKubeconfig string
	// lastValid is the last valid certificate the checks saw stored: once
	// there is one, the store must never again hold none.
	lastValid *x509.Certificate
}

// newNode makes a node with a unique name under a new directory of the
// test: <dir>/pki and <dir>/kubelet.conf.
func newNode(t *testing.T, c *testcluster.Cluster, kind string) *node {
	t.Helper()
	dir := t.TempDir()
	return &node{
		name:                fmt.Sprintf("crash-%s-%d-%d", kind, os.Getpid(), nodeSeq.Add(1)),
		dir:                 dir,
		certDir:             filepath.Join(dir, "pki"),
		kubeconfig:          filepath.Join(dir, "kubelet.conf"),
		bootstrapKubeconfig: c.BootstrapKubeconfig,
	}
}

// args is the command line of tlsboot's command (bootstrap or run) for n;
// -v=2 logs the steps the kill phases are told apart by.
func (n *node) args(command string, extra ...string) []string {
	return append([]string{command, "--v=2",
		"--bootstrap-kubeconfig", n.bootstrapKubeconfig,
		"--kubeconfig", n.kubeconfig,
		"--cert-dir", n.certDir,
		"--node-name", n.name,
		"--server-wait", "30s",
		"--wait-timeout", "2m",
	}, extra...)
}

func (n *node) pendingKey() string { return certstore.PendingKeyPath(n.certDir, prefix) }

// current is the stored certificate, or nil.
func (n *node) current() *x509.Certificate {
	cert, _, err := certstore.ReadCurrent(n.certDir, prefix)
	if err != nil {
		return nil
	}
	return cert.Leaf
}

// serial is the stored certificate's serial number, or "".
func (n *node) serial() string {
	if c := n.current(); c != nil {
		return c.SerialNumber.String()
	}
	return ""
}

// state says what a check may accept.
type state int

const (
	// killedFresh: a first bootstrap was killed; the node may hold no
	// certificate yet, and a kubeconfig that is not usable yet.
	killedFresh state = iota
	// holding: the node held a valid certificate before (a rotation was
	// killed or failed): it must still have one, and the kubeconfig
	// must authenticate.
	holding
	// complete: a run completed; everything must be in place, and no
	// leftover of an interrupted write may remain.
	complete
)

func (s state) String() string {
	return [...]string{"after a kill during a first bootstrap", "while holding a certificate", "after a completed run"}[s]
}

// checker checks the invariants of issue 11 §3 on nodes of one cluster.
type checker struct {
	c     *testcluster.Cluster
	admin kubernetes.Interface
}

func newChecker(t *testing.T, c *testcluster.Cluster) *checker {
	t.Helper()
	cfg, err := c.AdminConfig()
	if err != nil {
		t.Fatal(err)
	}
	// Every check lists all CSRs: protobuf halves what that costs.
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	admin, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &checker{c: c, admin: admin}
}

// forget deletes the CSRs of a node that will not run again, so that the
// list every check reads does not grow with each bootstrap cycle.
func (ck *checker) forget(t *testing.T, n *node) {
	t.Helper()
	for _, names := range ck.csrsByKey(t, n.name) {
		for _, name := range names {
			err := ck.admin.CertificatesV1().CertificateSigningRequests().Delete(t.Context(), name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				t.Fatalf("deleting CSR %s: %v", name, err)
			}
		}
	}
}

// findings are the results of one check.
type findings struct {
	violations []string // one line each
	leftovers  int      // leftovers of interrupted writes that the state tolerates
}

// check checks the invariants of n in state s. Leftovers of interrupted
// writes (an empty pair file that nothing points at, a temporary file) are
// tolerated after a kill; after a completed run they are violations.
func (ck *checker) check(t *testing.T, n *node, s state) (f findings) {
	t.Helper()
	bad := func(format string, args ...any) {
		f.violations = append(f.violations, fmt.Sprintf("%s (%s): ", n.name, s)+fmt.Sprintf(format, args...))
	}
	// at most one CSR per key
	for key, names := range ck.csrsByKey(t, n.name) {
		if len(names) > 1 {
			bad("%d CSRs for one key (%s): %s", len(names), key, strings.Join(names, ", "))
		}
	}
	// no torn or zero-length file, at most one temporary key
	f.leftovers = checkFiles(n, s, bad)
	// client-go's file store reads the store; a valid certificate is never
	// replaced by nothing
	ck.checkStore(n, s, bad)
	// the kubeconfig parses and authenticates
	ck.checkKubeconfig(t, n, s, bad)
	return f
}

// csrsByKey groups the names of n's CSRs by their public key (hex of the
// first bytes of its PKIX encoding, enough to tell keys apart).
func (ck *checker) csrsByKey(t *testing.T, node string) map[string][]string {
	t.Helper()
	list, err := ck.admin.CertificatesV1().CertificateSigningRequests().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing CSRs: %v", err)
	}
	out := map[string][]string{}
	for _, c := range list.Items {
		block, _ := pem.Decode(c.Spec.Request)
		if block == nil {
			continue
		}
		req, err := x509.ParseCertificateRequest(block.Bytes)
		if err != nil || req.Subject.CommonName != "system:node:"+node {
			continue
		}
		der, err := x509.MarshalPKIXPublicKey(req.PublicKey)
		if err != nil {
			continue
		}
		key := fmt.Sprintf("%x", der[len(der)-16:])
		out[key] = append(out[key], c.Name)
	}
	return out
}

// checkFiles checks every file under the node's directory and returns the
// number of tolerated leftovers.
func checkFiles(n *node, s state, bad func(string, ...any)) (leftovers int) {
	target := ""
	if t, err := filepath.EvalSymlinks(certstore.CurrentPath(n.certDir, prefix)); err == nil {
		target = t
	}
	tempKeys := 0
	filepath.WalkDir(n.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		base := d.Name()
		if base == prefix+".key.tmp" || strings.HasPrefix(base, "."+prefix+".key.tmp.tmp-") {
			tempKeys++
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return nil
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if _, err := os.Stat(path); err != nil && !strings.Contains(base, ".tmp-") {
				bad("%s is a dangling link: %v", path, err)
			}
			return nil
		}
		if strings.Contains(base, ".tmp-") {
			// A temporary file of an atomic write that a kill
			// interrupted: harmless while it is not renamed into place,
			// but a completed run must have removed it.
			switch {
			case s == complete:
				bad("leftover temporary file %s (%d bytes)", path, fi.Size())
			default:
				leftovers++
			}
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			bad("%s cannot be read: %v", path, err)
			return nil
		}
		if why := torn(n, base, data); why != "" {
			// An empty or partial pair file that the link never pointed
			// at is what a kill inside the store's write leaves; the
			// next Open removes the empty one (docs/design/bootstrap.md).
			if s != complete && path != target && strings.HasPrefix(base, prefix+"-") {
				leftovers++
				return nil
			}
			bad("%s is torn: %s", path, why)
		}
		return nil
	})
	if tempKeys > 1 {
		bad("%d temporary keys in %s", tempKeys, n.certDir)
	}
	return leftovers
}

// torn says why the content of the file base is not whole, or "".
func torn(n *node, base string, data []byte) string {
	switch {
	case len(data) == 0:
		return "zero length"
	case base == prefix+".key.tmp":
		if _, err := csr.ParsePrivateKeyPEM(data); err != nil {
			return err.Error()
		}
	case base == filepath.Base(n.kubeconfig):
		if _, err := clientcmd.Load(data); err != nil {
			return err.Error()
		}
	case strings.HasPrefix(base, prefix+"-") && strings.HasSuffix(base, ".pem"):
		if _, err := tls.X509KeyPair(data, data); err != nil {
			return err.Error()
		}
	}
	return ""
}

// checkStore reads the store with client-go's file store, the kubelet's,
// and checks that a valid certificate, once stored, stays replaced by a
// valid one.
func (ck *checker) checkStore(n *node, s state, bad func(string, ...any)) {
	now := time.Now()
	var got *x509.Certificate
	if _, err := os.Stat(n.certDir); err == nil {
		store, err := certificate.NewFileStore(prefix, n.certDir, n.certDir, "", "")
		if err != nil {
			bad("client-go's file store does not open %s: %v", n.certDir, err)
			return
		}
		cert, err := store.Current()
		var none *certificate.NoCertKeyError
		switch {
		case errors.As(err, &none):
		case err != nil:
			bad("client-go's file store does not read %s: %v", n.certDir, err)
			return
		default:
			got = cert.Leaf
		}
	}
	switch {
	case got == nil && (s != killedFresh || n.lastValid != nil):
		bad("no certificate stored in %s (last valid: serial %v)", n.certDir, serialOf(n.lastValid))
	case got == nil:
	case now.Before(got.NotBefore) || now.After(got.NotAfter):
		bad("the stored certificate (serial %s) is not valid now", got.SerialNumber)
	default:
		n.lastValid = got
	}
}

func serialOf(c *x509.Certificate) string {
	if c == nil {
		return "none"
	}
	return c.SerialNumber.String()
}

// checkKubeconfig checks that the kubeconfig parses and authenticates as
// the node. After a kill during a first bootstrap it may be missing, or
// not yet usable (written before the store); but if it looks usable, the
// next run would trust it, so then it must authenticate too.
func (ck *checker) checkKubeconfig(t *testing.T, n *node, s state, bad func(string, ...any)) {
	t.Helper()
	if _, err := os.Stat(n.kubeconfig); errors.Is(err, fs.ErrNotExist) && s == killedFresh {
		return
	}
	if _, err := clientcmd.LoadFromFile(n.kubeconfig); err != nil {
		bad("the kubeconfig does not parse: %v", err)
		return
	}
	if s == killedFresh {
		if _, _, err := kubeconfig.LoadUsable(n.kubeconfig, time.Now()); err != nil {
			return
		}
	}
	user, err := whoami(t, n.kubeconfig)
	switch {
	case err != nil:
		bad("the kubeconfig does not authenticate: %v", err)
	case user != "system:node:"+n.name:
		bad("the kubeconfig authenticates as %q", user)
	}
}

// whoami asks the API server who the kubeconfig's credentials are. The
// certificate and key are read now, into the config, with a transport of
// its own that is closed after the request: client-go's cached, reloading
// transports would answer with a certificate read earlier.
func whoami(t *testing.T, path string) (string, error) {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return "", err
	}
	if cfg.CertFile != "" {
		if cfg.CertData, err = os.ReadFile(cfg.CertFile); err != nil {
			return "", err
		}
		cfg.CertFile = ""
	}
	if cfg.KeyFile != "" {
		if cfg.KeyData, err = os.ReadFile(cfg.KeyFile); err != nil {
			return "", err
		}
		cfg.KeyFile = ""
	}
	cfg.Timeout = 30 * time.Second
	cfg.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil } // not cacheable: a transport of its own
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return "", err
	}
	defer hc.CloseIdleConnections()
	client, err := kubernetes.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return "", err
	}
	r, err := client.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return r.Status.UserInfo.Username, nil
}
