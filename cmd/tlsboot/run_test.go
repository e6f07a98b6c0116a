package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunAndStatusUsageErrors(t *testing.T) {
	base := []string{"run", "--bootstrap-kubeconfig", "b", "--kubeconfig", "k", "--cert-dir", t.TempDir(), "--node-name", "n"}
	serving := []string{"--serving-cert", "--node-ip", "10.0.0.1", "--serving-ca-file"}
	dir := t.TempDir()
	notPEM, missing := filepath.Join(dir, "ca.txt"), filepath.Join(dir, "missing.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{append(base, "--node-ip", "10.0.0.1"), "add --serving-cert"},
		{append(base, "--serving-cert", "--node-ip", "not-an-ip"), `--node-ip "not-an-ip" is not an IP address`},
		{append(base, "--renew-before", "-1h"), "renew-before -1h0m0s must not be negative"},
		{append(base, "--serving-ca-file", notPEM), "--serving-ca-file checks the serving certificate: add --serving-cert"},
		{append(append(base, serving...), notPEM), "--serving-ca-file: " + notPEM + " holds no PEM certificate: pass a PEM file"},
		{append(append(base, serving...), missing), "--serving-ca-file: open " + missing + ": no such file or directory: pass a PEM file"},
		{append(append(base, serving...), dir), "--serving-ca-file: " + dir + " is not a regular file"},
		{append(base, "--client-ca-file", notPEM), "--client-ca-file: " + notPEM + " holds no PEM certificate: pass a PEM file"},
		{append(base, "--client-ca-file", missing), "--client-ca-file: open " + missing + ": no such file or directory: pass a PEM file"},
		{[]string{"bootstrap", "--bootstrap-kubeconfig", "b", "--kubeconfig", "k", "--cert-dir", dir, "--client-ca-file", notPEM}, "--client-ca-file: " + notPEM + " holds no PEM certificate"},
		{[]string{"run", "--kubeconfig", "k"}, "missing required flag"},
		{[]string{"status", "--cert-dir", t.TempDir(), "-o", "yaml"}, `want text or json`},
		{[]string{"status"}, "missing required flag --cert-dir"},
	} {
		err := run(context.Background(), tc.args, io.Discard, io.Discard)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %v (exit %d), want a one-line usage error with %q", tc.args, err, exitCode(err), tc.want)
		}
	}
}

func TestStatusExitCode(t *testing.T) {
	var out strings.Builder
	err := run(context.Background(), []string{"status", "--cert-dir", t.TempDir()}, &out, io.Discard)
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "is missing") {
		t.Errorf("empty directory: %v", err)
	}
	if !strings.Contains(out.String(), "client certificate") {
		t.Errorf("no report printed:\n%s", out.String())
	}
}
