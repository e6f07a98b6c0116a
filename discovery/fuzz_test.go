package discovery

import (
	"errors"
	"strings"
	"testing"
)

// FuzzClusterInfo feeds steps 2 and 3 what a hostile server could send: a
// signature and a kubeconfig. Nothing panics, every error is a one-line
// *Error without the secret, and only the signature the token's secret
// makes is accepted.
func FuzzClusterInfo(f *testing.F) {
	c := newCA(f, "cluster")
	good := clusterInfo(f, "https://127.0.0.1:6443", c.pem())
	f.Add(good, sign(f, good, realToken))
	f.Add(good, "")
	f.Add("apiVersion: v1\nkind: Config\nclusters: []", "e30..x")
	f.Add(clusterInfo(f, "https://a", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")), "a.b.c")
	f.Fuzz(func(t *testing.T, content, sig string) {
		err := verifySignature("https://s", content, sig, realToken)
		if err == nil && sig != sign(t, content, realToken) {
			t.Fatalf("accepted signature %q", sig)
		}
		check := func(err error) {
			var de *Error
			if err == nil {
				return
			}
			if !errors.As(err, &de) || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), realToken.Secret) {
				t.Fatalf("error %q (%T)", err, err)
			}
		}
		check(err)
		srv, certs, err := parseKubeconfig("https://s", content)
		check(err)
		if err == nil && (len(certs) == 0 || !strings.HasPrefix(srv, "https://")) {
			t.Fatalf("parsed %q, %d certificates", srv, len(certs))
		}
	})
}
