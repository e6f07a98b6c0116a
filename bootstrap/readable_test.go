package bootstrap

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"

	"github.com/tlsboot/tlsboot/internal/testpki"
)

// TestWarnReadable (issue 24, finding 7): a bootstrap kubeconfig holding a
// token that its group or everyone can read gets one warning line at level
// 0 from WarnInsecure, naming the file and 'chmod 600', never the token; a
// private one gets none. WarnReadable does the same for another kubeconfig.
func TestWarnReadable(t *testing.T) {
	const secret = "0123456789abcdef"
	for _, tc := range []struct {
		mode  os.FileMode
		warns bool
	}{{0o600, false}, {0o400, false}, {0o644, true}, {0o640, true}, {0o604, true}} {
		path := filepath.Join(t.TempDir(), "bootstrap.conf")
		cfg := clientcmdapi.Config{
			Clusters:       map[string]*clientcmdapi.Cluster{"c": {Server: "https://127.0.0.1:1", CertificateAuthorityData: testpki.NewCA(t).PEM()}},
			AuthInfos:      map[string]*clientcmdapi.AuthInfo{"u": {Token: "abcdef." + secret}},
			Contexts:       map[string]*clientcmdapi.Context{"x": {Cluster: "c", AuthInfo: "u"}},
			CurrentContext: "x",
		}
		if err := clientcmd.WriteToFile(cfg, path); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		for _, warn := range []struct {
			name string
			f    func(context.Context)
			what string
		}{
			{"WarnInsecure", func(ctx context.Context) { WarnInsecure(ctx, path) }, "bootstrap kubeconfig"},
			{"WarnReadable", func(ctx context.Context) { WarnReadable(ctx, "kubeconfig", path) }, "kubeconfig"},
		} {
			var buf bytes.Buffer
			logger := textlogger.NewLogger(textlogger.NewConfig(textlogger.Output(&buf), textlogger.Verbosity(0)))
			warn.f(klog.NewContext(context.Background(), logger))
			out := buf.String()
			switch {
			case tc.warns && (strings.Count(out, "\n") != 1 || !strings.Contains(out, "WARNING: "+warn.what+" "+path+" is readable by its group or everyone") || !strings.Contains(out, "chmod 600 "+path)):
				t.Errorf("%s, mode %04o: output %q, want one warning line naming %s and 'chmod 600'", warn.name, tc.mode, out, path)
			case !tc.warns && out != "":
				t.Errorf("%s, mode %04o: output %q, want none", warn.name, tc.mode, out)
			}
			if strings.Contains(out, secret) {
				t.Errorf("%s: the token appears in the warning", warn.name)
			}
		}
	}
}
