package status

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlsboot/tlsboot/internal/atomicfile"
)

// TestCollectRefusesHugeFiles: status reads the current certificate and
// the kubeconfig with the 1 MiB limit and reports the file as unreadable
// instead of reading it all.
func TestCollectRefusesHugeFiles(t *testing.T) {
	dir := t.TempDir()
	huge := bytes.Repeat([]byte("A"), atomicfile.MaxReadSize+1)
	cur := filepath.Join(dir, "kubelet-client-current.pem")
	if err := os.WriteFile(cur, huge, 0o600); err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(dir, "kubelet.conf")
	if err := os.WriteFile(kc, huge, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Collect(Options{CertDir: dir, Kubeconfig: kc, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if r.Client().State != StateUnreadable || !strings.Contains(r.Client().Error, "larger than 1024 KiB") {
		t.Errorf("client certificate: state %q, error %q; want unreadable, too large", r.Client().State, r.Client().Error)
	}
	if r.Kubeconfig == nil || !strings.Contains(r.Kubeconfig.Error, "larger than 1024 KiB") {
		t.Errorf("kubeconfig: %+v, want an error saying it is too large", r.Kubeconfig)
	}
}
