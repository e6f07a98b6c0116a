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

	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/certstore"
	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/internal/atomicfile"
	"github.com/tlsboot/tlsboot/kubeconfig"
)

// DefaultCertPrefix names the client certificate files, as the kubelet does.
const DefaultCertPrefix = "kubelet-client"

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
	// CertPrefix names the files in CertDir. Default "kubelet-client".
	CertPrefix string
	// KeyType of a newly generated key. Default ecdsa-p256.
	KeyType csr.KeyType
	// WaitTimeout bounds the whole request: creating the CSR (retried while
	// the server is unreachable) and waiting for issuance. Default 1h.
	WaitTimeout time.Duration
	// ServerWait is how long to wait for the API server's /healthz before
	// trying anyway. Default 1m.
	ServerWait time.Duration
	// Expiration, if set, is asked for as spec.expirationSeconds (>= 10m).
	Expiration time.Duration
	// ProgressInterval is how often the wait for issuance is logged.
	// Default 30s.
	ProgressInterval time.Duration
	// Now is the clock for validity checks. Default time.Now.
	Now func() time.Time
	// Force bootstraps even when the kubeconfig looks usable offline: the
	// caller knows better, for example because the API server rejected
	// its certificate (401).
	Force bool
	// FreshKey never reuses the key of the current certificate, so that a
	// re-bootstrap asks for a certificate under a new CSR name instead of
	// re-attaching to the CSR that issued the certificate being replaced.
	// A temporary key left by an unfinished run is still reused.
	FreshKey bool
	// InsecureWarned says the caller already warned (WarnInsecure) about
	// a bootstrap kubeconfig that skips TLS verification; Run then does
	// not warn again.
	InsecureWarned bool
}

func (o *Options) setDefaults() {
	if o.CertPrefix == "" {
		o.CertPrefix = DefaultCertPrefix
	}
	if o.KeyType == "" {
		o.KeyType = csr.ECDSAP256
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = time.Hour
	}
	if o.ServerWait == 0 {
		o.ServerWait = time.Minute
	}
	if o.ProgressInterval == 0 {
		o.ProgressInterval = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Validate reports the first missing or invalid option.
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
	case o.Expiration != 0 && o.Expiration < 10*time.Minute:
		return fmt.Errorf("expiration %v is too short: the API server requires at least 10m", o.Expiration)
	}
	if err := validNodeName(o.NodeName); err != nil {
		return err
	}
	if o.KeyType != "" {
		if _, err := csr.ParseKeyType(string(o.KeyType)); err != nil {
			return err
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
// already usable. It returns an error for anything that stops it; nothing
// that was valid on disk is removed or replaced on error, and running again
// resumes with the same key and CSR.
func Run(ctx context.Context, opts Options) (*Result, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	logger := klog.FromContext(ctx)
	res := &Result{KubeconfigPath: opts.KubeconfigPath}

	cfg, leaf, reason, err := usable(opts.KubeconfigPath, opts.Now())
	if err != nil && !opts.Force {
		return nil, err
	}
	if opts.Force {
		cfg, reason = nil, "forced"
	}
	if cfg != nil {
		if !opts.InsecureWarned {
			WarnInsecure(ctx, opts.BootstrapKubeconfigPath)
		}
		res.Reason = "kubeconfig is usable"
		res.CertPath = cfg.CertFile
		res.Certificate = leaf
		logger.V(1).Info("Kubeconfig is usable, no bootstrap needed", "kubeconfig", opts.KubeconfigPath)
		return res, nil
	}
	res.Bootstrapped, res.Reason = true, reason
	logger.Info("Bootstrapping client certificate", "reason", reason, "node", opts.NodeName)

	bootCfg, err := kubeconfig.Load(opts.BootstrapKubeconfigPath)
	if err != nil {
		return nil, fmt.Errorf("bootstrap %w", err)
	}
	if !opts.InsecureWarned {
		warnInsecure(logger, bootCfg, opts.BootstrapKubeconfigPath)
	}
	// kubeconfig.Write refuses a directory others can write to; find out
	// now, before anything is created or a CSR is created and issued for nothing.
	if err := atomicfile.CheckDir(filepath.Dir(opts.KubeconfigPath), "kubeconfig directory"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	store, err := openStore(opts.CertDir, opts.CertPrefix)
	if err != nil {
		return nil, err
	}
	srv, err := newServer(bootCfg)
	if err != nil {
		return nil, fmt.Errorf("bootstrap kubeconfig %s: %w", opts.BootstrapKubeconfigPath, err)
	}
	// Load or create (and fsync) the key while the server answers /healthz:
	// both must be done before the CSR, and neither needs the other.
	var k loadedKey
	keyDone := make(chan struct{})
	go func() {
		defer close(keyDone)
		k.key, k.pem, k.err = loadKey(ctx, store, opts)
	}()
	serverErr := srv.waitForServer(ctx, opts.ServerWait)
	<-keyDone
	if k.err != nil {
		return nil, k.err
	}
	if serverErr != nil {
		return nil, explain(serverErr, bootCfg, opts.BootstrapKubeconfigPath)
	}
	key, keyPEM := k.key, k.pem

	req := csr.NodeClient(opts.NodeName, key.Public())
	req.Expiration = opts.Expiration
	certPEM, err := srv.request(ctx, req, key, opts, res)
	if err != nil {
		return nil, explain(err, bootCfg, opts.BootstrapKubeconfigPath)
	}
	cert, err := persist(store, certPEM, keyPEM, opts.KubeconfigPath, kubeconfig.Node(bootCfg, store.CurrentPath()))
	if err != nil {
		return nil, err
	}
	res.Certificate, res.CertPath = cert.Leaf, store.CurrentPath()
	// Only now is the temporary key redundant: the certificate, its key
	// and the kubeconfig that uses them are all durable.
	if err := store.DropPendingKey(); err != nil {
		logger.Info("Could not remove the temporary key; it is harmless and will be replaced", "path", store.PendingKeyPath(), "err", err)
	}
	logger.Info("Client certificate issued", "csr", res.CSRName, "subject", cert.Leaf.Subject.String(),
		"notAfter", cert.Leaf.NotAfter.UTC().Format(time.RFC3339), "kubeconfig", opts.KubeconfigPath)
	return res, nil
}

// WarnInsecure logs one line at level 0 when the bootstrap kubeconfig at
// path sets insecure-skip-tls-verify: the bootstrap token then goes to
// whoever answers. A file that is missing or does not load is not warned
// about here; Run reports it when it needs the file.
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
}

type loadedKey struct {
	key crypto.Signer
	pem []byte
	err error
}

// persist stores the certificate and writes the kubeconfig that points at
// the store, concurrently: they are different files, and either order is
// safe. The kubeconfig replaced here was not usable, and until the store
// holds the new certificate the temporary key is still there, so a crash
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
		return nil, fmt.Errorf("storing the issued certificate in %s: %w", store.Dir(), err)
	}
	return cert, nil
}

// usable returns the REST config of the kubeconfig if it can be used as is,
// or the reason it cannot. It fails only when the file cannot even be
// examined (for example, permission denied): that is not a reason to
// bootstrap over it.
func usable(path string, now time.Time) (*rest.Config, *x509.Certificate, string, error) {
	cfg, leaf, err := kubeconfig.LoadUsable(path, now)
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

func openStore(dir, prefix string) (*certstore.Store, error) {
	store, err := certstore.Open(certstore.Options{Dir: dir, Prefix: prefix})
	if err != nil {
		return nil, fmt.Errorf("certificate directory %s: %w", dir, err)
	}
	return store, nil
}

// loadKey returns the key to request a certificate for: the current
// certificate's key if the store has one (unless opts.FreshKey), else the
// store's pending key <prefix>.key.tmp, created if missing. The pending key
// makes a retry after a failure or crash ask for a certificate for the same
// key, so it finds its own pending CSR by name. A pending key that can never
// be used is replaced by the store; one that is unsafe stops the run.
func loadKey(ctx context.Context, store *certstore.Store, opts Options) (crypto.Signer, []byte, error) {
	logger := klog.FromContext(ctx)
	if !opts.FreshKey {
		cur, err := store.Current()
		switch {
		case err == nil:
			if signer, ok := cur.PrivateKey.(crypto.Signer); ok {
				if keyPEM, err := csr.MarshalPrivateKeyPEM(signer); err == nil {
					logger.V(2).Info("Reusing the key of the current certificate", "path", store.CurrentPath())
					return signer, keyPEM, nil
				}
			}
		case !errors.Is(err, certstore.ErrNoCertificate):
			return nil, nil, fmt.Errorf("%w: move it away to bootstrap a new certificate", err)
		}
	}
	key, keyPEM, created, replaced, err := store.LoadPendingKey(func() (crypto.Signer, error) { return csr.GenerateKey(opts.KeyType) })
	if err != nil {
		return nil, nil, err
	}
	path := store.PendingKeyPath()
	switch {
	case replaced != "":
		logger.Info("Replaced an unusable temporary key with a new one", "path", path, "reason", replaced, "key_type", opts.KeyType)
	case created:
		logger.V(1).Info("Generated a new private key", "path", path, "key_type", opts.KeyType)
	default:
		logger.V(1).Info("Reusing the key of an earlier, unfinished bootstrap", "path", path)
	}
	return key, keyPEM, nil
}
