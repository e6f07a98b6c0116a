// Package testcluster runs a real, local Kubernetes control plane — etcd,
// kube-apiserver and kube-controller-manager built from pinned modules by
// `make controlplane` — as child processes on free loopback ports, set up for
// TLS bootstrapping the way kubeadm sets up a cluster: bootstrap-token
// authentication, Node+RBAC authorization, NodeRestriction, the kubelet CSR
// signers, a bootstrap token and kubeadm's three ClusterRoleBindings.
//
// Tests, benchmarks and the demo use it; nothing here is faked.
package testcluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Version is the Kubernetes version of the control plane binaries.
const Version = "v1.37.2"

// DefaultControllers are the kube-controller-manager controllers a cluster
// runs unless Options.Controllers says otherwise: the CSR controllers, and
// bootstrapsigner and tokencleaner, which kube-controller-manager leaves
// off unless asked and kubeadm always asks for (--controllers=*,
// bootstrapsigner,tokencleaner). bootstrapsigner signs the cluster-info
// ConfigMap with each bootstrap token (token discovery, tlsboot join);
// tokencleaner deletes expired bootstrap token Secrets.
var DefaultControllers = []string{"csrapproving", "csrsigning", "csrcleaner", "bootstrapsigner", "tokencleaner"}

// Options configures a cluster. The zero value is usable.
type Options struct {
	// BinDir holds etcd, kube-apiserver and kube-controller-manager.
	// Default: $TLSBOOT_CONTROLPLANE_BIN, else the repository's
	// .cache/controlplane/<Version>/bin.
	BinDir string
	// Dir holds the PKI, etcd data, kubeconfigs and logs. Default: a new
	// temporary directory, removed by Stop.
	Dir string
	// Controllers run by kube-controller-manager. nil means
	// DefaultControllers; an empty non-nil slice still runs the process
	// with no controllers.
	Controllers []string
	// SigningDuration is kube-controller-manager's
	// --cluster-signing-duration. Default 24h.
	SigningDuration time.Duration
	// ExtraAPIServerArgs and ExtraControllerManagerArgs are appended to
	// the components' command lines.
	ExtraAPIServerArgs         []string
	ExtraControllerManagerArgs []string
	// Layout says which CAs the cluster uses. Default LayoutSingle.
	Layout Layout
	// ExtraServingSANs are added to the API server's serving certificate:
	// each an IP address or a DNS name, such as the load-balancer name and
	// VIP that clients of a real cluster dial. Not with
	// LayoutSelfSignedServing, where kube-apiserver makes its certificate.
	ExtraServingSANs []string
}

// Cluster is a running control plane. Its methods are safe for concurrent
// use, except Stop.
type Cluster struct {
	opts    Options
	dir     string
	ownsDir bool
	pki     *pki

	etcd, apiserver, kcm *process
	apiPort, kcmPort     int

	// Token is the bootstrap token created at start: "<id>.<secret>".
	Token string
	// BootstrapKubeconfig authenticates with Token and trusts CAFile.
	BootstrapKubeconfig string
	// AdminKubeconfig authenticates as a member of system:masters.
	AdminKubeconfig string
}

// Start starts a control plane and waits until it serves and is set up for
// TLS bootstrapping. On error everything started is stopped again.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.SigningDuration == 0 {
		opts.SigningDuration = 24 * time.Hour
	}
	if opts.Controllers == nil {
		opts.Controllers = DefaultControllers
	}
	if opts.Layout == "" {
		opts.Layout = LayoutSingle
	}
	if err := opts.Layout.validate(); err != nil {
		return nil, err
	}
	bin, err := binDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	opts.BinDir = bin
	c := &Cluster{opts: opts, dir: opts.Dir}
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "tlsboot-testcluster-"); err != nil {
			return nil, err
		}
		c.ownsDir = true
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w%s", err, c.logTails(30))
			c.Stop()
		}
	}()
	if c.pki, err = newPKI(c.dir, opts.Layout, opts.ExtraServingSANs); err != nil {
		return nil, fmt.Errorf("generating cluster PKI: %w", err)
	}
	ports, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	c.apiPort, c.kcmPort = ports[2], ports[3]
	c.etcd = c.newEtcd(ports[0], ports[1])
	c.apiserver = c.newAPIServer(ports[0])
	c.kcm = c.newControllerManager()
	c.AdminKubeconfig = filepath.Join(c.dir, "admin.kubeconfig")
	// It names CAFile, which in LayoutSelfSignedServing exists only once
	// the API server has started; nothing reads it before.
	if err := c.writeKubeconfig(c.AdminKubeconfig, credentials{certFile: c.pki.adminCert, keyFile: c.pki.adminKey}); err != nil {
		return nil, err
	}
	if err := c.etcd.start(); err != nil {
		return nil, err
	}
	if err := c.waitHTTP(ctx, c.etcd, fmt.Sprintf("http://127.0.0.1:%d/health", ports[0]), nil); err != nil {
		return nil, err
	}
	if err := c.StartAPIServer(ctx); err != nil {
		return nil, err
	}
	if err := c.StartControllerManager(ctx); err != nil {
		return nil, err
	}
	if err := c.setUpBootstrap(ctx); err != nil {
		return nil, fmt.Errorf("setting up TLS bootstrapping: %w", err)
	}
	return c, nil
}

// binDir finds the control plane binaries or explains how to build them.
func binDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv("TLSBOOT_CONTROLPLANE_BIN")
	}
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		cache := os.Getenv("TLSBOOT_CACHE")
		if cache == "" {
			cache = filepath.Join(root, ".cache")
		}
		dir = filepath.Join(cache, "controlplane", Version, "bin")
	}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("control plane binary %s not found in %s: run 'make controlplane' first", name, dir)
		}
	}
	return dir, nil
}

// repoRoot walks up from the working directory to tlsboot's go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(data), "module github.com/tlsboot/tlsboot\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the tlsboot repository above the working directory: set TLSBOOT_CONTROLPLANE_BIN to the directory holding the control plane binaries")
		}
		dir = parent
	}
}

func (c *Cluster) newEtcd(clientPort, peerPort int) *process {
	client := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	return &process{
		name: "etcd",
		path: filepath.Join(c.opts.BinDir, "etcd"),
		args: []string{
			"--name=default",
			"--data-dir=" + filepath.Join(c.dir, "etcd"),
			"--listen-client-urls=" + client,
			"--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=default=" + peer,
			"--log-level=warn",
			// Test data is thrown away: durability costs time for nothing.
			"--unsafe-no-fsync",
		},
		logFile: filepath.Join(c.dir, "etcd.log"),
	}
}

func (c *Cluster) newAPIServer(etcdPort int) *process {
	args := slices.Concat([]string{
		"--etcd-servers=" + fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// The "kubernetes" Service endpoints cannot point at loopback, and
		// nothing here needs them.
		"--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(c.apiPort),
		"--cert-dir=" + c.apiServerCertDir(),
	}, c.servingArgs(), []string{
		"--client-ca-file=" + c.pki.client.certFile,
		"--service-account-key-file=" + c.pki.saPublicKey,
		"--service-account-signing-key-file=" + c.pki.saPrivateKey,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=Node,RBAC",
		"--enable-bootstrap-token-auth",
		"--enable-admission-plugins=NodeRestriction",
		"--profiling=false",
		"--v=1",
	})
	return &process{
		name:    "kube-apiserver",
		path:    filepath.Join(c.opts.BinDir, "kube-apiserver"),
		args:    append(args, c.opts.ExtraAPIServerArgs...),
		logFile: filepath.Join(c.dir, "kube-apiserver.log"),
	}
}

func (c *Cluster) newControllerManager() *process {
	args := slices.Concat([]string{
		"--kubeconfig=" + c.AdminKubeconfigPath(),
		"--authentication-kubeconfig=" + c.AdminKubeconfigPath(),
		"--authorization-kubeconfig=" + c.AdminKubeconfigPath(),
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.kcmPort),
		"--cert-dir=" + filepath.Join(c.dir, "kcm-certs"),
		"--controllers=" + strings.Join(c.opts.Controllers, ","),
	}, c.signingArgs(), []string{
		"--cluster-signing-duration=" + c.opts.SigningDuration.String(),
		"--root-ca-file=" + c.pki.serverCAFile,
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--profiling=false",
		"--v=2",
	})
	return &process{
		name:    "kube-controller-manager",
		path:    filepath.Join(c.opts.BinDir, "kube-controller-manager"),
		args:    append(args, c.opts.ExtraControllerManagerArgs...),
		logFile: filepath.Join(c.dir, "kube-controller-manager.log"),
	}
}

// signingArgs are kube-controller-manager's signer flags. One CA signing
// for every signer takes --cluster-signing-cert-file; otherwise each
// signer gets its own flags, which kube-controller-manager refuses to mix
// with --cluster-signing-cert-file.
func (c *Cluster) signingArgs() []string {
	client, serving := c.pki.client, c.pki.kubeletServing
	if client == serving {
		return []string{
			"--cluster-signing-cert-file=" + client.certFile,
			"--cluster-signing-key-file=" + client.keyFile,
		}
	}
	var args []string
	for _, s := range []struct {
		signer string
		ca     *authority
	}{
		{"kubelet-serving", serving},
		{"kubelet-client", client},
		{"kube-apiserver-client", client},
		{"legacy-unknown", client},
	} {
		args = append(args,
			"--cluster-signing-"+s.signer+"-cert-file="+s.ca.certFile,
			"--cluster-signing-"+s.signer+"-key-file="+s.ca.keyFile)
	}
	return args
}

// servingArgs are kube-apiserver's serving certificate flags: none in
// LayoutSelfSignedServing, where it generates a certificate in --cert-dir.
func (c *Cluster) servingArgs() []string {
	if c.pki.servingCert == "" {
		return nil
	}
	return []string{"--tls-cert-file=" + c.pki.servingCert, "--tls-private-key-file=" + c.pki.servingKey}
}

// apiServerCertDir is kube-apiserver's --cert-dir.
func (c *Cluster) apiServerCertDir() string { return filepath.Join(c.dir, "apiserver-certs") }

// AdminKubeconfigPath is where the admin kubeconfig is (or will be) written.
func (c *Cluster) AdminKubeconfigPath() string { return filepath.Join(c.dir, "admin.kubeconfig") }

// BinDir is the directory of the control plane binaries (and of the
// upstream kubelet-bootstrap peer that `make controlplane` builds).
func (c *Cluster) BinDir() string { return c.opts.BinDir }

// Dir is the directory holding the cluster's files and logs.
func (c *Cluster) Dir() string { return c.dir }

// URL is the API server's address.
func (c *Cluster) URL() string { return fmt.Sprintf("https://127.0.0.1:%d", c.apiPort) }

// Layout is the cluster's CA layout.
func (c *Cluster) Layout() Layout { return c.opts.Layout }

// CAFile is the CA bundle that verifies the API server's serving
// certificate: what the admin and bootstrap kubeconfigs name as
// certificate-authority, and what a node is given to trust the API server.
// It is the cluster CA in LayoutSingle, the server CA in LayoutSplit, and
// in LayoutSelfSignedServing a copy of the CA kube-apiserver generated.
// It does not sign client certificates in LayoutSplit or
// LayoutSelfSignedServing. The file exists once Start has returned.
func (c *Cluster) CAFile() string { return c.pki.serverCAFile }

// ClientCAFile is the CA that authenticates client certificates
// (kube-apiserver's --client-ca-file) and signs node client certificates
// (kubernetes.io/kube-apiserver-client-kubelet), as well as
// kubernetes.io/kube-apiserver-client and kubernetes.io/legacy-unknown:
// the cluster CA in LayoutSingle and LayoutSelfSignedServing (the same
// file as CAFile in LayoutSingle), the client CA in LayoutSplit.
func (c *Cluster) ClientCAFile() string { return c.pki.client.certFile }

// ClientCAKeyFile is ClientCAFile's key, for tests that issue client
// certificates themselves (for example one signed for a foreign key).
func (c *Cluster) ClientCAKeyFile() string { return c.pki.client.keyFile }

// KubeletServingCAFile is the CA of the kubernetes.io/kubelet-serving
// signer: the cluster CA in LayoutSingle and LayoutSelfSignedServing (the
// same file as ClientCAFile), a CA of its own in LayoutSplit.
func (c *Cluster) KubeletServingCAFile() string { return c.pki.kubeletServing.certFile }

// KubeletServingCAKeyFile is KubeletServingCAFile's key.
func (c *Cluster) KubeletServingCAKeyFile() string { return c.pki.kubeletServing.keyFile }

// SigningDuration is the lifetime the signer gives certificates.
func (c *Cluster) SigningDuration() time.Duration { return c.opts.SigningDuration }

// AdminConfig returns a REST config for the admin user.
func (c *Cluster) AdminConfig() (*rest.Config, error) {
	return clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig)
}

// AdminClient returns a clientset for the admin user.
func (c *Cluster) AdminClient() (kubernetes.Interface, error) {
	cfg, err := c.AdminConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// StartAPIServer starts kube-apiserver (again) on its port and waits until
// /readyz answers ok.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	if err := c.apiserver.start(); err != nil {
		return err
	}
	if c.pki.server == nil {
		// kube-apiserver keeps the certificate it generated in --cert-dir
		// and serves it again after a restart, so CAFile stays valid.
		file := filepath.Join(c.apiServerCertDir(), "apiserver.crt")
		if err := await(ctx, c.apiserver, "waiting for "+file, func() error { return c.pki.copyGeneratedServerCA(file) }); err != nil {
			return err
		}
	}
	tlsConfig, err := c.adminTLSConfig()
	if err != nil {
		return err
	}
	return c.waitHTTP(ctx, c.apiserver, c.URL()+"/readyz", tlsConfig)
}

// StopAPIServer stops kube-apiserver; etcd keeps the cluster's state.
func (c *Cluster) StopAPIServer() error { return c.apiserver.stop(5 * time.Second) }

// StartControllerManager starts kube-controller-manager (again) and waits
// until its /healthz answers ok.
func (c *Cluster) StartControllerManager(ctx context.Context) error {
	if err := c.kcm.start(); err != nil {
		return err
	}
	// kube-controller-manager serves a self-signed certificate.
	return c.waitHTTP(ctx, c.kcm, fmt.Sprintf("https://127.0.0.1:%d/healthz", c.kcmPort), &tls.Config{InsecureSkipVerify: true})
}

// StopControllerManager stops kube-controller-manager: no CSR is approved
// or signed until it is started again.
func (c *Cluster) StopControllerManager() error { return c.kcm.stop(5 * time.Second) }

// PIDs returns the process IDs of the running components.
func (c *Cluster) PIDs() []int {
	var pids []int
	for _, p := range []*process{c.etcd, c.apiserver, c.kcm} {
		if p != nil && p.pid() != 0 {
			pids = append(pids, p.pid())
		}
	}
	return pids
}

// Stop stops every component and removes the directory if Start made it.
// It is safe to call more than once.
func (c *Cluster) Stop() error {
	for _, p := range []*process{c.kcm, c.apiserver, c.etcd} {
		if p != nil {
			p.stop(5 * time.Second)
		}
	}
	if c.ownsDir && os.Getenv("TLSBOOT_KEEP_CLUSTER_DIR") == "" {
		return os.RemoveAll(c.dir)
	}
	return nil
}

// Logs returns the last n lines of each component's log.
func (c *Cluster) Logs(n int) string { return c.logTails(n) }

func (c *Cluster) logTails(n int) string {
	var b strings.Builder
	for _, p := range []*process{c.etcd, c.apiserver, c.kcm} {
		if p == nil {
			continue
		}
		if t := p.tail(n); t != "" {
			fmt.Fprintf(&b, "\n--- last %d lines of %s ---\n%s", n, p.logFile, t)
		}
	}
	return b.String()
}
