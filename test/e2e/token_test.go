package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlsboot/tlsboot/token"
	"github.com/tlsboot/tlsboot/token/binding"
)

// TestToken: create (plain and bound), list (text and json), delete,
// against the real API server; a bound token's group is accepted by the
// API server's authenticator and decodes back to the node name.
func TestToken(t *testing.T) {
	c := cluster(t, "auto")
	setUpDiscovery(t, c)
	tok := func(args ...string) result {
		return run(t, tlsbootBin, append(append([]string{"token"}, args...), "--kubeconfig", c.AdminKubeconfig)...)
	}

	r := tok("create", "--ttl", "2h", "--description", "rack 4")
	if r.code != 0 {
		t.Fatalf("token create: %s", r)
	}
	plain, err := token.Parse(strings.TrimSpace(r.stdout))
	if err != nil {
		t.Fatalf("token create printed %q: %v", r.stdout, err)
	}

	node := "bound-" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-") + ".example.com"
	r = tok("create", "--node-name", node, "--print-join-command")
	if r.code != 0 || !strings.HasSuffix(strings.TrimSpace(r.stdout), "--node-name "+node) {
		t.Fatalf("bound token create: %s", r)
	}
	fields := strings.Fields(r.stdout)
	bound, err := token.Parse(fields[4])
	if err != nil {
		t.Fatal(err)
	}

	r = tok("list")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "TOKEN") {
		t.Fatalf("token list: %s", r)
	}
	for _, secret := range []string{plain.Secret, bound.Secret} {
		if strings.Contains(r.stdout, secret) {
			t.Fatalf("token list shows a secret:\n%s", r.stdout)
		}
	}
	lines := map[string]string{}
	for _, l := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines[f[0]] = l
		}
	}
	if l := lines[plain.ID]; !strings.Contains(l, "rack 4") || !strings.Contains(l, "authentication,signing") || !strings.Contains(l, token.DefaultGroup) {
		t.Errorf("line of the plain token: %q", l)
	}
	group, _ := binding.Group(node)
	if l := lines[bound.ID]; !strings.Contains(l, group) || !strings.Contains(l, " 59m") && !strings.Contains(l, " 60m") {
		t.Errorf("line of the bound token (1h TTL, binding group %s): %q", group, l)
	}

	r = tok("list", "-o", "json")
	var parsed struct{ Tokens []token.Info }
	if err := json.Unmarshal([]byte(r.stdout), &parsed); r.code != 0 || err != nil {
		t.Fatalf("token list -o json: %v\n%s", err, r)
	}
	var found bool
	for _, i := range parsed.Tokens {
		found = found || i.ID == bound.ID && i.Node == node
	}
	if !found {
		t.Errorf("json list lacks the bound token with node %s:\n%s", node, r.stdout)
	}

	// The API server accepts the binding group and puts it in the
	// identity, where the approver will read it.
	kc := filepath.Join(t.TempDir(), "bound.kubeconfig")
	if err := c.WriteBootstrapKubeconfig(kc, bound.Value()); err != nil {
		t.Fatal(err)
	}
	u := whoami(t, kc)
	if got, ok, err := binding.Node(u.Groups); !ok || err != nil || got != node {
		t.Fatalf("groups %v decode to %q, %v, %v; want %s", u.Groups, got, ok, err, node)
	}

	r = tok("delete", plain.ID, bound.Value())
	if r.code != 0 || strings.Count(r.stdout, "deleted") != 2 || strings.Contains(r.stdout+r.stderr, bound.Secret) {
		t.Fatalf("token delete: %s", r)
	}
	r = tok("delete", plain.ID)
	if r.code != 1 || !strings.Contains(r.lastLine(), "bootstrap token "+plain.ID+" does not exist") {
		t.Fatalf("deleting a deleted token: %s", r)
	}
}
