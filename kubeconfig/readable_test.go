package kubeconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tlsboot/tlsboot/internal/testpki"
)

// TestReadableWarnings (issue 24, finding 7): a kubeconfig holding a
// credential (embedded, or in the key or token file it names) that its
// group or everyone can read gets one line per such file, naming it and
// the chmod; a private one, or one that holds no credential, gets none.
func TestReadableWarnings(t *testing.T) {
	const secret = "0123456789abcdef"
	ca := testpki.NewCA(t)
	leaf := ca.Issue(t, testpki.Spec{})
	for _, tc := range []struct {
		name      string
		mode      os.FileMode // of the kubeconfig
		auth      func(dir string) *clientcmdapi.AuthInfo
		fileMode  os.FileMode // of the key or token file the auth names
		wantFiles []string    // base names the warnings name, in order
		wantHolds string
	}{
		{name: "token 0600", mode: 0o600, auth: func(string) *clientcmdapi.AuthInfo { return &clientcmdapi.AuthInfo{Token: "abcdef." + secret} }},
		{name: "token 0400", mode: 0o400, auth: func(string) *clientcmdapi.AuthInfo { return &clientcmdapi.AuthInfo{Token: "abcdef." + secret} }},
		{name: "token 0644", mode: 0o644, auth: func(string) *clientcmdapi.AuthInfo { return &clientcmdapi.AuthInfo{Token: "abcdef." + secret} }, wantFiles: []string{"k.conf"}, wantHolds: "a token"},
		{name: "token 0640", mode: 0o640, auth: func(string) *clientcmdapi.AuthInfo { return &clientcmdapi.AuthInfo{Token: "abcdef." + secret} }, wantFiles: []string{"k.conf"}, wantHolds: "a token"},
		{name: "token 0604", mode: 0o604, auth: func(string) *clientcmdapi.AuthInfo { return &clientcmdapi.AuthInfo{Token: "abcdef." + secret} }, wantFiles: []string{"k.conf"}, wantHolds: "a token"},
		{name: "token 0620 (writable, not readable)", mode: 0o620, auth: func(string) *clientcmdapi.AuthInfo { return &clientcmdapi.AuthInfo{Token: "abcdef." + secret} }},
		{name: "embedded key 0644", mode: 0o644, auth: func(string) *clientcmdapi.AuthInfo {
			return &clientcmdapi.AuthInfo{ClientCertificateData: leaf.CertPEM, ClientKeyData: leaf.KeyPEM}
		}, wantFiles: []string{"k.conf"}, wantHolds: "a client key"},
		{name: "key file 0644, kubeconfig 0644 holds no secret", mode: 0o644, fileMode: 0o644, auth: func(dir string) *clientcmdapi.AuthInfo {
			return &clientcmdapi.AuthInfo{ClientCertificate: filepath.Join(dir, "secret"), ClientKey: filepath.Join(dir, "secret")}
		}, wantFiles: []string{"secret"}, wantHolds: "a private key"},
		{name: "key file 0600, kubeconfig 0644", mode: 0o644, fileMode: 0o600, auth: func(dir string) *clientcmdapi.AuthInfo {
			return &clientcmdapi.AuthInfo{ClientCertificate: filepath.Join(dir, "secret"), ClientKey: filepath.Join(dir, "secret")}
		}},
		{name: "token file 0644", mode: 0o600, fileMode: 0o644, auth: func(dir string) *clientcmdapi.AuthInfo {
			return &clientcmdapi.AuthInfo{TokenFile: filepath.Join(dir, "secret")}
		}, wantFiles: []string{"secret"}, wantHolds: "a token"},
		{name: "token file 0600, kubeconfig 0644", mode: 0o644, fileMode: 0o600, auth: func(dir string) *clientcmdapi.AuthInfo {
			return &clientcmdapi.AuthInfo{TokenFile: filepath.Join(dir, "secret")}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "k.conf")
			secretFile := filepath.Join(dir, "secret")
			if err := os.WriteFile(secretFile, append(leaf.CertPEM, leaf.KeyPEM...), 0o600); err != nil {
				t.Fatal(err)
			}
			if tc.fileMode != 0 {
				if err := os.Chmod(secretFile, tc.fileMode); err != nil {
					t.Fatal(err)
				}
			}
			cfg := clientcmdapi.Config{
				Clusters:       map[string]*clientcmdapi.Cluster{"c": {Server: "https://127.0.0.1:1", CertificateAuthorityData: ca.PEM()}},
				AuthInfos:      map[string]*clientcmdapi.AuthInfo{"u": tc.auth(dir)},
				Contexts:       map[string]*clientcmdapi.Context{"x": {Cluster: "c", AuthInfo: "u"}},
				CurrentContext: "x",
			}
			if err := clientcmd.WriteToFile(cfg, path); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			rc, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			got := ReadableWarnings(rc, "bootstrap kubeconfig", path)
			if len(got) != len(tc.wantFiles) {
				t.Fatalf("warnings %q, want %d naming %v", got, len(tc.wantFiles), tc.wantFiles)
			}
			for i, w := range got {
				file := filepath.Join(dir, tc.wantFiles[i])
				if !strings.Contains(w, file) || !strings.Contains(w, "chmod 600 "+file) || !strings.Contains(w, "holds "+tc.wantHolds) ||
					!strings.Contains(w, path) || strings.Contains(w, "\n") || strings.Contains(w, secret) {
					t.Errorf("warning %q: want one line naming %s, the kubeconfig, what it holds (%s) and 'chmod 600 %s', and no secret", w, file, tc.wantHolds, file)
				}
			}
		})
	}
	if got := ReadableWarnings(nil, "kubeconfig", "/x"); got != nil {
		t.Errorf("nil config: %q", got)
	}
}
