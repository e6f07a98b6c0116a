package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

func TestRunAndStatusUsageErrors(t *testing.T) {
	base := []string{"run", "--bootstrap-kubeconfig", "b", "--kubeconfig", "k", "--cert-dir", t.TempDir(), "--node-name", "n"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{append(base, "--node-ip", "10.0.0.1"), "add --serving-cert"},
		{append(base, "--serving-cert", "--node-ip", "not-an-ip"), `--node-ip "not-an-ip" is not an IP address`},
		{append(base, "--renew-before", "-1h"), "renew-before -1h0m0s must not be negative"},
		{[]string{"run", "--kubeconfig", "k"}, "missing required flag"},
		{[]string{"status", "--cert-dir", t.TempDir(), "-o", "yaml"}, `want text or json`},
		{[]string{"status"}, "missing required flag --cert-dir"},
	} {
		err := run(context.Background(), tc.args, io.Discard, io.Discard)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v (exit %d), want usage error with %q", tc.args, err, exitCode(err), tc.want)
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
