package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/cluster-bootstrap/token/jws"

	"github.com/tlsboot/tlsboot/discovery"
	"github.com/tlsboot/tlsboot/internal/testpki"
)

const testToken = "abcdef.0123456789abcdef"

func TestJoinBadInput(t *testing.T) {
	dir := t.TempDir()
	pin := "sha256:" + strings.Repeat("0", 64)
	paths := []string{"--bootstrap-kubeconfig", filepath.Join(dir, "b.conf"), "--kubeconfig", filepath.Join(dir, "k.conf"), "--cert-dir", filepath.Join(dir, "pki"), "--node-name", "n1"}
	join := func(args ...string) []string { return append(append([]string{"join"}, args...), paths...) }
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"malformed token", join("10.0.0.1:6443", "--token", "abcdef.0123456789ABCDEF", "--discovery-token-ca-cert-hash", pin), "--token: malformed bootstrap token"},
		{"short secret", join("10.0.0.1:6443", "--token", "abcdef.0123", "--discovery-token-ca-cert-hash", pin), "malformed bootstrap token"},
		{"no token", join("10.0.0.1:6443", "--discovery-token-ca-cert-hash", pin), "a bootstrap token is required: pass --token-file FILE (mode 0600), set TLSBOOT_TOKEN, or pass --token ID.SECRET"},
		{"token and token file", join("10.0.0.1:6443", "--token", testToken, "--token-file", "/nonexistent/token", "--discovery-token-ca-cert-hash", pin), "the bootstrap token is given 2 times (--token and --token-file)"},
		{"missing token file", join("10.0.0.1:6443", "--token-file", filepath.Join(dir, "token"), "--discovery-token-ca-cert-hash", pin), "--token-file " + filepath.Join(dir, "token") + " does not exist"},
		{"malformed pin", join("10.0.0.1:6443", "--token", testToken, "--discovery-token-ca-cert-hash", "sha256:1234"), "malformed CA pin"},
		{"md5 pin", join("10.0.0.1:6443", "--token", testToken, "--discovery-token-ca-cert-hash", "md5:"+strings.Repeat("0", 32)), "malformed CA pin"},
		{"no pin", join("10.0.0.1:6443", "--token", testToken), "a CA pin is required: without one, anyone who knows the token"},
		{"pin and unsafe", join("10.0.0.1:6443", "--token", testToken, "--discovery-token-ca-cert-hash", pin, "--discovery-token-unsafe-skip-ca-verification"), "contradict"},
		{"token as argument", join(testToken, "--discovery-token-ca-cert-hash", pin), "looks like a bootstrap token"},
		{"no server", join("--token", testToken, "--discovery-token-ca-cert-hash", pin), "takes one argument"},
		{"http server", join("http://10.0.0.1:6443", "--token", testToken, "--discovery-token-ca-cert-hash", pin), "is not HOST:PORT"},
		{"run flag without --run", join("10.0.0.1:6443", "--token", testToken, "--discovery-token-ca-cert-hash", pin, "--serving-cert"), "add --run"},
		{"zero timeout", join("10.0.0.1:6443", "--token", testToken, "--discovery-token-ca-cert-hash", pin, "--discovery-timeout", "0s"), "must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), tc.args, &stdout, &stderr)
			if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("join = %v (exit %d), want exit 2 and %q", err, exitCode(err), tc.want)
			}
			checkQuiet(t, err, &stdout, &stderr)
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("join wrote %v", entries)
			}
		})
	}
}

// checkQuiet: one line, no secret anywhere.
func checkQuiet(t *testing.T, err error, outs ...*bytes.Buffer) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	texts := []string{}
	if err != nil {
		texts = append(texts, err.Error())
	}
	for _, o := range outs {
		texts = append(texts, o.String())
	}
	for _, s := range texts {
		for _, secret := range []string{"0123456789abcdef", "0123456789ABCDEF"} {
			if strings.Contains(s, secret) {
				t.Errorf("output contains the token's secret: %q", s)
			}
		}
	}
}

// fakeCluster serves a cluster-info signed with testToken over TLS, with
// a certificate of its own CA, as a man in the middle who knows the token
// would.
// Any other request calls other, then gets 401.
func fakeCluster(t *testing.T, other func()) (srv *httptest.Server, pin discovery.Pin) {
	t.Helper()
	ca := testpki.NewCA(t)
	leaf := ca.Issue(t, testpki.Spec{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	var content string
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/namespaces/kube-public/configmaps/cluster-info" {
			other()
			http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401}`, http.StatusUnauthorized)
			return
		}
		sig, _ := jws.ComputeDetachedSignature(content, "abcdef", "0123456789abcdef")
		json.NewEncoder(w).Encode(corev1.ConfigMap{Data: map[string]string{"kubeconfig": content, "jws-kubeconfig-abcdef": sig}})
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: leaf.Key}}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	b, err := clusterInfoKubeconfig(srv.URL, ca.PEM())
	if err != nil {
		t.Fatal(err)
	}
	content = string(b)
	return srv, discovery.PinOf(ca.Cert)
}

// TestJoinManInTheMiddle: join with the real cluster's pin refuses a
// server that presents another CA in a correctly signed cluster-info,
// prints that CA's hash and writes nothing; with the unsafe flag it takes
// it, warns, and writes the bootstrap kubeconfig (the test stops join when
// it starts bootstrapping against the fake).
func TestJoinManInTheMiddle(t *testing.T) {
	// The first request after discovery is bootstrapping's: the test
	// has seen what it needs and stops join there.
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	srv, evilPin := fakeCluster(t, stop)
	realPin := "sha256:" + strings.Repeat("ab", 32)
	dir := t.TempDir()
	boot := filepath.Join(dir, "bootstrap.conf")
	args := func(extra ...string) []string {
		return append([]string{"join", srv.URL, "--token", testToken, "--bootstrap-kubeconfig", boot,
			"--kubeconfig", filepath.Join(dir, "kubelet.conf"), "--cert-dir", filepath.Join(dir, "pki"), "--node-name", "n1",
			"--server-wait", "1ms", "--wait-timeout", "1m"}, extra...)
	}
	var stdout, stderr bytes.Buffer
	err := run(ctx, args("--discovery-token-ca-cert-hash", realPin), &stdout, &stderr)
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), string(evilPin)) || !strings.Contains(err.Error(), "matches no --discovery-token-ca-cert-hash") {
		t.Fatalf("join with the real pin: %v (exit %d)", err, exitCode(err))
	}
	checkQuiet(t, err, &stdout, &stderr)
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("join wrote %v", entries)
	}

	stdout.Reset()
	stderr.Reset()
	err = run(ctx, args("--discovery-token-unsafe-skip-ca-verification"), &stdout, &stderr)
	if !strings.Contains(stderr.String(), "WARNING: CA verification skipped") || !strings.Contains(stderr.String(), string(evilPin)) {
		t.Fatalf("no warning in stderr %q", stderr.String())
	}
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("join against the fake server after discovery: %v", err)
	}
	info, statErr := os.Stat(boot)
	if statErr != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("bootstrap kubeconfig: %v, %v", info, statErr)
	}
	data, _ := os.ReadFile(boot)
	if !strings.Contains(string(data), testToken) || !strings.Contains(string(data), srv.URL) {
		t.Fatalf("bootstrap kubeconfig lacks the token or the server:\n%s", data)
	}
	checkQuiet(t, nil, &stdout, &stderr)
}

// joinRoot is the root command with join's exec replaced by exec, and
// stdin.
func joinRoot(exec execFunc, stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := newRootCommand(stdout, stderr)
	for _, c := range root.Commands() {
		if c.Name() == "join" {
			root.RemoveCommand(c)
		}
	}
	root.AddCommand(newJoinCommandExec(exec))
	root.SetIn(stdin)
	return root
}

// writeTokenFile writes the token file with mode.
func writeTokenFile(t *testing.T, dir string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, "token")
	if err := os.WriteFile(path, []byte(testToken+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // whatever the umask
		t.Fatal(err)
	}
	return path
}

// TestJoinTokenSources (issue 24, finding 3): the token comes from
// --token-file (private file or stdin) or TLSBOOT_TOKEN as well as from
// --token, and reaches the bootstrap kubeconfig; a token file others can
// read is refused with one line naming it and the chmod, before anything
// is fetched or written; TLSBOOT_TOKEN is removed from the environment
// once read, so that hooks do not inherit it.
func TestJoinTokenSources(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mode     os.FileMode // of the token file, if args names it
		args     []string    // "FILE" is replaced by the token file
		env      bool        // TLSBOOT_TOKEN set
		stdin    string
		wantCode int    // 0: joined (until bootstrapping, which the test stops)
		want     string // in the error
	}{
		{name: "token file", mode: 0o600, args: []string{"--token-file", "FILE"}},
		{name: "token file 0400", mode: 0o400, args: []string{"--token-file", "FILE"}},
		{name: "stdin", args: []string{"--token-file", "-"}, stdin: testToken + "\n"},
		{name: "stdin without newline", args: []string{"--token-file", "-"}, stdin: testToken},
		{name: "environment", env: true},
		{name: "token file 0644 refused", mode: 0o644, args: []string{"--token-file", "FILE"}, wantCode: 1, want: "has mode 0644: other local users can read or change the bootstrap token; run 'chmod 600 "},
		{name: "token file 0640 refused", mode: 0o640, args: []string{"--token-file", "FILE"}, wantCode: 1, want: "has mode 0640"},
		{name: "environment and --token", env: true, args: []string{"--token", testToken}, wantCode: 2, want: "the bootstrap token is given 2 times (--token and TLSBOOT_TOKEN)"},
		{name: "environment and --token-file", env: true, args: []string{"--token-file", "-"}, stdin: testToken, wantCode: 2, want: "(--token-file and TLSBOOT_TOKEN)"},
		{name: "empty stdin", args: []string{"--token-file", "-"}, wantCode: 2, want: "stdin is empty"},
		{name: "huge stdin", args: []string{"--token-file", "-"}, stdin: strings.Repeat("a", 10000), wantCode: 2, want: "far longer than a bootstrap token"},
		{name: "malformed token in file", mode: 0o600, args: []string{"--token-file", "FILE"}, wantCode: 2, want: "--token-file "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, stop := context.WithCancel(t.Context())
			defer stop()
			srv, pin := fakeCluster(t, stop)
			dir := t.TempDir()
			tokDir := t.TempDir()
			boot := filepath.Join(dir, "bootstrap.conf")
			args := []string{"join", srv.URL, "--discovery-token-ca-cert-hash", string(pin), "--bootstrap-kubeconfig", boot,
				"--kubeconfig", filepath.Join(dir, "kubelet.conf"), "--cert-dir", filepath.Join(dir, "pki"), "--node-name", "n1",
				"--server-wait", "1ms", "--wait-timeout", "1m"}
			for _, a := range tc.args {
				if a == "FILE" {
					a = writeTokenFile(t, tokDir, tc.mode)
					if tc.name == "malformed token in file" {
						os.WriteFile(a, []byte("abcdef.0123456789ABCDEF\n"), tc.mode)
					}
				}
				args = append(args, a)
			}
			if tc.env {
				t.Setenv(tokenEnv, testToken)
			}
			var stdout, stderr bytes.Buffer
			root := joinRoot(func(string, []string, []string) error { t.Error("exec without --run"); return nil }, strings.NewReader(tc.stdin), &stdout, &stderr)
			root.SetArgs(args)
			err := root.ExecuteContext(ctx)
			checkQuiet(t, err, &stdout, &stderr)
			if _, set := os.LookupEnv(tokenEnv); set {
				t.Errorf("%s is still in the environment", tokenEnv)
			}
			if tc.wantCode != 0 {
				if err == nil || exitCode(err) != tc.wantCode || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("join = %v (exit %d), want exit %d and %q", err, exitCode(err), tc.wantCode, tc.want)
				}
				if entries, _ := os.ReadDir(dir); len(entries) != 0 {
					t.Fatalf("join wrote %v", entries)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "interrupted") {
				t.Fatalf("join against the fake server after discovery: %v\n%s", err, &stderr)
			}
			if data, _ := os.ReadFile(boot); !strings.Contains(string(data), testToken) {
				t.Fatalf("bootstrap kubeconfig lacks the token:\n%s", data)
			}
			if strings.Contains(stderr.String(), "--token on the command line") {
				t.Errorf("warned about the command line: %s", &stderr)
			}
		})
	}
}

// TestJoinRunReexec (issue 24, finding 3): join --run with --token warns
// once that the command line shows it, and once the bootstrap kubeconfig
// is written replaces itself with /proc/self/exe 'run' and the run flags it
// was given, without the token; with --token-file it needs no exec (the
// command line holds no token) and runs the agent in the process.
func TestJoinRunReexec(t *testing.T) {
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	srv, pin := fakeCluster(t, stop)
	dir := t.TempDir()
	boot := filepath.Join(dir, "bootstrap.conf")
	common := []string{"join", srv.URL, "--discovery-token-ca-cert-hash", string(pin), "--bootstrap-kubeconfig", boot,
		"--kubeconfig", filepath.Join(dir, "kubelet.conf"), "--cert-dir", filepath.Join(dir, "pki"), "--node-name", "n1",
		"--server-wait", "1ms", "--wait-timeout", "1m", "--discovery-timeout", "10s", "--run",
		"--node-ip", "10.0.0.5", "--serving-cert", "--node-ip", "fd00::5", "--hostname-override", "n1.example.com",
		"--metrics-bind-address", "127.0.0.1:0", "--on-rotate", "systemctl reload x; echo a b", "-v", "2", "--renew-before", "1h"}
	var calls [][]string
	exec := func(path string, argv, env []string) error {
		calls = append(calls, append([]string{path}, argv...))
		for _, e := range env {
			if strings.Contains(e, "0123456789abcdef") {
				t.Errorf("the environment handed to exec holds the token: %q", e)
			}
		}
		return nil
	}
	var stdout, stderr bytes.Buffer
	root := joinRoot(exec, nil, &stdout, &stderr)
	root.SetArgs(append(common, "--token", testToken))
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("join --run: %v\n%s", err, &stderr)
	}
	checkQuiet(t, nil, &stdout, &stderr)
	if n := strings.Count(stderr.String(), "WARNING: --token on the command line is visible to every local user"); n != 1 || !strings.Contains(stderr.String(), "--token-file or TLSBOOT_TOKEN") {
		t.Errorf("%d warnings about the command line, want 1:\n%s", n, &stderr)
	}
	if len(calls) != 1 {
		t.Fatalf("exec called %d times, want once", len(calls))
	}
	want := []string{"/proc/self/exe", os.Args[0], "run", "--bootstrap-kubeconfig=" + boot, "--kubeconfig=" + filepath.Join(dir, "kubelet.conf"), "--cert-dir=" + filepath.Join(dir, "pki"),
		"--hostname-override=n1.example.com", "--metrics-bind-address=127.0.0.1:0", "--node-ip=10.0.0.5", "--node-ip=fd00::5", "--node-name=n1",
		"--on-rotate=systemctl reload x; echo a b", "--renew-before=1h0m0s", "--server-wait=1ms", "--serving-cert=true", "--v=2", "--wait-timeout=1m0s"}
	if strings.Join(calls[0], "\n") != strings.Join(want, "\n") {
		t.Errorf("exec\n%q\nwant\n%q", calls[0], want)
	}
	if data, _ := os.ReadFile(boot); !strings.Contains(string(data), testToken) {
		t.Fatalf("exec before the bootstrap kubeconfig was written:\n%s", data)
	}

	// The exec'd command line is one 'tlsboot run' accepts, with the
	// same values.
	var runOut bytes.Buffer
	check := newRootCommand(&runOut, &runOut)
	runCmd, _, err := check.Find(calls[0][2:])
	if err != nil || runCmd.Name() != "run" {
		t.Fatalf("finding run: %v", err)
	}
	if err := runCmd.ParseFlags(calls[0][3:]); err != nil {
		t.Fatalf("run does not take the flags: %v", err)
	}
	for _, name := range []string{"node-ip", "on-rotate", "renew-before", "serving-cert", "hostname-override", "metrics-bind-address", "node-name", "wait-timeout", "server-wait"} {
		joinCmd, _, _ := root.Find([]string{"join"})
		j := joinCmd.Flags().Lookup(name)
		r := runCmd.Flags().Lookup(name)
		if r == nil || j == nil || r.Value.String() != j.Value.String() {
			t.Errorf("--%s: run has %v, join had %v", name, r, j)
		}
	}

	// With --token-file there is nothing to hide: no warning, no exec;
	// the agent runs here (and stops when the fake cluster is asked for
	// anything beyond discovery).
	calls = nil
	stderr.Reset()
	ctx2, stop2 := context.WithCancel(t.Context())
	defer stop2()
	srv2, pin2 := fakeCluster(t, stop2)
	args := append([]string{}, common...)
	args[1], args[3] = srv2.URL, string(pin2)
	root = joinRoot(exec, nil, &stdout, &stderr)
	root.SetArgs(append(args, "--token-file", writeTokenFile(t, t.TempDir(), 0o600)))
	err = root.ExecuteContext(ctx2)
	if len(calls) != 0 || strings.Contains(stderr.String(), "--token on the command line") {
		t.Fatalf("join --run --token-file: exec %q, stderr:\n%s", calls, &stderr)
	}
	if err != nil {
		t.Fatalf("join --run --token-file stopped: %v, want the agent's nil", err)
	}
}

// TestJoinOnlyFlags: every flag of join that is not join's own is one of
// 'tlsboot run' (or global), so that the re-executed run gets it.
func TestJoinOnlyFlags(t *testing.T) {
	root := newRootCommand(io.Discard, io.Discard)
	var join, runCmd *cobra.Command
	for _, c := range root.Commands() {
		switch c.Name() {
		case "join":
			join = c
		case "run":
			runCmd = c
		}
	}
	join.Flags().VisitAll(func(f *pflag.Flag) {
		if joinOnlyFlags[f.Name] {
			if runCmd.Flags().Lookup(f.Name) != nil && f.Name != "help" {
				t.Errorf("--%s is listed as join's own, but run has it", f.Name)
			}
			return
		}
		if runCmd.Flags().Lookup(f.Name) == nil && root.PersistentFlags().Lookup(f.Name) == nil {
			t.Errorf("--%s of join is neither join's own nor a flag of run", f.Name)
		}
	})
}
