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
		{"no token", join("10.0.0.1:6443", "--discovery-token-ca-cert-hash", pin), "--token is required"},
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
