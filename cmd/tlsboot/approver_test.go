package main

import (
	"io"
	"strings"
	"testing"
)

func TestApproverFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--workers", "0"}, "--workers must be at least 1"},
		{[]string{"--sar-cache-ttl", "2m"}, "--sar-cache-ttl 2m0s: must be between 0 and 1m0s"},
		{[]string{"--pending-timeout-action", "explode"}, `--pending-timeout-action "explode": use leave or deny`},
		{[]string{"--allowed-dns-regex", "("}, "--allowed-dns-regex"},
		{[]string{"--allowed-ip-cidrs", "10.0.0.0"}, "--allowed-ip-cidrs"},
		{[]string{"--signers", "example.com/x"}, `--signers: "example.com/x" is not supported`},
		{[]string{"--leader-elect-renew-deadline", "20s"}, "--leader-elect-retry-period < --leader-elect-renew-deadline < --leader-elect-lease-duration"},
		{[]string{"--kube-api-qps", "0"}, "--kube-api-qps must be positive"},
		{[]string{"extra"}, "unknown command"},
	} {
		err := run(t.Context(), append([]string{"approver"}, tc.args...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
			continue
		}
		if code := exitCode(err); code != 2 && tc.args[0] != "extra" {
			t.Errorf("%v: exit code %d, want 2 (usage)", tc.args, code)
		}
	}
}

func TestApproverNeedsAConfig(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	err := run(t.Context(), []string{"approver", "--metrics-bind-address", "127.0.0.1:0"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "pass --kubeconfig FILE") {
		t.Errorf("error %v, want one telling to pass --kubeconfig", err)
	}
	err = run(t.Context(), []string{"approver", "--kubeconfig", "/nonexistent"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "loading --kubeconfig /nonexistent") {
		t.Errorf("error %v, want one naming the kubeconfig", err)
	}
}
