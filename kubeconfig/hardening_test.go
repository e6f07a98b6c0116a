package kubeconfig

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/tlsboot/tlsboot/internal/atomicfile"
	"github.com/tlsboot/tlsboot/internal/testpki"
)

// TestLoadRefusesHugeFile: a kubeconfig past 1 MiB is not parsed (client-go
// would read any size): one line naming the file.
func TestLoadRefusesHugeFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bootstrap.conf")
	// Valid YAML all the way: a comment line repeated past the limit.
	content := append([]byte("apiVersion: v1\nkind: Config\n"), bytes.Repeat([]byte("# padding padding padding\n"), atomicfile.MaxReadSize/25)...)
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	var tooLarge *atomicfile.TooLargeError
	if !errors.As(err, &tooLarge) || !strings.HasPrefix(err.Error(), "kubeconfig "+p) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Load error = %v, want a one-line *atomicfile.TooLargeError starting with the file", err)
	}
	if _, _, err := LoadUsable(p, now); !errors.As(err, &tooLarge) {
		t.Fatalf("LoadUsable error = %v, want *atomicfile.TooLargeError", err)
	}
}

// TestLoadResolvesRelativePaths: reading the file ourselves keeps
// clientcmd's resolution of relative paths against the file's directory.
func TestLoadResolvesRelativePaths(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t)
	write(t, dir, "ca.crt", string(ca.PEM()))
	p := write(t, dir, "k.conf", `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443", certificate-authority: ca.crt}
users:
- name: u
  user: {token: abc}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
`)
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CAFile != filepath.Join(dir, "ca.crt") {
		t.Errorf("CAFile = %q, want it resolved against %s", cfg.CAFile, dir)
	}
	pool, err := CAPool(cfg)
	if err != nil || pool == nil {
		t.Fatalf("CAPool = %v, %v", pool, err)
	}
}

// TestCAPool: CA data wins over the file; none gives nil; a huge CA file is
// refused.
func TestCAPool(t *testing.T) {
	if pool, err := CAPool(&rest.Config{}); pool != nil || err != nil {
		t.Errorf("no CA: %v, %v; want nil, nil", pool, err)
	}
	if pool, err := CAPool(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: testpki.NewCA(t).PEM()}}); pool == nil || err != nil {
		t.Errorf("CA data: %v, %v", pool, err)
	}
	if _, err := CAPool(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: []byte("junk")}}); err == nil {
		t.Error("junk CA data accepted")
	}
	huge := filepath.Join(t.TempDir(), "ca.crt")
	os.WriteFile(huge, bytes.Repeat([]byte("A"), atomicfile.MaxReadSize+1), 0o600)
	var tooLarge *atomicfile.TooLargeError
	if _, err := CAPool(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAFile: huge}}); !errors.As(err, &tooLarge) {
		t.Errorf("huge CA file: %v, want *atomicfile.TooLargeError", err)
	}
}

// TestWriteDoesNotChmodThroughSymlink: when the kubeconfig path is a
// symbolic link (planted) to a file with the same content, Write replaces
// the link with its own private file and leaves the target's mode alone.
// It used to chmod the path, which follows the link.
func TestWriteDoesNotChmodThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	cfg := Node(&rest.Config{Host: "https://127.0.0.1:6443"}, filepath.Join(dir, "pki", "kubelet-client-current.pem"))
	victim := filepath.Join(t.TempDir(), "victim")
	p := filepath.Join(dir, "kubelet.conf")
	if err := Write(p, cfg); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(p)
	os.Remove(p)
	if err := os.WriteFile(victim, data, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(victim, 0o644)
	if err := os.Symlink(victim, p); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, cfg); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(victim); fi.Mode().Perm() != 0o644 {
		t.Errorf("the link's target was chmodded to %v", fi.Mode())
	}
	if fi, _ := os.Lstat(p); !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s is %v, want a regular 0600 file", p, fi.Mode())
	}
}

// TestWriteRefusesWritableDirectory: the kubeconfig's directory, when its
// group or everyone can write to it, is refused like the certificate
// directory, and nothing is written.
func TestWriteRefusesWritableDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc")
	os.Mkdir(dir, 0o700)
	os.Chmod(dir, 0o777)
	p := filepath.Join(dir, "kubelet.conf")
	err := Write(p, Node(&rest.Config{Host: "https://127.0.0.1:6443"}, "/pki/current.pem"))
	var insecure *atomicfile.InsecureDirError
	if !errors.As(err, &insecure) || !strings.Contains(err.Error(), "chmod 700 "+dir) {
		t.Fatalf("Write error = %v, want *atomicfile.InsecureDirError", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("Write left %d entries", len(entries))
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o777 {
		t.Errorf("directory mode changed to %v", fi.Mode())
	}
}

// TestInsecureWarning names the file and the risk on one line.
func TestInsecureWarning(t *testing.T) {
	if w := InsecureWarning(&rest.Config{}, "bootstrap kubeconfig", "/b"); w != "" {
		t.Errorf("verifying config warned: %q", w)
	}
	cfg := &rest.Config{TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	w := InsecureWarning(cfg, "bootstrap kubeconfig", "/b")
	if !strings.Contains(w, "/b") || !strings.Contains(w, "insecure-skip-tls-verify") || strings.Contains(w, "\n") {
		t.Errorf("warning %q", w)
	}
}
