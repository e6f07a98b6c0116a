package kubeconfig

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/tlsboot/tlsboot/internal/testpki"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// pair returns a node certificate valid in [notBefore, notAfter] and its
// key, PEM encoded.
func pair(t testing.TB, notBefore, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	is := testpki.NewCA(t).Issue(t, testpki.Spec{NotBefore: notBefore, NotAfter: notAfter})
	return is.CertPEM, is.KeyPEM
}

func write(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const template = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:6443
    insecure-skip-tls-verify: true
users:
- name: u
  user:
%s
contexts:
- name: ctx
  context: {cluster: c, user: u}
current-context: %s
`

func TestLoadUsable(t *testing.T) {
	dir := t.TempDir()
	validCert, validKey := pair(t, now.Add(-time.Hour), now.Add(time.Hour))
	_, otherKey := pair(t, now.Add(-time.Hour), now.Add(time.Hour))
	expiredCert, expiredKey := pair(t, now.Add(-2*time.Hour), now.Add(-time.Hour))
	futureCert, futureKey := pair(t, now.Add(time.Hour), now.Add(2*time.Hour))
	write(t, dir, "valid.pem", string(validCert)+string(validKey))
	write(t, dir, "expired.pem", string(expiredCert)+string(expiredKey))
	write(t, dir, "future.pem", string(futureCert)+string(futureKey))
	write(t, dir, "mismatch.pem", string(validCert)+string(otherKey))

	files := func(f string) string {
		return "    client-certificate: " + f + "\n    client-key: " + f
	}
	tests := []struct {
		name    string
		content string // "" means the file does not exist
		wantErr string // "" means usable
	}{
		{name: "missing", wantErr: "no such file"},
		{name: "garbage", content: "{{{ not yaml", wantErr: "cannot be parsed"},
		{name: "no current context", content: template, wantErr: "has no current-context"},
		{name: "undefined context", content: template, wantErr: `current-context "other" is not defined`},
		{name: "token only", content: template, wantErr: "no client certificate and key"},
		{name: "valid files, relative paths", content: template, wantErr: ""},
		{name: "valid inline data", content: template, wantErr: ""},
		{name: "missing cert file", content: template, wantErr: "no such file"},
		{name: "key of another certificate", content: template, wantErr: "do not form a pair"},
		{name: "expired", content: template, wantErr: "expired at"},
		{name: "not yet valid", content: template, wantErr: "not valid before"},
	}
	users := map[string][2]string{
		"undefined context":           {files("valid.pem"), "other"},
		"token only":                  {"    token: abc.def", "ctx"},
		"no current context":          {files("valid.pem"), `""`},
		"valid files, relative paths": {files("valid.pem"), "ctx"},
		"valid inline data":           {"    client-certificate-data: " + b64(validCert) + "\n    client-key-data: " + b64(validKey), "ctx"},
		"missing cert file":           {files("nope.pem"), "ctx"},
		"key of another certificate":  {files("mismatch.pem"), "ctx"},
		"expired":                     {files("expired.pem"), "ctx"},
		"not yet valid":               {files("future.pem"), "ctx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".kubeconfig")
			if tt.content != "" {
				content := tt.content
				if u, ok := users[tt.name]; ok {
					content = strings.Replace(strings.Replace(content, "%s", u[0], 1), "%s", u[1], 1)
				}
				write(t, dir, filepath.Base(path), content)
			}
			cfg, leaf, err := LoadUsable(path, now)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("LoadUsable = %v, want usable", err)
				}
				if cfg == nil || leaf == nil || !leaf.Equal(parseLeaf(t, validCert)) {
					t.Errorf("LoadUsable returned config %v and another leaf than the client certificate", cfg != nil)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || cfg != nil || leaf != nil {
				t.Fatalf("LoadUsable = %v, want only an error containing %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			if tt.name == "missing" && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("missing file: errors.Is(err, fs.ErrNotExist) = false")
			}
		})
	}
}

func b64(data []byte) string { return base64.StdEncoding.EncodeToString(data) }

func TestWriteNode(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := pair(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	write(t, dir, "kubelet-client-current.pem", string(certPEM)+string(keyPEM))
	write(t, dir, "ca.crt", string(certPEM))
	tests := []struct {
		name    string
		cluster *rest.Config
	}{
		{"ca file", &rest.Config{Host: "https://10.1.1.1:6443", TLSClientConfig: rest.TLSClientConfig{CAFile: "ca.crt"}}},
		{"ca data", &rest.Config{Host: "https://10.1.1.1:6443", TLSClientConfig: rest.TLSClientConfig{CAData: []byte("ca-data")}}},
		{"insecure", &rest.Config{Host: "https://10.1.1.1:6443", TLSClientConfig: rest.TLSClientConfig{Insecure: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(dir)
			path := filepath.Join(dir, "sub", strings.ReplaceAll(tt.name, " ", "_"), "kubelet.conf")
			if err := Write(path, Node(tt.cluster, "kubelet-client-current.pem")); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
			}
			di, _ := os.Stat(filepath.Dir(path))
			if di.Mode().Perm() != 0o700 {
				t.Errorf("directory mode = %v, want 0700", di.Mode().Perm())
			}
			cfg, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			wantPEM := filepath.Join(dir, "kubelet-client-current.pem")
			if cfg.CertFile != wantPEM || cfg.KeyFile != wantPEM {
				t.Errorf("cert/key files = %q/%q, want absolute %q", cfg.CertFile, cfg.KeyFile, wantPEM)
			}
			if cfg.Host != tt.cluster.Host || cfg.Insecure != tt.cluster.Insecure || string(cfg.CAData) != string(tt.cluster.CAData) {
				t.Errorf("cluster = %q insecure=%v caData=%q, want %+v", cfg.Host, cfg.Insecure, cfg.CAData, tt.cluster)
			}
			if tt.cluster.CAFile != "" && cfg.CAFile != filepath.Join(dir, tt.cluster.CAFile) {
				t.Errorf("CA file = %q, want absolute", cfg.CAFile)
			}
			if _, _, err := LoadUsable(path, time.Now()); err != nil {
				t.Errorf("written kubeconfig not usable: %v", err)
			}
		})
	}
}

// TestWriteRemovesKilledTemps: a Write killed before its rename leaves
// .kubelet.conf.tmp-*; the next Write removes it, also when it finds the
// file identical and writes nothing.
func TestWriteRemovesKilledTemps(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := pair(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	write(t, dir, "kubelet-client-current.pem", string(certPEM)+string(keyPEM))
	path := filepath.Join(dir, "kubelet.conf")
	cfg := Node(&rest.Config{Host: "https://10.1.1.1:6443"}, filepath.Join(dir, "kubelet-client-current.pem"))
	for _, round := range []string{"first write", "identical write"} {
		leftover := filepath.Join(dir, ".kubelet.conf.tmp-killed")
		write(t, dir, filepath.Base(leftover), "half a kubeconf")
		if err := Write(path, cfg); err != nil {
			t.Fatalf("%s: %v", round, err)
		}
		if _, err := os.Lstat(leftover); !os.IsNotExist(err) {
			t.Errorf("%s: the killed write's temporary file is still there (%v)", round, err)
		}
		if _, _, err := LoadUsable(path, time.Now()); err != nil {
			t.Errorf("%s: %v", round, err)
		}
	}
}

// FuzzLoadUsable feeds arbitrary kubeconfig content to LoadUsable: it must
// never panic, and must accept the content only if a client certificate
// loads.
func FuzzLoadUsable(f *testing.F) {
	certPEM, keyPEM := pair(f, now.Add(-time.Hour), now.Add(time.Hour))
	f.Add([]byte(strings.Replace(strings.Replace(template, "%s", "    client-certificate-data: "+b64(certPEM)+"\n    client-key-data: "+b64(keyPEM), 1), "%s", "ctx", 1)))
	f.Add([]byte(strings.Replace(strings.Replace(template, "%s", "    token: x", 1), "%s", "ctx", 1)))
	f.Add([]byte("apiVersion: v1\nkind: Config\n"))
	f.Add([]byte("\x00\xff"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "fuzz.kubeconfig")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if cfg, leaf, err := LoadUsable(path, now); err == nil {
			if _, err := Load(path); err != nil {
				t.Fatalf("LoadUsable accepted what Load rejects: %v", err)
			}
			if leaf == nil {
				t.Fatal("LoadUsable accepted without a leaf")
			}
			if again, err := checkClientCertificate(cfg, now); err != nil || !again.Equal(leaf) {
				t.Fatalf("LoadUsable accepted a config without a usable certificate: %v", err)
			}
		}
	})
}

func parseLeaf(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
