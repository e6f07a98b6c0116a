package e2e

import (
	"crypto/ecdsa"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tlsboot/tlsboot/certstore"
	"github.com/tlsboot/tlsboot/internal/testcluster"
	"github.com/tlsboot/tlsboot/internal/testpki"
)

// TestExpiredKubeconfigRebootstraps: a node whose certificate expired (while
// it was off) bootstraps again, with the key it already has.
func TestExpiredKubeconfigRebootstraps(t *testing.T) {
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		c := clusterIn(t, "auto", layout)
		n := newNode(t, c)
		forge(t, c, n, forgeOptions{notBefore: time.Now().Add(-2 * time.Hour), notAfter: time.Now().Add(-time.Hour)})
		store, err := certstore.Open(certstore.Options{Dir: n.certDir, Prefix: "kubelet-client"})
		if err != nil {
			t.Fatal(err)
		}
		old, err := store.Current()
		if err != nil {
			t.Fatal(err)
		}

		r := run(t, tlsbootBin, n.args()...)
		if r.code != 0 || !strings.Contains(r.stdout, "issued") {
			t.Fatalf("re-bootstrap: %s", r)
		}
		if !strings.Contains(r.stderr, "expired") {
			t.Errorf("the log does not say why a bootstrap was needed:\n%s", r.stderr)
		}
		cur, err := store.Current()
		if err != nil {
			t.Fatal(err)
		}
		if !cur.Leaf.PublicKey.(*ecdsa.PublicKey).Equal(old.Leaf.PublicKey) {
			t.Error("new certificate is not for the key of the expired one (the kubelet reuses it)")
		}
		if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
			t.Errorf("kubeconfig authenticates as %q", u.Username)
		}
	})
}

// TestAPIServerDownAtStart: the API server is down when the node starts and
// comes up later; the run waits, retries and completes.
func TestAPIServerDownAtStart(t *testing.T) {
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		c := testcluster.StartT(t, testcluster.Options{Layout: layout})
		n := newNode(t, c)
		if err := c.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		p := start(t, tlsbootBin, n.args("--server-wait", "1s")...)
		waitOutput(t, p, "retrying")
		if err := c.StartAPIServer(t.Context()); err != nil {
			t.Fatal(err)
		}
		r := p.wait(t)
		if r.code != 0 {
			t.Fatalf("run across an API server outage: %s", r)
		}
		if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
			t.Errorf("kubeconfig authenticates as %q", u.Username)
		}
	})
}

// TestBadInput: each failure ends with one clear line and a non-zero exit,
// and leaves whatever was on disk as it was.
func TestBadInput(t *testing.T) {
	c := cluster(t, "auto")
	otherCA := filepath.Join(t.TempDir(), "other-ca.crt")
	if err := os.WriteFile(otherCA, testpki.NewCA(t).PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	withBootstrap := func(mutate func(t *testing.T, path string)) func(t *testing.T, n *node) {
		return func(t *testing.T, n *node) {
			n.bootstrapKubeconfig = filepath.Join(n.dir, "bootstrap.kubeconfig")
			data, err := os.ReadFile(c.BootstrapKubeconfig)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(n.bootstrapKubeconfig, data, 0o600); err != nil {
				t.Fatal(err)
			}
			mutate(t, n.bootstrapKubeconfig)
		}
	}
	editKubeconfig := func(edit func(cfg *clientcmdapiConfig)) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			cfg, err := clientcmd.LoadFromFile(path)
			if err != nil {
				t.Fatal(err)
			}
			edit(cfg)
			if err := clientcmd.WriteToFile(*cfg, path); err != nil {
				t.Fatal(err)
			}
		}
	}
	token := func(opts testcluster.TokenOptions) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			tok, err := c.CreateToken(t.Context(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.WriteBootstrapKubeconfig(path, tok); err != nil {
				t.Fatal(err)
			}
		}
	}
	inCertDir := func(name, content string) func(t *testing.T, n *node) {
		return func(t *testing.T, n *node) {
			if err := os.MkdirAll(n.certDir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(n.certDir, name), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, n *node)
		args  []string
		want  []string
	}{
		{"missing bootstrap kubeconfig", func(t *testing.T, n *node) { n.bootstrapKubeconfig = filepath.Join(n.dir, "nope") }, nil,
			[]string{"bootstrap kubeconfig", "does not exist"}},
		{"garbled bootstrap kubeconfig", withBootstrap(func(t *testing.T, path string) { os.WriteFile(path, []byte("\x00{{garbage"), 0o600) }), nil,
			[]string{"bootstrap kubeconfig", "cannot be parsed"}},
		{"no current context", withBootstrap(editKubeconfig(func(cfg *clientcmdapiConfig) { cfg.CurrentContext = "" })), nil,
			[]string{"has no current-context"}},
		{"cert dir is a file", func(t *testing.T, n *node) { os.WriteFile(n.certDir, nil, 0o600) }, nil,
			[]string{"certificate directory", n0}},
		{"wrong CA", withBootstrap(editKubeconfig(func(cfg *clientcmdapiConfig) {
			for _, cl := range cfg.Clusters {
				cl.CertificateAuthority = otherCA
			}
		})), nil, []string{"TLS verification", "unknown authority", "certificate-authority"}},
		{"expired token", withBootstrap(token(testcluster.TokenOptions{TTL: -time.Hour})), nil,
			[]string{"401 Unauthorized", "invalid or expired"}},
		{"token without CSR permission", withBootstrap(token(testcluster.TokenOptions{Groups: []string{"system:bootstrappers:unbound"}})), nil,
			[]string{"403 Forbidden", "system:node-bootstrapper"}},
		{"corrupt current certificate", inCertDir("kubelet-client-current.pem", "garbage"), nil,
			[]string{"kubelet-client-current.pem", "move it away"}},
		{"unreachable server", withBootstrap(editKubeconfig(func(cfg *clientcmdapiConfig) {
			for _, cl := range cfg.Clusters {
				cl.Server = "https://127.0.0.1:" + closedPort(t)
			}
		})), []string{"--server-wait", "1s", "--wait-timeout", "3s"}, []string{"gave up", "connection refused"}},
		{"invalid node name", nil, []string{"--node-name", "Not_Valid"}, []string{"node name", "not valid"}},
		{"expiration too short", nil, []string{"--expiration", "5m"}, []string{"--expiration", "at least 10m"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNode(t, c)
			if tt.setup != nil {
				tt.setup(t, n)
			}
			before := snapshot(t, n.dir)
			r := run(t, tlsbootBin, n.args(tt.args...)...)
			if r.code == 0 {
				t.Fatalf("run succeeded: %s", r)
			}
			line := r.lastLine()
			if !strings.HasPrefix(line, "tlsboot: ") {
				t.Errorf("last line %q is not tlsboot's error line\n%s", line, r)
			}
			for _, w := range tt.want {
				if w != n0 && !strings.Contains(line, w) {
					t.Errorf("last line %q does not contain %q", line, w)
				}
			}
			if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic") {
				t.Errorf("stack trace in the output:\n%s", r.stderr)
			}
			if strings.Contains(r.stdout+r.stderr, strings.Split(c.Token, ".")[1]) {
				t.Error("the bootstrap token's secret appears in the output")
			}
			if exists(n.kubeconfig) {
				t.Error("a kubeconfig was written")
			}
			after := snapshot(t, n.dir)
			for path, content := range before {
				if after[path] != content {
					t.Errorf("%s changed by a failed run", path)
				}
			}
			if got := nodeCSRs(t, admin(t, c), n.name); len(got) > 0 && tt.name != "unreachable server" {
				for _, csr := range got {
					if len(csr.Status.Certificate) > 0 {
						t.Errorf("CSR %s was issued although the run failed", csr.Name)
					}
				}
			}
		})
	}
}

const n0 = "" // placeholder: no further substring required

type clientcmdapiConfig = clientcmdapi.Config

// snapshot maps each regular file under dir to its content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			data, _ := os.ReadFile(path)
			out[path] = string(data)
		}
		return nil
	})
	return out
}

func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	return port
}
