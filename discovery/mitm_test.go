package discovery

import (
	"strings"
	"testing"
	"time"
)

// TestManInTheMiddle: an attacker who knows the token runs a TLS server
// with its own CA and serves a cluster-info correctly signed with the real
// token. The pin of the real cluster CA stops it in every variant; only
// the unsafe mode accepts it, with a warning.
func TestManInTheMiddle(t *testing.T) {
	real := newCA(t, "cluster")
	evil := newCA(t, "attacker")
	realPin := PinOf(real.cert)
	for _, tc := range []struct {
		name    string
		caPEM   func() []byte // the CA bundle the attacker puts in cluster-info
		kind    error
		message string
	}{
		// The attacker names its own CA: the pin does not match, and the
		// message shows the attacker's hash for the operator to compare.
		{"own CA", evil.pem, ErrPinMismatch, string(PinOf(evil.cert))},
		// It copies the real CA: the pin matches, but it cannot serve TLS
		// with a certificate of the real CA.
		{"real CA copied", real.pem, ErrNotVerified, "someone may be in the middle"},
		// It appends its own CA to the real one: kubeadm would then trust
		// both; tlsboot trusts only the pinned one, so the second fetch
		// fails.
		{"own CA appended", func() []byte { return append(real.pem(), evil.pem()...) }, ErrNotVerified, "someone may be in the middle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var content string
			srv := newAPIServer(t, evil, func(n int) map[string]string {
				return map[string]string{"kubeconfig": content, "jws-kubeconfig-" + realToken.ID: sign(t, content, realToken)}
			})
			content = clusterInfo(t, srv.URL, tc.caPEM())
			_, err := Discover(t.Context(), Options{Server: srv.URL, Token: realToken, Pins: []Pin{realPin}, Timeout: time.Second})
			checkError(t, err, tc.kind, tc.message)
		})
	}
	t.Run("unsafe mode accepts and warns", func(t *testing.T) {
		var content string
		srv := newAPIServer(t, evil, func(n int) map[string]string {
			return map[string]string{"kubeconfig": content, "jws-kubeconfig-" + realToken.ID: sign(t, content, realToken)}
		})
		content = clusterInfo(t, srv.URL, evil.pem())
		res, err := Discover(t.Context(), Options{Server: srv.URL, Token: realToken, UnsafeSkipCAVerification: true, Timeout: time.Second})
		if err != nil {
			t.Fatalf("Discover: %v", err)
		}
		if string(res.CAData) != string(evil.pem()) {
			t.Fatal("unsafe mode did not take the presented CA")
		}
		if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "CA verification skipped") || !strings.Contains(res.Warnings[0], string(PinOf(evil.cert))) {
			t.Fatalf("warnings %q", res.Warnings)
		}
	})
}
