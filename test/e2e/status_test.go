package e2e

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsboot/tlsboot/internal/testcluster"
)

// statusJSON is the part of `tlsboot status -o json` the tests read.
type statusJSON struct {
	Certificates []struct {
		Name        string   `json:"name"`
		State       string   `json:"state"`
		Subject     string   `json:"subject"`
		IPAddresses []string `json:"ipAddresses"`
		SecondsLeft int64    `json:"secondsLeft"`
		PendingKey  string   `json:"pendingKey"`
		StaleFiles  []string `json:"staleFiles"`
		RotationBy  string   `json:"rotationBy"`
	} `json:"certificates"`
	Kubeconfig *struct {
		UsesStore bool   `json:"usesStore"`
		Usable    bool   `json:"usable"`
		Error     string `json:"error"`
	} `json:"kubeconfig"`
}

func status(t *testing.T, n *node, extra ...string) (text result, js statusJSON, jsr result) {
	t.Helper()
	args := append([]string{"status", "--cert-dir", n.certDir, "--kubeconfig", n.kubeconfig}, extra...)
	text = run(t, tlsbootBin, args...)
	jsr = run(t, tlsbootBin, append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(jsr.stdout), &js); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, jsr)
	}
	if text.code != jsr.code {
		t.Errorf("exit codes differ: text %d, json %d", text.code, jsr.code)
	}
	return text, js, jsr
}

func TestStatus(t *testing.T) {
	t.Parallel()
	inLayouts(t, func(t *testing.T, layout testcluster.Layout) {
		t.Parallel()
		c := clusterIn(t, "auto", layout)

		t.Run("missing", func(t *testing.T) {
			n := newNode(t, c)
			os.MkdirAll(n.certDir, 0o700)
			text, js, _ := status(t, n)
			if text.code != 1 || !strings.Contains(text.stdout, "MISSING") || js.Certificates[0].State != "missing" {
				t.Errorf("missing: %s", text)
			}
		})

		t.Run("valid", func(t *testing.T) {
			n := newNode(t, c)
			if r := run(t, tlsbootBin, n.args()...); r.code != 0 {
				t.Fatal(r)
			}
			text, js, _ := status(t, n)
			cl := js.Certificates[0]
			if text.code != 0 || cl.State != "valid" || cl.SecondsLeft <= 0 || cl.Subject != "CN=system:node:"+n.name+",O=system:nodes" || cl.RotationBy == "" {
				t.Errorf("valid: %s\n%+v", text, cl)
			}
			if k := js.Kubeconfig; k == nil || !k.UsesStore || !k.Usable {
				t.Errorf("kubeconfig: %+v", js.Kubeconfig)
			}
			for _, want := range []string{"valid,", "rotation due:", "uses client certificate:  yes", "serving certificate", "none"} {
				if !strings.Contains(text.stdout, want) {
					t.Errorf("text output lacks %q:\n%s", want, text.stdout)
				}
			}

			// A pending key (bootstrap or renewal in progress) and stale files.
			os.WriteFile(filepath.Join(n.certDir, "kubelet-client.key.tmp"), []byte("x"), 0o600)
			forge(t, c, n, forgeOptions{notBefore: time.Now().Add(-time.Minute), notAfter: time.Now().Add(time.Hour)})
			text, js, _ = status(t, n)
			if cl := js.Certificates[0]; text.code != 0 || cl.PendingKey == "" || len(cl.StaleFiles) != 1 {
				t.Errorf("pending and stale: %s\n%+v", text, cl)
			}
			if !strings.Contains(text.stdout, "pending key:") || !strings.Contains(text.stdout, "stale files:") {
				t.Errorf("text output lacks pending key or stale files:\n%s", text.stdout)
			}
		})

		t.Run("expired", func(t *testing.T) {
			n := newNode(t, c)
			forge(t, c, n, forgeOptions{notBefore: time.Now().Add(-2 * time.Hour), notAfter: time.Now().Add(-time.Hour)})
			text, js, _ := status(t, n)
			if text.code != 1 || !strings.Contains(text.stdout, "EXPIRED") || js.Certificates[0].State != "expired" || js.Kubeconfig.Usable {
				t.Errorf("expired: %s", text)
			}
			if !strings.Contains(text.stderr, "is expired") {
				t.Errorf("no one-line reason on stderr: %q", text.stderr)
			}
		})

		t.Run("not yet valid", func(t *testing.T) {
			n := newNode(t, c)
			forge(t, c, n, forgeOptions{notBefore: time.Now().Add(time.Hour), notAfter: time.Now().Add(2 * time.Hour)})
			text, js, _ := status(t, n)
			if text.code != 1 || js.Certificates[0].State != "not_yet_valid" || !strings.Contains(text.stdout, "NOT YET VALID") {
				t.Errorf("not yet valid: %s", text)
			}
		})

		t.Run("serving", func(t *testing.T) {
			n := newNode(t, c)
			forge(t, c, n, forgeOptions{notBefore: time.Now().Add(-time.Minute), notAfter: time.Now().Add(time.Hour)})
			forge(t, c, n, forgeOptions{prefix: "kubelet-server", notBefore: time.Now().Add(-time.Minute), notAfter: time.Now().Add(time.Hour),
				dns: []string{"node.example"}, ips: []net.IP{net.ParseIP("10.1.2.3")}})
			text, js, _ := status(t, n)
			sv := js.Certificates[1]
			if text.code != 0 || sv.Name != "serving" || sv.State != "valid" || len(sv.IPAddresses) != 1 || sv.IPAddresses[0] != "10.1.2.3" {
				t.Errorf("serving: %s\n%+v", text, sv)
			}
			if !strings.Contains(text.stdout, "node.example, 10.1.2.3") {
				t.Errorf("SANs not shown:\n%s", text.stdout)
			}
		})

		t.Run("bad flags", func(t *testing.T) {
			if r := run(t, tlsbootBin, "status", "--cert-dir", t.TempDir(), "-o", "yaml"); r.code != 2 {
				t.Errorf("-o yaml: %s", r)
			}
			if r := run(t, tlsbootBin, "status"); r.code != 2 {
				t.Errorf("no --cert-dir: %s", r)
			}
		})
	})
}
