package testcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// KubeletOptions configures a kubelet. The zero value runs a kubelet that
// bootstraps with the cluster's bootstrap token, keeps its own client
// certificate rotation off and requests no serving certificate.
type KubeletOptions struct {
	// Kubeconfig is the kubelet's --kubeconfig. Default: kubelet.conf in
	// the kubelet's directory.
	Kubeconfig string
	// BootstrapKubeconfig is the kubelet's --bootstrap-kubeconfig: used
	// when Kubeconfig is missing or its certificate unusable. Default: the
	// cluster's BootstrapKubeconfig, unless NoBootstrap.
	BootstrapKubeconfig string
	// NoBootstrap runs the kubelet without --bootstrap-kubeconfig: it must
	// find a usable Kubeconfig.
	NoBootstrap bool
	// CertDir is the kubelet's --cert-dir. Default: pki in the kubelet's
	// directory.
	CertDir string
	// ServerTLSBootstrap requests the serving certificate with a
	// kubernetes.io/kubelet-serving CSR (serverTLSBootstrap); off, the
	// kubelet serves a self-signed certificate.
	ServerTLSBootstrap bool
	// RotateCertificates turns on the kubelet's own client certificate
	// rotation (rotateCertificates).
	RotateCertificates bool
}

// Kubelet is a real kubelet, built by `make controlplane`, registered as a
// Node of a Cluster. It runs as root in its own mount namespace with
// private propagation, where:
//   - its mounts (it bind-mounts its root dir onto itself) end with it;
//   - /var/lib and /var/log are empty tmpfs, so what it always creates
//     there (device-plugins/kubelet.sock, /var/log/containers) neither
//     outlives it nor meets another kubelet's;
//   - the six global kernel settings it checks at start-up
//     (vm.overcommit_memory, vm.panic_on_oom, kernel.panic,
//     kernel.panic_on_oops, kernel.keys.root_maxkeys and
//     kernel.keys.root_maxbytes) are regular files bind-mounted over their
//     /proc/sys entries, holding the values it expects. It runs with
//     protectKernelDefaults, so it writes none of them, and should a
//     later kubelet check one more whose value differs, it refuses to
//     start instead of writing it: the host's values never change.
//
// Nothing else is isolated: it shares the host's network, PIDs, cgroups
// and the rest of /proc/sys. Its mount(8) calls keep their utab in its
// directory, not in the host's /run/mount. A fake-cri process serves it
// an in-memory container runtime; no container runs.
//
// Its methods are not safe for concurrent use.
type Kubelet struct {
	name   string
	dir    string
	opts   KubeletOptions
	nodeIP string
	port   int

	cri, kubelet *process
	c            *Cluster
}

// kubeletSeq numbers the kubelets of this process: directory names stay
// short enough for unix socket paths whatever the node's name.
var kubeletSeq atomic.Int64

// StartKubelet starts fake-cri and a kubelet named name (its
// --hostname-override, hence its Node's name) and returns once both
// processes run; use WaitRegistered to wait for the Node. Everything is
// stopped and removed in t.Cleanup, with the logs printed if t failed.
// It skips t when not run as root, which the kubelet needs.
func (c *Cluster) StartKubelet(t testing.TB, name string, opts KubeletOptions) *Kubelet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the kubelet runs as root in its own mount namespace (unshare -m)")
	}
	k, err := c.newKubelet(name, opts)
	if err != nil {
		t.Fatalf("kubelet %s: %v", name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kubelet %s logs:%s", name, k.Logs(60))
		}
		if err := k.remove(); err != nil {
			t.Errorf("kubelet %s: %v", name, err)
		}
	})
	if err := k.Start(); err != nil {
		t.Fatalf("kubelet %s: %v", name, err)
	}
	return k
}

func (c *Cluster) newKubelet(name string, opts KubeletOptions) (*Kubelet, error) {
	for _, bin := range []string{"kubelet", "fake-cri"} {
		if _, err := os.Stat(filepath.Join(c.opts.BinDir, bin)); err != nil {
			return nil, fmt.Errorf("binary %s not found in %s: run 'make controlplane' first", bin, c.opts.BinDir)
		}
	}
	nodeIP, err := NodeIP()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(c.dir, "kubelet-"+strconv.FormatInt(kubeletSeq.Add(1), 10))
	if err := os.MkdirAll(filepath.Join(dir, "root"), 0o700); err != nil {
		return nil, err
	}
	for _, hidden := range []string{"/var/lib", "/var/log"} {
		if strings.HasPrefix(dir+"/", hidden+"/") {
			return nil, fmt.Errorf("directory %s is under %s, which the kubelet's mount namespace hides: use a cluster directory elsewhere (TMPDIR)", dir, hidden)
		}
	}
	if opts.Kubeconfig == "" {
		opts.Kubeconfig = filepath.Join(dir, "kubelet.conf")
	}
	if opts.CertDir == "" {
		opts.CertDir = filepath.Join(dir, "pki")
	}
	if opts.BootstrapKubeconfig == "" && !opts.NoBootstrap {
		opts.BootstrapKubeconfig = c.BootstrapKubeconfig
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	k := &Kubelet{name: name, dir: dir, opts: opts, nodeIP: nodeIP, port: ports[0], c: c}
	if err := k.writeConfig(ports[1]); err != nil {
		return nil, err
	}
	if err := k.writeKernelTunables(); err != nil {
		return nil, err
	}
	k.cri = &process{
		name:    "fake-cri",
		path:    filepath.Join(c.opts.BinDir, "fake-cri"),
		args:    []string{"--socket", k.criSocket(), "--image-fs", filepath.Join(dir, "root")},
		logFile: filepath.Join(dir, "fake-cri.log"),
	}
	k.kubelet = &process{name: "kubelet", path: "unshare", args: k.args(), logFile: filepath.Join(dir, "kubelet.log")}
	return k, nil
}

func (k *Kubelet) criSocket() string { return filepath.Join(k.dir, "cri.sock") }

// kernelTunables are the global (not namespaced) kernel settings the
// kubelet checks at start-up, with the values it wants; it would write
// them to the host's /proc/sys without protectKernelDefaults. Keys are
// paths under /proc/sys.
var kernelTunables = []struct{ path, value string }{
	{"vm/overcommit_memory", "1"},
	{"vm/panic_on_oom", "0"},
	{"kernel/panic", "10"},
	{"kernel/panic_on_oops", "1"},
	{"kernel/keys/root_maxkeys", "1000000"},
	{"kernel/keys/root_maxbytes", "25000000"},
}

// tunableFile is the file that stands in for /proc/sys/<path>.
func (k *Kubelet) tunableFile(path string) string {
	return filepath.Join(k.dir, "sysctl", strings.ReplaceAll(path, "/", "."))
}

// writeKernelTunables writes one file per kernel tunable, holding the
// kubelet's wanted value, for args to bind-mount over /proc/sys.
func (k *Kubelet) writeKernelTunables() error {
	if err := os.MkdirAll(filepath.Join(k.dir, "sysctl"), 0o700); err != nil {
		return err
	}
	for _, kt := range kernelTunables {
		if err := os.WriteFile(k.tunableFile(kt.path), []byte(kt.value+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// args runs the kubelet in a new mount namespace, private so that no mount
// propagates back, over empty tmpfs /var/lib and /var/log (the kubelet
// always creates /var/lib/kubelet/device-plugins/kubelet.sock and
// /var/log/containers whatever its flags say) and over the files of
// writeKernelTunables bind-mounted on /proc/sys. LIBMOUNT_UTAB moves
// libmount's utab into the kubelet's directory, for the script's mount(8)
// and for the kubelet's own mount(8) and umount(8): otherwise they create
// /run/mount on the host (mount -n would cover only the script's).
func (k *Kubelet) args() []string {
	kubeletArgs := []string{
		"--config=" + filepath.Join(k.dir, "config.yaml"),
		"--kubeconfig=" + k.opts.Kubeconfig,
		"--cert-dir=" + k.opts.CertDir,
		"--root-dir=" + filepath.Join(k.dir, "root"),
		"--hostname-override=" + k.name,
		"--node-ip=" + k.nodeIP,
		"--v=2",
	}
	if k.opts.BootstrapKubeconfig != "" {
		kubeletArgs = append(kubeletArgs, "--bootstrap-kubeconfig="+k.opts.BootstrapKubeconfig)
	}
	script := "set -e\nexport LIBMOUNT_UTAB=" + shellQuote(filepath.Join(k.dir, "utab")) + `
mount -t tmpfs -o mode=0755,size=16m tlsboot-kubelet /var/lib
mount -t tmpfs -o mode=0755,size=16m tlsboot-kubelet /var/log
`
	for _, kt := range kernelTunables {
		script += "mount --bind " + shellQuote(k.tunableFile(kt.path)) + " /proc/sys/" + kt.path + "\n"
	}
	script += `exec "$0" "$@"`
	return append([]string{"-m", "--propagation", "private", "--", "/bin/sh", "-c", script,
		filepath.Join(k.c.opts.BinDir, "kubelet")}, kubeletArgs...)
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// writeConfig writes the KubeletConfiguration that runs without a real
// container runtime on a cgroup v1 or v2 machine. protectKernelDefaults
// makes the kubelet check the kernel tunables instead of writing them.
func (k *Kubelet) writeConfig(healthzPort int) error {
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
containerRuntimeEndpoint: unix://%s
podLogsDir: %s
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %s
authorization:
  mode: Webhook
serverTLSBootstrap: %t
rotateCertificates: %t
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
evictionHard: {}
localStorageCapacityIsolation: false
makeIPTablesUtilChains: false
protectKernelDefaults: true
`, k.port, healthzPort, k.criSocket(), filepath.Join(k.dir, "pods"), k.c.ClientCAFile(), k.opts.ServerTLSBootstrap, k.opts.RotateCertificates)
	return os.WriteFile(filepath.Join(k.dir, "config.yaml"), []byte(cfg), 0o600)
}

// NodeIP is the address every Kubelet of this machine uses as --node-ip,
// hence its Node's InternalIP and the IP address its serving CSR asks
// for: the source address of the default route, as the kubelet refuses a
// loopback one. It sends nothing: connecting a UDP socket only makes the
// kernel choose the source address.
func NodeIP() (string, error) {
	conn, err := net.Dial("udp4", "192.0.2.255:9")
	if err != nil {
		return "", fmt.Errorf("finding the default route's source address for --node-ip (the kubelet refuses loopback): %w", err)
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).IP.String(), nil
}

// Name is the kubelet's node name.
func (k *Kubelet) Name() string { return k.name }

// NodeIP is the kubelet's --node-ip, its Node's InternalIP and the IP
// address its serving CSR asks for.
func (k *Kubelet) NodeIP() string { return k.nodeIP }

// Address is where the kubelet serves its API: 127.0.0.1:<port>.
func (k *Kubelet) Address() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(k.port)) }

// Kubeconfig is the kubelet's --kubeconfig.
func (k *Kubelet) Kubeconfig() string { return k.opts.Kubeconfig }

// CertDir is the kubelet's --cert-dir.
func (k *Kubelet) CertDir() string { return k.opts.CertDir }

// Start starts fake-cri, waits for its socket, then starts the kubelet.
// It is how a stopped or killed kubelet is started again.
func (k *Kubelet) Start() error {
	if err := k.cri.start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Polling: fake-cri has no other way to say it listens.
	err := wait.PollUntilContextCancel(ctx, 20*time.Millisecond, true, func(context.Context) (bool, error) {
		if done, state := k.cri.exited(); done {
			return false, fmt.Errorf("fake-cri exited during start-up (%s)", state)
		}
		_, err := os.Stat(k.criSocket())
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for fake-cri's socket %s: %w%s", k.criSocket(), err, k.Logs(20))
	}
	return k.kubelet.start()
}

// Stop stops the kubelet with SIGTERM (SIGKILL after 10s), then fake-cri.
// Its files stay; Start starts it again.
func (k *Kubelet) Stop() error {
	err := k.kubelet.stop(10 * time.Second)
	return errors.Join(err, k.cri.stop(5*time.Second))
}

// Kill kills the kubelet with SIGKILL, as a crash would, then stops
// fake-cri. Start starts it again.
func (k *Kubelet) Kill() error {
	k.kubelet.mu.Lock()
	if k.kubelet.cmd != nil {
		_ = syscall.Kill(-k.kubelet.cmd.Process.Pid, syscall.SIGKILL)
	}
	k.kubelet.mu.Unlock()
	return k.Stop()
}

// Restart stops the kubelet and starts it again.
func (k *Kubelet) Restart() error {
	if err := k.Stop(); err != nil {
		return err
	}
	return k.Start()
}

// Exited reports whether the kubelet process has ended by itself (or was
// never started), with its exit state.
func (k *Kubelet) Exited() (bool, string) { return k.kubelet.exited() }

// PID is the kubelet's process ID, 0 when it is not running.
func (k *Kubelet) PID() int { return k.kubelet.pid() }

// Logs returns the last n lines of the kubelet's and fake-cri's logs.
func (k *Kubelet) Logs(n int) string {
	var b strings.Builder
	for _, p := range []*process{k.cri, k.kubelet} {
		if t := p.tail(n); t != "" {
			fmt.Fprintf(&b, "\n--- last %d lines of %s ---\n%s", n, p.logFile, t)
		}
	}
	return b.String()
}

// LogContains reports whether the kubelet's log holds s.
func (k *Kubelet) LogContains(s string) bool {
	data, err := os.ReadFile(k.kubelet.logFile)
	return err == nil && strings.Contains(string(data), s)
}

// WaitRegistered waits until the kubelet's Node exists and its Lease in
// kube-node-lease has been renewed after since, and returns both. It
// returns an error at once when the kubelet exits, and one wrapping
// ctx's error when ctx ends first.
func (k *Kubelet) WaitRegistered(ctx context.Context, since time.Time) (*corev1.Node, *coordinationv1.Lease, error) {
	client, err := k.c.AdminClient()
	if err != nil {
		return nil, nil, err
	}
	var node *corev1.Node
	var lease *coordinationv1.Lease
	err = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if done, state := k.Exited(); done {
			return false, fmt.Errorf("kubelet %s exited (%s)", k.name, state)
		}
		if node, err = client.CoreV1().Nodes().Get(ctx, k.name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return false, nil
		} else if err != nil {
			return false, err
		}
		lease, err = client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, k.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		} else if err != nil {
			return false, err
		}
		return lease.Spec.RenewTime != nil && lease.Spec.RenewTime.After(since), nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("waiting for kubelet %s to register and renew its Lease: %w", k.name, err)
	}
	return node, lease, nil
}

// remove stops the kubelet and deletes its directory.
func (k *Kubelet) remove() error {
	err := k.Stop()
	if os.Getenv("TLSBOOT_KEEP_CLUSTER_DIR") == "" {
		err = errors.Join(err, os.RemoveAll(k.dir))
	}
	return err
}
