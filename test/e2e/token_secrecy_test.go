package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tlsboot/tlsboot/internal/testcluster"
	"github.com/tlsboot/tlsboot/token"
)

// The tests of issue 24, findings 3 and 7: the bootstrap token on the node.

// writeToken writes tok to a new file of mode in a new directory.
func writeToken(t *testing.T, tok string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// cmdline is the command line of process pid as the kernel shows it to
// every local user.
func cmdline(t *testing.T, pid int) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
}

// TestTokenSecrecyJoin (finding 3): the real 'tlsboot join --run --token'
// against the real cluster, once it runs as the agent, shows no token in
// /proc/PID/cmdline (same PID: it re-executed itself as 'tlsboot run'),
// warned once that the command line showed it, and still stops with exit 0
// on SIGTERM. The token also comes from --token-file and TLSBOOT_TOKEN; a
// token file others can read is refused with one line, writing nothing.
func TestTokenSecrecyJoin(t *testing.T) {
	c := cluster(t, "auto")
	pin := setUpDiscovery(t, c)
	newToken := func(t *testing.T) (tok, secret string) {
		t.Helper()
		tok, err := c.CreateToken(t.Context(), testcluster.TokenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tok, strings.SplitN(tok, ".", 2)[1]
	}
	joinRun := func(t *testing.T, n *node, env []string, source ...string) *proc {
		t.Helper()
		args := append([]string{"join", c.URL()}, source...)
		args = append(args, "--discovery-token-ca-cert-hash", string(pin), "--run", "--metrics-bind-address", "127.0.0.1:0", "--renew-before", "1m")
		return startEnv(t, env, tlsbootBin, append(args, n.joinArgs()...)...)
	}
	// agentIsUp waits for the agent to run with the node's certificate,
	// and checks who the node is.
	agentIsUp := func(t *testing.T, n *node, p *proc) {
		t.Helper()
		waitOutput(t, p, `"Certificate in use"`)
		if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
			t.Fatalf("node kubeconfig authenticates as %q", u.Username)
		}
	}
	stop := func(t *testing.T, p *proc, secret string) result {
		t.Helper()
		p.signal(t, syscall.SIGTERM)
		r := p.wait(t)
		if r.code != 0 {
			t.Fatalf("join --run after SIGTERM: %s", r)
		}
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Fatalf("the output shows the token's secret:\n%s", r)
		}
		return r
	}

	t.Run("join --run --token holds no token once running", func(t *testing.T) {
		t.Parallel()
		tok, secret := newToken(t)
		n := newNode(t, c)
		p := joinRun(t, n, nil, "--token", tok)
		agentIsUp(t, n, p)
		args := cmdline(t, p.cmd.Process.Pid)
		if strings.Contains(strings.Join(args, " "), secret) {
			t.Fatalf("/proc/%d/cmdline of the running agent shows the token's secret: %q", p.cmd.Process.Pid, args)
		}
		// The agent is 'tlsboot run' with the flags join was given.
		want := []string{"run", "--bootstrap-kubeconfig=" + filepath.Join(n.dir, "bootstrap-kubelet.conf"), "--kubeconfig=" + n.kubeconfig, "--cert-dir=" + n.certDir}
		if len(args) < 5 || strings.Join(args[1:5], " ") != strings.Join(want, " ") ||
			!contains(args, "--node-name="+n.name) || !contains(args, "--renew-before=1m0s") || !contains(args, "--metrics-bind-address=127.0.0.1:0") {
			t.Fatalf("the agent's command line %q, want %q and the run flags given", args, want)
		}
		r := stop(t, p, secret)
		if n := strings.Count(r.stderr, "WARNING: --token on the command line is visible to every local user"); n != 1 {
			t.Fatalf("%d warnings about --token on the command line, want 1:\n%s", n, r)
		}
	})

	t.Run("join --run --token-file", func(t *testing.T) {
		t.Parallel()
		tok, secret := newToken(t)
		n := newNode(t, c)
		p := joinRun(t, n, nil, "--token-file", writeToken(t, tok, 0o600))
		agentIsUp(t, n, p)
		if args := cmdline(t, p.cmd.Process.Pid); strings.Contains(strings.Join(args, " "), secret) || args[1] != "join" {
			t.Fatalf("command line %q: want join's, without the secret", args)
		}
		if r := stop(t, p, secret); strings.Contains(r.stderr, "--token on the command line") {
			t.Fatalf("warned about the command line without --token:\n%s", r)
		}
	})

	t.Run("join --run with TLSBOOT_TOKEN", func(t *testing.T) {
		t.Parallel()
		tok, secret := newToken(t)
		n := newNode(t, c)
		p := joinRun(t, n, []string{"TLSBOOT_TOKEN=" + tok})
		agentIsUp(t, n, p)
		if args := cmdline(t, p.cmd.Process.Pid); strings.Contains(strings.Join(args, " "), secret) {
			t.Fatalf("command line %q shows the secret", args)
		}
		stop(t, p, secret)
	})

	t.Run("join with TLSBOOT_TOKEN", func(t *testing.T) {
		t.Parallel()
		tok, secret := newToken(t)
		n := newNode(t, c)
		r := startEnv(t, []string{"TLSBOOT_TOKEN=" + tok}, tlsbootBin, append([]string{"join", c.URL(), "--discovery-token-ca-cert-hash", string(pin)}, n.joinArgs()...)...).wait(t)
		if r.code != 0 || strings.Contains(r.stdout+r.stderr, secret) {
			t.Fatalf("join: %s", r)
		}
		if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
			t.Fatalf("node kubeconfig authenticates as %q", u.Username)
		}
	})

	t.Run("token file others can read is refused", func(t *testing.T) {
		t.Parallel()
		tok, _ := newToken(t)
		for _, mode := range []os.FileMode{0o644, 0o640} {
			n := newNode(t, c)
			file := writeToken(t, tok, mode)
			r := run(t, tlsbootBin, append([]string{"join", c.URL(), "--token-file", file, "--discovery-token-ca-cert-hash", string(pin), "--run"}, n.joinArgs()...)...)
			if r.code != 1 || !strings.Contains(r.lastLine(), fmt.Sprintf("--token-file %s has mode %04o", file, mode)) || !strings.Contains(r.lastLine(), "chmod 600 "+file) {
				t.Fatalf("mode %04o: want exit 1 and one line naming %s and 'chmod 600':\n%s", mode, file, r)
			}
			checkOneLine(t, r, tok)
			if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Fatalf("more than one line:\n%s", r)
			}
			if entries, _ := os.ReadDir(n.dir); len(entries) != 0 {
				t.Fatalf("join wrote %v", entries)
			}
		}
	})
}

// TestTokenSecrecyReadableKubeconfig (finding 7), a sibling of
// TestNodeHardeningInsecureWarning: a bootstrap kubeconfig holding the
// token with mode 0644 works, but bootstrap (when it bootstraps and when
// there is nothing to do) and run each say so in one line naming the file
// and 'chmod 600', never the token; once it is 0600 they say nothing.
func TestTokenSecrecyReadableKubeconfig(t *testing.T) {
	c := cluster(t, "auto")
	n := newNode(t, c)
	n.bootstrapKubeconfig = filepath.Join(n.dir, "bootstrap.kubeconfig")
	cfg, err := clientcmd.LoadFromFile(c.BootstrapKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := clientcmdapi.FlattenConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if err := clientcmd.WriteToFile(*cfg, n.bootstrapKubeconfig); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(n.bootstrapKubeconfig, 0o644); err != nil {
		t.Fatal(err)
	}
	secret := strings.Split(c.Token, ".")[1]
	const warning = "is readable by its group or everyone"
	check := func(what string, r result, wantLines int) {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("%s: %s", what, r)
		}
		var lines []string
		for _, l := range strings.Split(r.stderr, "\n") {
			if strings.Contains(l, warning) {
				lines = append(lines, l)
			}
		}
		if len(lines) != wantLines {
			t.Fatalf("%s: %d warning lines, want %d:\n%s", what, len(lines), wantLines, r.stderr)
		}
		for _, l := range lines {
			if !strings.Contains(l, "bootstrap kubeconfig "+n.bootstrapKubeconfig) || !strings.Contains(l, "chmod 600 "+n.bootstrapKubeconfig) || !strings.Contains(l, "mode 0644") {
				t.Errorf("%s: warning %q does not name the file, its mode and 'chmod 600'", what, l)
			}
		}
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("%s: the token's secret appears in the output", what)
		}
	}
	check("bootstrap", run(t, tlsbootBin, n.args()...), 1)
	check("bootstrap with nothing to do", run(t, tlsbootBin, n.args()...), 1)
	a := startAgent(t, n)
	waitOutput(t, a.proc, warning)
	check("run", a.stop(t), 1)

	if err := os.Chmod(n.bootstrapKubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	check("bootstrap, file made private", run(t, tlsbootBin, n.args()...), 0)
	a = startAgent(t, n)
	check("run, file made private", a.stop(t), 0)
}

// TestTokenSecrecyNoExpiry (finding 7): against the real API server,
// 'token create --ttl 0' for an unbound token is a usage error that creates
// nothing; with --allow-no-expiry (or bound to a node) it creates a token
// that never expires, as kubeadm's --ttl 0 does. 'token create
// --token-file' creates the token of a private file, and refuses one
// others can read.
func TestTokenSecrecyNoExpiry(t *testing.T) {
	c := cluster(t, "auto")
	client := admin(t, c)
	tok := func(args ...string) result {
		return run(t, tlsbootBin, append(append([]string{"token"}, args...), "--kubeconfig", c.AdminKubeconfig)...)
	}
	ids := func() map[string]token.Info {
		list, err := token.List(t.Context(), client)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]token.Info{}
		for _, i := range list {
			m[i.ID] = i
		}
		return m
	}

	before := ids()
	r := tok("create", "--ttl", "0")
	if r.code != 2 || !strings.Contains(r.lastLine(), "--ttl 0 makes a token that never expires") || !strings.Contains(r.lastLine(), "--allow-no-expiry") || r.stdout != "" {
		t.Fatalf("token create --ttl 0: want exit 2 naming --allow-no-expiry:\n%s", r)
	}
	checkOneLine(t, r, "")
	// tokencleaner may delete expired tokens of other tests meanwhile:
	// what matters is that no new one appeared.
	for id := range ids() {
		if _, ok := before[id]; !ok {
			t.Fatalf("a refused token create made token %s", id)
		}
	}

	created := func(r result) token.Token {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("token create: %s", r)
		}
		tk, err := token.Parse(strings.TrimSpace(r.stdout))
		if err != nil {
			t.Fatalf("token create printed %q: %v", r.stdout, err)
		}
		t.Cleanup(func() { tok("delete", tk.ID) })
		return tk
	}
	forever := created(tok("create", "--ttl", "0", "--allow-no-expiry"))
	node := fmt.Sprintf("noexpiry-%d.example.com", nodeSeq.Add(1))
	bound := created(tok("create", "--ttl", "0", "--node-name", node))
	now := ids()
	for _, tk := range []token.Token{forever, bound} {
		if i, ok := now[tk.ID]; !ok || i.Expires != nil {
			t.Errorf("token %s: %+v, want one that never expires", tk.ID, i)
		}
	}
	if r := tok("create", "--ttl", "2h", "--allow-no-expiry"); r.code != 2 || !strings.Contains(r.lastLine(), "--allow-no-expiry is for --ttl 0") {
		t.Fatalf("--allow-no-expiry with --ttl 2h:\n%s", r)
	}

	// A chosen token from a private file, not the command line.
	chosen, err := token.Generate()
	if err != nil {
		t.Fatal(err)
	}
	file := writeToken(t, chosen.Value(), 0o600)
	if got := created(tok("create", "--token-file", file)); got != chosen {
		t.Fatalf("token create --token-file created %s, want the file's %s", got.ID, chosen.ID)
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	r = tok("create", "--token-file", file)
	if r.code != 1 || !strings.Contains(r.lastLine(), "chmod 600 "+file) || bytes.Contains([]byte(r.stdout+r.stderr), []byte(chosen.Secret)) {
		t.Fatalf("token create with a 0644 token file:\n%s", r)
	}
}
