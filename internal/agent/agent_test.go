package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"

	"github.com/tlsboot/tlsboot/bootstrap"
	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/internal/testpki"
	"github.com/tlsboot/tlsboot/rotation"
)

func validOptions(dir string) Options {
	return Options{Bootstrap: bootstrap.Options{
		KubeconfigPath: filepath.Join(dir, "kubelet.conf"), BootstrapKubeconfigPath: filepath.Join(dir, "bootstrap.conf"),
		CertDir: filepath.Join(dir, "pki"), NodeName: "node-a",
	}}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	caFile, notPEM := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(caFile, testpki.NewCA(t).PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Options)
		want   string
	}{
		{"valid", func(*Options) {}, ""},
		{"no node", func(o *Options) { o.Bootstrap.NodeName = "" }, "required"},
		{"negative renew-before", func(o *Options) { o.RenewBefore = -time.Second }, "negative"},
		{"serving without SANs", func(o *Options) { o.Serving = true }, "host name or at least one node IP"},
		{"SANs without serving", func(o *Options) { o.NodeIPs = []net.IP{net.ParseIP("10.0.0.1")} }, "only used with the serving certificate"},
		{"serving CA file without serving", func(o *Options) { o.ServingCAFile = caFile }, "serving CA file is only used with the serving certificate"},
		{"serving CA file", func(o *Options) { o.Serving, o.Hostname, o.ServingCAFile = true, "node-a", caFile }, ""},
		{"serving CA file missing", func(o *Options) {
			o.Serving, o.Hostname, o.ServingCAFile = true, "node-a", filepath.Join(dir, "missing.pem")
		}, "serving CA file: open " + filepath.Join(dir, "missing.pem") + ": no such file or directory"},
		{"serving CA file without PEM", func(o *Options) { o.Serving, o.Hostname, o.ServingCAFile = true, "node-a", notPEM },
			"serving CA file: " + notPEM + " holds no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := validOptions(dir)
			tc.mutate(&o)
			err := o.Validate()
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

// storeCert writes a self-signed node certificate valid from nb to na.
func storeCert(t *testing.T, a *agent, nb, na time.Time) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "system:node:node-a"}, NotBefore: nb, NotAfter: na}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := csr.MarshalPrivateKeyPEM(key)
	if _, err := a.client.Update(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM); err != nil {
		t.Fatal(err)
	}
}

func TestReady(t *testing.T) {
	dir := t.TempDir()
	a := &agent{opts: validOptions(dir)}
	var err error
	if a.client, err = openStore(a.opts.Bootstrap.CertDir, "kubelet-client"); err != nil {
		t.Fatal(err)
	}
	if err := a.ready(); err == nil || !strings.Contains(err.Error(), "no client certificate") {
		t.Errorf("empty store: ready() = %v", err)
	}
	storeCert(t, a, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	if err := a.ready(); err == nil || !strings.Contains(err.Error(), "expired at") {
		t.Errorf("expired: ready() = %v", err)
	}
	storeCert(t, a, time.Now().Add(time.Hour), time.Now().Add(2*time.Hour))
	if err := a.ready(); err == nil || !strings.Contains(err.Error(), "not valid before") {
		t.Errorf("not yet valid: ready() = %v", err)
	}
	storeCert(t, a, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	if err := a.ready(); err != nil {
		t.Errorf("valid: ready() = %v", err)
	}
}

func TestRecoverWithoutCredentials(t *testing.T) {
	a := &agent{opts: validOptions(t.TempDir())}
	_, err := a.recover(context.Background())
	if !errors.Is(err, rotation.ErrNoCredentials) || !strings.Contains(err.Error(), a.opts.Bootstrap.BootstrapKubeconfigPath) {
		t.Errorf("recover() = %v, want ErrNoCredentials naming the file", err)
	}
}

func TestOnRotateHook(t *testing.T) {
	dir := t.TempDir()
	a := &agent{opts: validOptions(dir)}
	var err error
	if a.client, err = openStore(a.opts.Bootstrap.CertDir, "kubelet-client"); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	a.opts.OnRotate = `echo "$TLSBOOT_CERT_NAME $TLSBOOT_ROTATION_REASON $TLSBOOT_CERT_PATH" > ` + out + `; exit 3`
	hooks := a.withOnRotate(context.Background(), rotation.Hooks{})
	hooks.Rotated("serving", rotation.ReasonDue, time.Second)
	a.hooks.Wait()
	got, _ := os.ReadFile(out)
	want := "serving due " + filepath.Join(a.opts.Bootstrap.CertDir, "kubelet-server-current.pem")
	if strings.TrimSpace(string(got)) != want {
		t.Errorf("hook wrote %q, want %q", got, want)
	}
}

func TestRunFailsFastOnBadMetricsAddress(t *testing.T) {
	o := validOptions(t.TempDir())
	o.MetricsAddress = "256.0.0.1:99999"
	if err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "metrics address") {
		t.Errorf("Run() = %v", err)
	}
}

// TestShutdownOrder: stop waits for the managers before the on-rotate
// commands, so that a command a manager starts while stop waits for it is
// waited for too, and no command outlives Run. The command's context is
// not cancelled here: it stands for a rotation that passed withOnRotate's
// ctx check just before the shutdown (TestShutdownCommands covers the
// ones after it). synctest.Wait lets the manager rotate only once stop is
// blocked, which with the waits the other way round is after it waited
// for the (then no) commands.
func TestShutdownOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		a := &agent{opts: validOptions(dir)}
		var err error
		if a.client, err = openStore(a.opts.Bootstrap.CertDir, "kubelet-client"); err != nil {
			t.Fatal(err)
		}
		done := filepath.Join(dir, "done")
		// Long enough to still run when a wrongly ordered stop returns.
		a.opts.OnRotate = "sleep 0.5; touch " + done
		logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true)))
		hookCtx := klog.NewContext(context.Background(), logger)
		hooks := a.withOnRotate(hookCtx, rotation.Hooks{})
		ctx, cancel := context.WithCancel(hookCtx)
		t.Cleanup(cancel)

		rotate := make(chan struct{})
		var managers sync.WaitGroup
		managers.Go(func() {
			<-rotate
			hooks.Rotated("serving", rotation.ReasonForced, time.Second)
		})
		cancel()
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			a.stop(ctx, &managers)
		}()
		synctest.Wait() // stop is blocked (on the manager)
		close(rotate)
		<-stopped

		if _, err := os.Stat(done); err != nil {
			t.Errorf("stop returned before the on-rotate command that the manager started: %v", err)
		}
		if logs := logger.GetSink().(ktesting.Underlier).GetBuffer().String(); !strings.Contains(logs, "Ran the on-rotate command") {
			t.Errorf("want the command to have run before stop returned, logs:\n%s", logs)
		}
	})
}

// TestShutdownCommands: at shutdown a running on-rotate command is
// stopped, and a rotation a manager completes during the shutdown does
// not start one but says so; stop returns after the manager.
func TestShutdownCommands(t *testing.T) {
	dir := t.TempDir()
	a := &agent{opts: validOptions(dir)}
	var err error
	if a.client, err = openStore(a.opts.Bootstrap.CertDir, "kubelet-client"); err != nil {
		t.Fatal(err)
	}
	started, skipped := filepath.Join(dir, "started"), filepath.Join(dir, "skipped")
	a.opts.OnRotate = `if [ "$TLSBOOT_ROTATION_REASON" = due ]; then touch ` + started + `; exec sleep 600; fi; touch ` + skipped
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true)))
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logger))
	t.Cleanup(cancel)
	hooks := a.withOnRotate(ctx, rotation.Hooks{})

	// A rotation before the shutdown: its command runs until stopped.
	hooks.Rotated("client", rotation.ReasonDue, time.Second)
	waitForFile(t, started)
	// A manager that completes a rotation while the agent stops.
	var managers sync.WaitGroup
	var managerDone atomic.Bool
	managers.Go(func() {
		<-ctx.Done()
		hooks.Rotated("serving", rotation.ReasonForced, time.Second)
		managerDone.Store(true)
	})
	cancel()
	a.stop(ctx, &managers)

	if !managerDone.Load() {
		t.Error("stop returned before the manager")
	}
	if _, err := os.Stat(skipped); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the command of the rotation completed during the shutdown ran: %v", err)
	}
	logs := logger.GetSink().(ktesting.Underlier).GetBuffer().String()
	for _, want := range []struct{ msg, cert string }{
		{"Skipped the on-rotate command: the agent is stopping", `certificate="serving"`},
		{"Stopped the on-rotate command: the agent is stopping", `certificate="client"`},
	} {
		var lines []string
		for _, l := range strings.Split(logs, "\n") {
			if strings.Contains(l, want.msg) {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], want.cert) {
			t.Errorf("want one line %q with %s, logs:\n%s", want.msg, want.cert, logs)
		}
	}
}

// waitForFile waits until path exists.
func waitForFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was never created", path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
