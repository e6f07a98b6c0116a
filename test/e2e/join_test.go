package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	certutil "k8s.io/client-go/util/cert"

	"github.com/tlsboot/tlsboot/discovery"
	"github.com/tlsboot/tlsboot/internal/testcluster"
	"github.com/tlsboot/tlsboot/token"
)

// setUpDiscovery runs 'tlsboot setup' on c (once per cluster is enough,
// but it is idempotent) and returns the cluster CA's pin.
func setUpDiscovery(t *testing.T, c *testcluster.Cluster) discovery.Pin {
	t.Helper()
	if r := run(t, tlsbootBin, "setup", "--kubeconfig", c.AdminKubeconfig, "--signer-wait", "1m"); r.code != 0 {
		t.Fatalf("setup: %s", r)
	}
	pem, err := os.ReadFile(c.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	certs, err := certutil.ParseCertsPEM(pem)
	if err != nil {
		t.Fatal(err)
	}
	return discovery.PinOf(certs[0])
}

// joinArgs are the node flags a join needs on top of the printed command.
func (n *node) joinArgs(extra ...string) []string {
	return append([]string{
		"--bootstrap-kubeconfig", filepath.Join(n.dir, "bootstrap-kubelet.conf"),
		"--kubeconfig", n.kubeconfig,
		"--cert-dir", n.certDir,
		"--node-name", n.name,
		"--server-wait", "5s",
		"--wait-timeout", "2m",
	}, extra...)
}

// awaitClusterInfo waits until cond holds for cluster-info (a list, then a
// watch; no polling).
func awaitClusterInfo(t *testing.T, client kubernetes.Interface, cond func(*corev1.ConfigMap) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	lw := cache.NewListWatchFromClient(client.CoreV1().RESTClient(), "configmaps", "kube-public", fields.OneTermEqualSelector("metadata.name", "cluster-info"))
	check := func(o runtime.Object) bool { cm, ok := o.(*corev1.ConfigMap); return ok && cond(cm) }
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.ConfigMap{}, func(s cache.Store) (bool, error) {
		items := s.List()
		return len(items) == 1 && check(items[0].(runtime.Object)), nil
	}, func(ev watch.Event) (bool, error) { return ev.Type != watch.Deleted && check(ev.Object), nil })
	if err != nil {
		t.Fatalf("waiting for cluster-info: %v", err)
	}
}

// TestJoin is the journey of issue 10: setup, token create
// --print-join-command, that command on a fresh node directory, and the
// node's kubeconfig works as system:node:<name>. Then each bad input gets
// its one line, a non-zero exit and nothing written.
func TestJoin(t *testing.T) {
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		c := clusterIn(t, "auto", layout)
		pin := setUpDiscovery(t, c)
		client := admin(t, c)

		t.Run("setup again changes nothing", func(t *testing.T) {
			r := run(t, tlsbootBin, "setup", "--kubeconfig", c.AdminKubeconfig)
			if r.code != 0 || r.stdout != "" {
				t.Fatalf("second setup: %s", r)
			}
		})

		t.Run("journey", func(t *testing.T) {
			r := run(t, tlsbootBin, "token", "create", "--kubeconfig", c.AdminKubeconfig, "--print-join-command")
			if r.code != 0 {
				t.Fatalf("token create: %s", r)
			}
			fields := strings.Fields(r.stdout)
			if len(fields) != 7 || fields[0] != "tlsboot" || fields[1] != "join" || fields[2] != c.URL() || fields[5] != "--discovery-token-ca-cert-hash" || fields[6] != string(pin) {
				t.Fatalf("join command %q: want 'tlsboot join %s --token T --discovery-token-ca-cert-hash %s'", r.stdout, c.URL(), pin)
			}
			secret := strings.SplitN(fields[4], ".", 2)[1]
			n := newNode(t, c)
			r = run(t, tlsbootBin, append(fields[1:], n.joinArgs()...)...)
			if r.code != 0 {
				t.Fatalf("join: %s", r)
			}
			if strings.Contains(r.stdout+r.stderr, secret) {
				t.Fatalf("join printed the token's secret:\n%s", r)
			}
			if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
				t.Fatalf("node kubeconfig authenticates as %q", u.Username)
			}
			boot := filepath.Join(n.dir, "bootstrap-kubelet.conf")
			if m := fileMode(t, boot); m != 0o600 {
				t.Fatalf("bootstrap kubeconfig mode %v", m)
			}
			if u := whoami(t, boot); !strings.HasPrefix(u.Username, "system:bootstrap:") {
				t.Fatalf("bootstrap kubeconfig authenticates as %q", u.Username)
			}
		})

		t.Run("join --run keeps running as the agent", func(t *testing.T) {
			tok, err := c.CreateToken(t.Context(), testcluster.TokenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			n := newNode(t, c)
			p := start(t, tlsbootBin, append([]string{"join", c.URL(), "--token", tok, "--discovery-token-ca-cert-hash", string(pin),
				"--run", "--metrics-bind-address", "127.0.0.1:0"}, n.joinArgs()...)...)
			waitOutput(t, p, `"Certificate in use"`)
			if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
				t.Fatalf("node kubeconfig authenticates as %q", u.Username)
			}
			p.signal(t, syscall.SIGTERM)
			if r := p.wait(t); r.code != 0 {
				t.Fatalf("join --run after SIGTERM: %s", r)
			}
		})

		good, err := c.CreateToken(t.Context(), testcluster.TokenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		goodID, _, _ := strings.Cut(good, ".")
		awaitClusterInfo(t, client, func(cm *corev1.ConfigMap) bool { return cm.Data["jws-kubeconfig-"+goodID] != "" })
		deleted, err := c.CreateToken(t.Context(), testcluster.TokenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		deletedID, _, _ := strings.Cut(deleted, ".")
		awaitClusterInfo(t, client, func(cm *corev1.ConfigMap) bool { return cm.Data["jws-kubeconfig-"+deletedID] != "" })
		if r := run(t, tlsbootBin, "token", "delete", "--kubeconfig", c.AdminKubeconfig, deletedID); r.code != 0 || r.stdout != `bootstrap token "`+deletedID+`" deleted`+"\n" {
			t.Fatalf("token delete: %s", r)
		}
		awaitClusterInfo(t, client, func(cm *corev1.ConfigMap) bool { return cm.Data["jws-kubeconfig-"+deletedID] == "" })
		expired, err := c.CreateToken(t.Context(), testcluster.TokenOptions{TTL: -time.Hour})
		if err != nil {
			t.Fatal(err)
		}

		otherPin := "sha256:" + strings.Repeat("0", 64)
		closed := httptest.NewServer(http.NotFoundHandler())
		closedAddr := strings.TrimPrefix(closed.URL, "http://")
		closed.Close()
		for _, tc := range []struct {
			name, server, token, pin string
			extra                    []string
			code                     int
			want                     string
		}{
			{"deleted token", c.URL(), deleted, string(pin), nil, 1, "has no signature for token ID " + deletedID},
			{"expired token", c.URL(), expired, string(pin), nil, 1, "the token is wrong, expired or deleted"},
			{"wrong secret", c.URL(), goodID + ".0000000000000000", string(pin), nil, 1, "not with this token's secret"},
			{"wrong pin prints the presented CA's hash", c.URL(), good, otherPin, nil, 1, "has the public key hash " + string(pin) + ", which matches no --discovery-token-ca-cert-hash"},
			{"malformed pin", c.URL(), good, "sha256:abc", nil, 2, "malformed CA pin"},
			{"malformed token", c.URL(), goodID + ".short", string(pin), nil, 2, "malformed bootstrap token"},
			{"no pin", c.URL(), good, "", nil, 2, "a CA pin is required"},
			{"unreachable", closedAddr, good, string(pin), nil, 1, "cannot reach the API server at https://" + closedAddr},
		} {
			t.Run(tc.name, func(t *testing.T) {
				n := newNode(t, c)
				args := []string{"join", tc.server, "--token", tc.token, "--discovery-timeout", "3s"}
				if tc.pin != "" {
					args = append(args, "--discovery-token-ca-cert-hash", tc.pin)
				}
				r := run(t, tlsbootBin, append(args, n.joinArgs(tc.extra...)...)...)
				if r.code != tc.code || !strings.Contains(r.lastLine(), tc.want) {
					t.Fatalf("want exit %d and %q:\n%s", tc.code, tc.want, r)
				}
				checkOneLine(t, r, tc.token)
				if entries, _ := os.ReadDir(n.dir); len(entries) != 0 {
					t.Fatalf("join wrote %v", entries)
				}
			})
		}

		// A man in the middle who knows the token serves the real,
		// correctly signed cluster-info, but cannot present a certificate of
		// the real CA.
		t.Run("man in the middle", func(t *testing.T) {
			cm, err := client.CoreV1().ConfigMaps("kube-public").Get(t.Context(), "cluster-info", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			mitm := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				json.NewEncoder(w).Encode(cm)
			}))
			mitm.TLS = &tls.Config{}
			mitm.StartTLS() // httptest's own CA
			t.Cleanup(mitm.Close)
			n := newNode(t, c)
			r := run(t, tlsbootBin, append([]string{"join", mitm.URL, "--token", good, "--discovery-token-ca-cert-hash", string(pin)}, n.joinArgs()...)...)
			if r.code != 1 || !strings.Contains(r.lastLine(), "presents a TLS certificate the pinned CA does not verify") || !strings.Contains(r.lastLine(), "someone may be in the middle") {
				t.Fatalf("join through a man in the middle:\n%s", r)
			}
			checkOneLine(t, r, good)
			if entries, _ := os.ReadDir(n.dir); len(entries) != 0 {
				t.Fatalf("join wrote %v", entries)
			}
		})
	})
}

// checkOneLine: stderr ends in one error line and never shows the secret.
func checkOneLine(t *testing.T, r result, tok string) {
	t.Helper()
	if _, secret, ok := strings.Cut(tok, "."); ok && len(secret) >= 4 && strings.Contains(r.stdout+r.stderr, secret) {
		t.Fatalf("output shows the token's secret:\n%s", r)
	}
	if !strings.HasPrefix(r.lastLine(), "tlsboot: ") {
		t.Fatalf("last line %q is not the error line:\n%s", r.lastLine(), r)
	}
}

// TestSetupWithoutSigner: on a cluster whose kube-controller-manager runs
// neither bootstrapsigner nor tokencleaner, setup says so; --dry-run
// changes nothing.
func TestSetupWithoutSigner(t *testing.T) {
	c := cluster(t, "manual")
	client := admin(t, c)
	_, err := client.CoreV1().ConfigMaps("kube-public").Get(t.Context(), "cluster-info", metav1.GetOptions{})
	if fresh := err != nil; fresh {
		r := run(t, tlsbootBin, "setup", "--kubeconfig", c.AdminKubeconfig, "--dry-run")
		// testcluster made the ClusterRoleBindings already.
		if r.code != 0 || !strings.Contains(r.stdout, "would create ConfigMap kube-public/cluster-info") ||
			!strings.Contains(r.stdout, "would create Role kube-public/kubeadm:bootstrap-signer-clusterinfo") || strings.Contains(r.stdout, "ClusterRoleBinding") {
			t.Fatalf("setup --dry-run:\n%s", r)
		}
		if _, err := client.CoreV1().ConfigMaps("kube-public").Get(t.Context(), "cluster-info", metav1.GetOptions{}); err == nil {
			t.Fatal("setup --dry-run created cluster-info")
		}
	}
	r := run(t, tlsbootBin, "setup", "--kubeconfig", c.AdminKubeconfig, "--signer-wait", "5s")
	if r.code != 1 || !strings.Contains(r.lastLine(), "does not seem to run bootstrapsigner") || !strings.Contains(r.lastLine(), "nor tokencleaner") ||
		!strings.Contains(r.lastLine(), "--controllers=*,bootstrapsigner,tokencleaner") {
		t.Fatalf("setup without the token controllers:\n%s", r)
	}
	// The test tokens are gone.
	list, err := token.List(t.Context(), client)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range list {
		if strings.HasPrefix(i.Description, "tlsboot setup:") {
			t.Fatalf("test token %s left behind", i.ID)
		}
	}
}
