package e2e

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"

	"github.com/tlsboot/tlsboot/approval"
	"github.com/tlsboot/tlsboot/internal/testcluster"
	"github.com/tlsboot/tlsboot/token"
)

// boundClusterOptions: kube-controller-manager signs bootstrap tokens
// (join's discovery) and certificates, but does not approve: its
// csrapproving ignores bindings, so tlsboot approver must be the only
// approver of client CSRs for a binding to hold.
var boundClusterOptions = testcluster.Options{
	Controllers:     []string{"csrsigning", "csrcleaner", "bootstrapsigner", "tokencleaner"},
	SigningDuration: time.Hour,
}

// TestBoundToken is issue 10's bound token against the real control plane,
// with the real binaries: 'tlsboot token create --node-name X', then
// 'tlsboot join' with 'tlsboot approver' running with its default flags as
// the cluster's only approver. Used as another node the token is refused
// with TokenBoundToOtherNode and join fails with one line; used as X it
// works; a second key from it is refused with TokenAlreadyUsed; a dotted
// node name works, and its first label alone is refused.
func TestBoundToken(t *testing.T) {
	c := testcluster.StartT(t, boundClusterOptions)
	setUpDiscovery(t, c)
	adminClient := admin(t, c)
	applyManifests(t, c)
	kubeconfig, _ := serviceAccountKubeconfig(t, c)
	p := startApprover(t, kubeconfig, "--leader-elect-namespace", approverNamespace)
	waitOutput(t, p, `"Became the leader`)

	// create makes a token bound to node with the real binary and returns
	// the printed join command, split, and the token.
	create := func(t *testing.T, node string) ([]string, token.Token) {
		t.Helper()
		r := run(t, tlsbootBin, "token", "create", "--kubeconfig", c.AdminKubeconfig, "--node-name", node, "--print-join-command")
		if r.code != 0 {
			t.Fatalf("token create --node-name %s: %s", node, r)
		}
		cmd := strings.Fields(r.stdout)
		if len(cmd) != 9 || cmd[1] != "join" || cmd[3] != "--token" || !slices.Equal(cmd[7:], []string{"--node-name", node}) {
			t.Fatalf("join command %q: want 'tlsboot join URL --token T --discovery-token-ca-cert-hash PIN --node-name %s'", r.stdout, node)
		}
		tok, err := token.Parse(cmd[4])
		if err != nil {
			t.Fatal(err)
		}
		return cmd, tok
	}
	// join runs the printed command on a fresh node directory as node name
	// (the printed --node-name is replaced by joinArgs').
	join := func(t *testing.T, cmd []string, name string, tok token.Token) (*node, result) {
		t.Helper()
		n := newNode(t, c)
		n.name = name
		r := run(t, tlsbootBin, append(slices.Clone(cmd[1:7]), n.joinArgs()...)...)
		if strings.Contains(r.stdout+r.stderr, tok.Secret) {
			t.Fatalf("join printed the token's secret:\n%s", r)
		}
		return n, r
	}
	joined := func(t *testing.T, n *node, r result) {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("join as %s: %s", n.name, r)
		}
		if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
			t.Fatalf("the node's kubeconfig authenticates as %q, want system:node:%s", u.Username, n.name)
		}
		cond := waitCSR(t, adminClient, n.name).Status.Conditions[0]
		if cond.Type != certificatesv1.CertificateApproved || cond.Reason != approval.ReasonAutoApproved {
			t.Fatalf("the node's CSR: %s %s %q, want Approved %s", cond.Type, cond.Reason, cond.Message, approval.ReasonAutoApproved)
		}
	}
	refused := func(t *testing.T, n *node, r result, reason string, says ...string) {
		t.Helper()
		if r.code == 0 {
			t.Fatalf("join as %s succeeded, want it refused with %s: %s", n.name, reason, r)
		}
		line := r.lastLine()
		t.Logf("join as %s: exit %d: %s", n.name, r.code, line)
		for _, s := range append([]string{reason, "running again with the same bootstrap token is denied again"}, says...) {
			if !strings.Contains(line, s) {
				t.Errorf("join's last line %q does not say %q; all of it:\n%s", line, s, r)
			}
		}
		if exists(n.kubeconfig) {
			t.Errorf("a refused join wrote %s", n.kubeconfig)
		}
		cond := waitCSR(t, adminClient, n.name).Status.Conditions[0]
		if cond.Type != certificatesv1.CertificateDenied || cond.Reason != reason {
			t.Fatalf("the CSR for %s: %s %s %q, want Denied %s", n.name, cond.Type, cond.Reason, cond.Message, reason)
		}
	}

	t.Run("used as another node: refused, then as its node: works", func(t *testing.T) {
		x := newNode(t, c).name
		cmd, tok := create(t, x)
		y, r := join(t, cmd, x+"-other", tok)
		refused(t, y, r, approval.ReasonTokenBoundToOtherNode, `"`+x+`"`, `"`+y.name+`"`)
		n, r := join(t, cmd, x, tok)
		joined(t, n, r)
	})

	t.Run("a second key from the same token is not approved", func(t *testing.T) {
		x := newNode(t, c).name
		cmd, tok := create(t, x)
		n, r := join(t, cmd, x, tok)
		joined(t, n, r)
		kc := filepath.Join(t.TempDir(), "stolen.kubeconfig")
		if err := c.WriteBootstrapKubeconfig(kc, tok.Value()); err != nil {
			t.Fatal(err)
		}
		name := createCSR(t, clientFor(t, kc), clientCSR(x))
		if cond := waitDecision(t, adminClient, name); cond.Type != certificatesv1.CertificateDenied || cond.Reason != approval.ReasonTokenAlreadyUsed {
			t.Fatalf("a second key for %s: %s %s %q, want Denied %s", x, cond.Type, cond.Reason, cond.Message, approval.ReasonTokenAlreadyUsed)
		}
		// The node's own identity is untouched.
		if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+x {
			t.Fatalf("the node's kubeconfig authenticates as %q", u.Username)
		}
	})

	t.Run("a dotted node name", func(t *testing.T) {
		label := newNode(t, c).name
		x := label + ".example.com"
		cmd, tok := create(t, x)
		y, r := join(t, cmd, label, tok)
		refused(t, y, r, approval.ReasonTokenBoundToOtherNode, `"`+x+`"`)
		n, r := join(t, cmd, x, tok)
		joined(t, n, r)
	})
}
