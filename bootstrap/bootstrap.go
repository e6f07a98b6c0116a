// Package bootstrap turns a bootstrap kubeconfig into a node's own client
// certificate and kubeconfig, the way the kubelet's
// pkg/kubelet/certificate/bootstrap does, with the same files, CSR names and
// kubeconfig, so that a node can move between the kubelet and tlsboot
// without a second CSR. Where the kubelet is fragile this package is not:
// every write is atomic, a pending CSR survives a crash (same key, same
// name), denied, failed and deleted CSRs end the wait with a reason instead
// of an hour-long timeout, credentials the server rejects stop the run at
// once, and the issued certificate is checked before it is stored.
package bootstrap

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/tlsboot/tlsboot/certstore"
	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/internal/atomicfile"
	"github.com/tlsboot/tlsboot/kubeconfig"
)

// Defaults of Options.
const (
	// DefaultCertPrefix names the client certificate files, as the
	// kubelet does.
	DefaultCertPrefix = "kubelet-client"
	// DefaultWaitTimeout bounds the whole request (Options.WaitTimeout).
	DefaultWaitTimeout = csr.DefaultWaitTimeout
	// DefaultServerWait bounds the wait for the API server to answer
	// (Options.ServerWait).
	DefaultServerWait = time.Minute
)

// Options configures Run. Zero values take the documented defaults.
type Options struct {
	// KubeconfigPath is the node kubeconfig to write (required).
	KubeconfigPath string
	// BootstrapKubeconfigPath holds the bootstrap credentials (required).
	BootstrapKubeconfigPath string
	// CertDir is the certificate store directory (required).
	CertDir string
	// NodeName is the node's name; the certificate is for
	// system:node:<NodeName> (required).
	NodeName string
	// CertPrefix names the files in CertDir. Default DefaultCertPrefix.
	CertPrefix string
	// KeyType of a newly generated key. Default ecdsa-p256.
	KeyType csr.KeyType
	// WaitTimeout bounds the whole request: creating the CSR (retried while
	// the server is unreachable) and waiting for issuance. Default
	// DefaultWaitTimeout.
	WaitTimeout time.Duration
	// ServerWait is how long to wait for the API server's /healthz before
	// trying anyway. Default DefaultServerWait.
	ServerWait time.Duration
	// Expiration, if set, is asked for as spec.expirationSeconds; it must
	// be within what the API server accepts (csr.CheckExpiration).
	Expiration time.Duration
	// ProgressInterval is how often the wait for issuance is logged.
	// Default csrwait.DefaultProgressInterval.
	ProgressInterval time.Duration
	// Clock is the time of the validity checks and drives every wait of
	// Run: for the server, between retries, WaitTimeout and ServerWait,
	// progress reports. Default the real clock. (Single requests to the
	// server are bounded in real time: they wait on the network.)
	Clock clock.WithTicker
	// NewClient makes the API client from the bootstrap credentials'
	// REST config, and an anonymous one to ask /readyz. Default
	// kubernetes.NewForConfig.
	NewClient func(*rest.Config) (kubernetes.Interface, error)
	// Force bootstraps even when the kubeconfig looks usable offline: the
	// caller knows better, for example because the API server rejected
	// its certificate (401).
	Force bool
	// FreshKey never reuses the key of the current certificate, so that a
	// re-bootstrap asks for a certificate under a new CSR name instead of
	// re-attaching to the CSR that issued the certificate being replaced.
	// The pending key left by an unfinished run is still reused.
	FreshKey bool
	// ClientCAFile, if set, is a PEM file of CA certificates that the
	// issued client certificate must also chain to, for operators who want
	// that offline check on top of the API server's word. It is off by
	// default: the CA that signs client certificates is often not the one
	// that verifies the API server (the bootstrap kubeconfig's), and the
	// API server confirming the certificate (below) is what matters. It is
	// read at every Run.
	ClientCAFile string
	// InsecureWarned says the caller already warned (WarnInsecure,
	// WarnReadable) about a bootstrap kubeconfig that skips TLS
	// verification and about kubeconfigs others can read; Run then does
	// not warn again.
	InsecureWarned bool
}

func (o *Options) setDefaults() {
	if o.CertPrefix == "" {
		o.CertPrefix = DefaultCertPrefix
	}
	if o.KeyType == "" {
		o.KeyType = csr.DefaultKeyType
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = DefaultWaitTimeout
	}
	if o.ServerWait == 0 {
		o.ServerWait = DefaultServerWait
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.NewClient == nil {
		o.NewClient = func(cfg *rest.Config) (kubernetes.Interface, error) { return kubernetes.NewForConfig(cfg) }
	}
}

// Validate reports the first missing or invalid option, on one line that
// names it; an Expiration the API server would refuse is a
// *csr.ExpirationError, and a ClientCAFile that cannot be read or holds no
// certificate a *csr.RootsError. Run calls it after applying the defaults.
func (o Options) Validate() error {
	switch {
	case o.KubeconfigPath == "":
		return errors.New("the kubeconfig path is required")
	case o.BootstrapKubeconfigPath == "":
		return errors.New("the bootstrap kubeconfig path is required")
	case o.CertDir == "":
		return errors.New("the certificate directory is required")
	case o.NodeName == "":
		return errors.New("the node name is required")
	case strings.ContainsAny(o.CertPrefix, `/\`):
		return fmt.Errorf("certificate prefix %q must not contain a path separator", o.CertPrefix)
	case o.WaitTimeout < 0 || o.ServerWait < 0:
		return errors.New("timeouts must not be negative")
	}
	if err := csr.CheckExpiration(o.Expiration); err != nil {
		return err // a *csr.ExpirationError: the command names its flag
	}
	if errs := validation.IsDNS1123Subdomain(o.NodeName); len(errs) > 0 {
		return fmt.Errorf("node name %q is not valid: %s", o.NodeName, errs[0])
	}
	if o.KeyType != "" {
		if _, err := csr.ParseKeyType(string(o.KeyType)); err != nil {
			return err
		}
	}
	if o.ClientCAFile != "" {
		if _, err := csr.LoadRoots(o.ClientCAFile); err != nil {
			return err // a *csr.RootsError: the command names its flag
		}
	}
	return nil
}

// Result describes what Run did.
type Result struct {
	// Bootstrapped is false when the kubeconfig was already usable.
	Bootstrapped bool
	// Reason says why a bootstrap was needed (or why none was).
	Reason string
	// CSRName is the certificate signing request used, if any.
	CSRName string
	// Reattached is true when the CSR existed before this run (a retry
	// after a failure or a crash).
	Reattached bool
	// Certificate is the node's client certificate now in use.
	Certificate *x509.Certificate
	// CertPath is the store's current-certificate path the kubeconfig uses.
	CertPath string
	// KubeconfigPath is the kubeconfig that was checked or written.
	KubeconfigPath string
	// Issuance is the time from submitting the CSR to its certificate.
	Issuance time.Duration
}

// Run bootstraps the node's client certificate unless the kubeconfig is
// already usable (or opts.Force). It blocks until the certificate is
// stored and the kubeconfig written, or until something stops it: ctx
// ending (its error, wrapped), WaitTimeout passing, or an error that
// retrying cannot fix. Every error is one line that names what to fix
// (file, CSR) and how. Failures of the API server are *csr.ServerError
// (completed with the bootstrap kubeconfig and what to do), a CSR that ends
// without a certificate is *csr.OutcomeError, one of the same name that
// asks for something else *csr.ConflictError, one not issued within
// WaitTimeout *csr.TimeoutError, and an issued certificate that must not be
// stored *csr.CertificateError (it fails the offline checks of
// csr.CheckIssued, or does not chain to ClientCAFile) or
// *csr.IdentityError (the API server rejects it, or authenticates it as
// someone other than system:node:<NodeName> in system:nodes).
//
// Before the certificate is stored, the API server must accept it: one
// SelfSubjectReview authenticated with the new certificate and key alone
// (package identity). A server that does not answer then is retried, with
// the certificate kept in memory, until WaitTimeout; nothing unconfirmed
// is ever stored.
//
// Nothing that was valid on disk is removed or replaced on error. Running
// again resumes with the same key and CSR, except after an issued
// certificate that must not be stored: the pending key is then dropped, so
// that the next run asks with a new key under a new CSR instead of
// fetching the same certificate again. Run is safe to call
// concurrently for different certificate directories and kubeconfigs; two
// runs for the same files are not coordinated.
func Run(ctx context.Context, opts Options) (*Result, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	logger := klog.FromContext(ctx)

	cfg, leaf, reason, err := checkKubeconfig(opts)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		if !opts.InsecureWarned {
			WarnInsecure(ctx, opts.BootstrapKubeconfigPath)
			warnReadable(logger, cfg, "kubeconfig", opts.KubeconfigPath)
		}
		logger.V(1).Info("Kubeconfig is usable, no bootstrap needed", "kubeconfig", opts.KubeconfigPath)
		return &Result{Reason: "kubeconfig is usable", CertPath: cfg.CertFile, Certificate: leaf, KubeconfigPath: opts.KubeconfigPath}, nil
	}
	logger.Info("Bootstrapping client certificate", "reason", reason, "node", opts.NodeName)

	bootCfg, err := loadBootstrapConfig(ctx, opts)
	if err != nil {
		return nil, err
	}
	store, err := openStore(opts.CertDir, opts.CertPrefix)
	if err != nil {
		return nil, err
	}
	srv, err := newServer(bootCfg, opts)
	if err != nil {
		return nil, fmt.Errorf("bootstrap kubeconfig %s: %w", opts.BootstrapKubeconfigPath, err)
	}
	key, keyPEM, err := keyAndServer(ctx, store, srv, opts)
	if err != nil {
		return nil, err
	}
	iss, err := srv.request(ctx, key, keyPEM, opts)
	if err != nil {
		if refused(err) {
			dropPendingKey(ctx, store)
		}
		return nil, err
	}
	cert, err := persist(store, iss.certPEM, keyPEM, opts.KubeconfigPath, kubeconfig.Node(bootCfg, store.CurrentPath()))
	if err != nil {
		return nil, err
	}
	dropPendingKey(ctx, store)
	logger.Info("Client certificate issued", "csr", iss.name, "subject", cert.Leaf.Subject.String(),
		"not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339), "kubeconfig", opts.KubeconfigPath)
	return &Result{
		Bootstrapped:   true,
		Reason:         reason,
		CSRName:        iss.name,
		Reattached:     iss.reattached,
		Certificate:    cert.Leaf,
		CertPath:       store.CurrentPath(),
		KubeconfigPath: opts.KubeconfigPath,
		Issuance:       iss.took,
	}, nil
}

// checkKubeconfig returns the REST config and client certificate of the
// node kubeconfig if it can be used as is, or else the reason to
// bootstrap. It fails only when the file cannot even be examined (for
// example, permission denied): that is not a reason to bootstrap over it.
// With opts.Force the kubeconfig is not looked at.
func checkKubeconfig(opts Options) (*rest.Config, *x509.Certificate, string, error) {
	if opts.Force {
		return nil, nil, "forced", nil
	}
	path := opts.KubeconfigPath
	cfg, leaf, err := kubeconfig.LoadUsable(path, opts.Clock.Now())
	switch {
	case err == nil:
		return cfg, leaf, "", nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, "no kubeconfig at " + path, nil
	case errors.Is(err, fs.ErrPermission):
		return nil, nil, "", fmt.Errorf("%w: run as a user that can read it", err)
	default:
		return nil, nil, err.Error(), nil
	}
}

// loadBootstrapConfig loads the bootstrap kubeconfig, warns once if it
// skips TLS verification, and checks the node kubeconfig's directory now:
// kubeconfig.Write refuses one others can write to, and finding out after
// a CSR was created and issued would waste it.
func loadBootstrapConfig(ctx context.Context, opts Options) (*rest.Config, error) {
	cfg, err := kubeconfig.Load(opts.BootstrapKubeconfigPath)
	if err != nil {
		return nil, fmt.Errorf("bootstrap %w", err)
	}
	if !opts.InsecureWarned {
		warnInsecure(klog.FromContext(ctx), cfg, opts.BootstrapKubeconfigPath)
	}
	if err := atomicfile.CheckDir(filepath.Dir(opts.KubeconfigPath), "kubeconfig directory"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return cfg, nil
}

func openStore(dir, prefix string) (*certstore.Store, error) {
	store, err := certstore.Open(certstore.Options{Dir: dir, Prefix: prefix})
	if err != nil {
		return nil, fmt.Errorf("certificate directory %s: %w", dir, err)
	}
	return store, nil
}

// keyAndServer loads or creates (and fsyncs) the key while the server
// answers /healthz: both must be done before the CSR, and neither needs
// the other. A key error wins over a server error: it is the one to fix
// first, and it is on this node.
func keyAndServer(ctx context.Context, store *certstore.Store, srv *server, opts Options) (crypto.Signer, []byte, error) {
	type loaded struct {
		key crypto.Signer
		pem []byte
		err error
	}
	keyDone := make(chan loaded, 1)
	go func() {
		var l loaded
		l.key, l.pem, l.err = loadKey(ctx, store, opts)
		keyDone <- l
	}()
	serverErr := srv.waitForServer(ctx, opts.ServerWait)
	k := <-keyDone
	if k.err != nil {
		return nil, nil, k.err
	}
	if serverErr != nil {
		return nil, nil, srv.explain(serverErr)
	}
	return k.key, k.pem, nil
}

// persist stores the certificate and writes the kubeconfig that points at
// the store, concurrently: they are different files, and either order is
// safe. The kubeconfig replaced here was not usable, and until the store
// holds the new certificate the pending key is still there, so a crash
// at any point is repaired by running again (it re-attaches to the issued
// CSR). Overlapping the two halves the time spent in fsync.
func persist(store *certstore.Store, certPEM, keyPEM []byte, kubeconfigPath string, cfg *clientcmdapi.Config) (*tls.Certificate, error) {
	kubeconfigErr := make(chan error, 1)
	go func() { kubeconfigErr <- kubeconfig.Write(kubeconfigPath, cfg) }()
	cert, err := store.Update(certPEM, keyPEM)
	if kerr := <-kubeconfigErr; kerr != nil && err == nil {
		return nil, kerr
	}
	if err != nil {
		return nil, fmt.Errorf("storing the issued certificate: %w", err)
	}
	return cert, nil
}

// dropPendingKey removes the pending key once the certificate, its key and
// the kubeconfig that uses them are all durable. Failing is harmless (the
// store replaces a pending key that is the current certificate's), so it
// is logged, not returned.
func dropPendingKey(ctx context.Context, store *certstore.Store) {
	if err := store.DropPendingKey(); err != nil {
		klog.FromContext(ctx).Info("Could not remove the pending key; it is harmless and will be replaced", "path", store.PendingKeyPath(), "err", err)
	}
}

// refused reports an issued certificate that must not be stored: asking
// again under the same CSR would return it again.
func refused(err error) bool {
	var cert *csr.CertificateError
	var id *csr.IdentityError
	return errors.As(err, &cert) || errors.As(err, &id)
}

// WarnInsecure logs one line at level 0 when the bootstrap kubeconfig at
// path sets insecure-skip-tls-verify: the bootstrap token then goes to
// whoever answers; and one line for each file of it that holds a
// credential and that its group or everyone can read
// (kubeconfig.ReadableWarnings). A file that is missing or does not load is
// not warned about here; Run reports it when it needs the file. It does not
// block beyond reading the file.
func WarnInsecure(ctx context.Context, path string) {
	if path == "" {
		return
	}
	if cfg, err := kubeconfig.Load(path); err == nil {
		warnInsecure(klog.FromContext(ctx), cfg, path)
	}
}

func warnInsecure(logger klog.Logger, cfg *rest.Config, path string) {
	if w := kubeconfig.InsecureWarning(cfg, "bootstrap kubeconfig", path); w != "" {
		logger.Info("WARNING: " + w)
	}
	warnReadable(logger, cfg, "bootstrap kubeconfig", path)
}

// WarnReadable logs one line at level 0 for each file of the kubeconfig at
// path (what names its role, e.g. "kubeconfig") that holds a credential
// and that its group or everyone can read (kubeconfig.ReadableWarnings). A
// file that is missing or does not load is not warned about.
func WarnReadable(ctx context.Context, what, path string) {
	if path == "" {
		return
	}
	if cfg, err := kubeconfig.Load(path); err == nil {
		warnReadable(klog.FromContext(ctx), cfg, what, path)
	}
}

func warnReadable(logger klog.Logger, cfg *rest.Config, what, path string) {
	for _, w := range kubeconfig.ReadableWarnings(cfg, what, path) {
		logger.Info("WARNING: " + w)
	}
}
