package main

import (
	"io"
	"strings"
	"testing"

	"github.com/tlsboot/tlsboot/approval"
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
		{[]string{"--live-node-action", "explode"}, `--live-node-action "explode": use deny or leave`},
		{[]string{"--node-alive-grace", "0s"}, "--node-alive-grace 0s: must be positive"},
		{[]string{"--cluster-domain", "Cluster_Local"}, `--cluster-domain "Cluster_Local"`},
		{[]string{"--service-cidrs", "10.96.0.0"}, "--service-cidrs"},
		{[]string{"--allowed-dns-regex", "a)|(b"}, "--allowed-dns-regex"},
		{[]string{"--max-expiration", "5m"}, "--max-expiration: 5m0s is shorter than the 10m0s"},
		{[]string{"--pending-timeout", "-1s"}, "--pending-timeout: must not be negative"},
		{[]string{"--reserved-cidrs", "10.0.0.100"}, "--reserved-cidrs"},
		{[]string{"--reserved-dns", "10.0.0.100"}, `--reserved-dns: "10.0.0.100" is an IP address, not a DNS name`},
		{[]string{"--reserved-dns", "*.example.internal"}, `--reserved-dns: "*.example.internal" is not a DNS name`},
		{[]string{"--reserve-service-ips=maybe"}, "--reserve-service-ips"},
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
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %q is more than one line", tc.args, err)
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

// The policy's messages say what is wrong; the command's hints name its
// flags and the way out.
func TestApproverHints(t *testing.T) {
	for reason, want := range map[string][]string{
		approval.ReasonNoServingScope:        {"--allowed-ip-cidrs", "--allowed-dns-regex"},
		approval.ReasonNodeAlive:             {"delete its Node object"},
		approval.ReasonSANForbiddenByPolicy:  {"--allowed-dns-regex", "--allowed-ip-cidrs"},
		approval.ReasonPendingTimeout:        {"--pending-timeout", "--pending-timeout-action"},
		approval.ReasonExpirationTooLong:     {"--max-expiration"},
		approval.ReasonSANReserved:           {"--service-cidrs", "--cluster-domain"},
		approval.ReasonTokenBoundToOtherNode: {"tlsboot token create --node-name"},
		approval.ReasonInvalidTokenBinding:   {"tlsboot token create --node-name"},
		approval.ReasonTokenAlreadyUsed:      {"tlsboot token create --node-name", "tlsboot token delete"},
		approval.ReasonAutoApproved:          nil,
	} {
		got := approverHint(reason)
		if want == nil && got != "" {
			t.Errorf("hint for %s = %q, want none", reason, got)
		}
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("hint for %s = %q, want it to contain %q", reason, got, w)
			}
		}
	}
}
