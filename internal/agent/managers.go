package agent

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tlsboot/tlsboot/bootstrap"
	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/internal/atomicfile"
	"github.com/tlsboot/tlsboot/kubeconfig"
	"github.com/tlsboot/tlsboot/rotation"
)

// clientOptions configures the client certificate's manager: renewals
// authenticate with the current certificate (the selfnodeclient path),
// recovery re-bootstraps with the bootstrap credentials.
func (a *agent) clientOptions(hooks rotation.Hooks) rotation.Options {
	b := a.opts.Bootstrap
	return rotation.Options{
		Name:     "client",
		Store:    a.client,
		KeyType:  b.KeyType,
		ReuseKey: a.opts.ReuseKey,
		Template: func(pub crypto.PublicKey) csr.Request {
			r := csr.NodeClient(b.NodeName, pub)
			r.Expiration = b.Expiration
			return r
		},
		Client:         a.nodeClient,
		Roots:          a.clusterRoots,
		Recover:        a.recover,
		Verify:         a.verify,
		Usable:         a.kubeconfigUsesStore,
		Policy:         rotation.Policy{RenewBefore: a.opts.RenewBefore},
		WaitTimeout:    b.WaitTimeout,
		InitialBackoff: a.opts.InitialBackoff,
		MaxBackoff:     a.opts.MaxBackoff,
		Hooks:          hooks,
	}
}

// servingOptions configures the serving certificate's manager: signer
// kubernetes.io/kubelet-serving, SANs from the host name and node IPs, in
// the same directory with the kubelet's prefix kubelet-server. Issued
// certificates go through the same checks as the client certificate's,
// chaining to servingRoots.
func (a *agent) servingOptions(hooks rotation.Hooks) (rotation.Options, error) {
	b := a.opts.Bootstrap
	store, err := openStore(b.CertDir, ServingPrefix)
	if err != nil {
		return rotation.Options{}, err
	}
	var dns []string
	if a.opts.Hostname != "" {
		dns = []string{a.opts.Hostname}
	}
	return rotation.Options{
		Name:     "serving",
		Store:    store,
		KeyType:  b.KeyType,
		ReuseKey: a.opts.ReuseKey,
		Template: func(pub crypto.PublicKey) csr.Request {
			r := csr.NodeServing(b.NodeName, pub, dns, a.opts.NodeIPs)
			r.Expiration = b.Expiration
			return r
		},
		Client:         a.nodeClient,
		Roots:          a.servingRoots,
		Policy:         rotation.Policy{RenewBefore: a.opts.RenewBefore},
		WaitTimeout:    b.WaitTimeout,
		InitialBackoff: a.opts.InitialBackoff,
		MaxBackoff:     a.opts.MaxBackoff,
		Hooks:          hooks,
	}, nil
}

// servingManager returns the serving certificate's manager (see
// servingOptions).
func (a *agent) servingManager(hooks rotation.Hooks) (*rotation.Manager, error) {
	opts, err := a.servingOptions(hooks)
	if err != nil {
		return nil, err
	}
	return rotation.New(opts)
}

// nodeClient returns a client for the cluster of the node kubeconfig that
// authenticates with the current client certificate, read into memory:
// with file paths client-go would start a goroutine to reload them every
// few minutes, and the agent knows when they change.
func (a *agent) nodeClient(context.Context) (kubernetes.Interface, error) {
	cfg, err := a.nodeConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// nodeConfig is the client config of nodeClient.
func (a *agent) nodeConfig() (*rest.Config, error) {
	cfg, err := kubeconfig.Load(a.opts.Bootstrap.KubeconfigPath)
	if err != nil {
		return nil, err
	}
	pair, err := atomicfile.ReadFile(a.client.CurrentPath())
	if err != nil {
		return nil, fmt.Errorf("reading the client certificate: %w", err)
	}
	cfg.CertFile, cfg.KeyFile = "", ""
	cfg.CertData, cfg.KeyData = pair, pair
	if cfg.UserAgent == "" {
		cfg.UserAgent = "tlsboot"
	}
	return cfg, nil
}

// clusterRoots returns the CA of the node kubeconfig's cluster, which a
// renewed client certificate must chain to (nil when it names none).
func (a *agent) clusterRoots() (*x509.CertPool, error) {
	cfg, err := kubeconfig.Load(a.opts.Bootstrap.KubeconfigPath)
	if err != nil {
		return nil, err
	}
	return kubeconfig.CAPool(cfg)
}

// servingRoots returns the CAs a renewed serving certificate must chain
// to: those of ServingCAFile when it is set, else the node kubeconfig's
// cluster CA, as for the client certificate (nil when it names none). Both
// are read at every renewal, so a replaced CA file is used from the next
// one on.
func (a *agent) servingRoots() (*x509.CertPool, error) {
	if a.opts.ServingCAFile != "" {
		return readCAFile(a.opts.ServingCAFile)
	}
	return a.clusterRoots()
}

// ServingCAError reports a serving CA file (Options.ServingCAFile) that
// cannot be read or holds no PEM certificate. Err names the file.
type ServingCAError struct {
	File string
	Err  error
}

func (e *ServingCAError) Error() string { return "serving CA file: " + e.Err.Error() }
func (e *ServingCAError) Unwrap() error { return e.Err }

// readCAFile reads the PEM certificates of file (with the size limit of
// atomicfile.ReadFile) into a pool; errors are *ServingCAError.
func readCAFile(file string) (*x509.CertPool, error) {
	data, err := atomicfile.ReadFile(file)
	if err != nil {
		return nil, &ServingCAError{File: file, Err: err}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, &ServingCAError{File: file, Err: fmt.Errorf("%s holds no PEM certificate", file)}
	}
	return pool, nil
}

// verify asks the API server who the current certificate is; a 401 means
// it is rejected. Failures of the server are *csr.ServerError, as the
// Manager expects.
func (a *agent) verify(ctx context.Context) error {
	cfg, err := a.nodeConfig()
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	return csr.ClassifyServerError(err, cfg.Host, "verifying the client certificate with a SelfSubjectReview", "")
}

// kubeconfigUsesStore checks that the node kubeconfig loads and uses the
// store's current certificate, so that a rotation needs no rewrite.
func (a *agent) kubeconfigUsesStore() error {
	cfg, err := kubeconfig.Load(a.opts.Bootstrap.KubeconfigPath)
	if err != nil {
		return err
	}
	want := a.client.CurrentPath()
	if got, _ := filepath.Abs(cfg.CertFile); got != want || cfg.KeyFile != cfg.CertFile {
		return fmt.Errorf("kubeconfig %s does not use %s for its client certificate and key", a.opts.Bootstrap.KubeconfigPath, want)
	}
	return nil
}

// recover bootstraps a new client certificate with the bootstrap
// credentials and a new key.
func (a *agent) recover(ctx context.Context) (time.Duration, error) {
	opts := a.opts.Bootstrap
	if _, err := os.Stat(opts.BootstrapKubeconfigPath); errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("bootstrap kubeconfig %s does not exist: put bootstrap credentials there, the agent retries on its own: %w",
			opts.BootstrapKubeconfigPath, rotation.ErrNoCredentials)
	}
	opts.Force, opts.FreshKey = true, true
	res, err := bootstrap.Run(ctx, opts)
	if err != nil {
		return 0, err
	}
	return res.Issuance, nil
}

// chain returns a Current hook that calls prev, then f with whether the
// certificate is valid now.
func chain(prev func(string, *x509.Certificate), f func(valid bool)) func(string, *x509.Certificate) {
	return func(name string, c *x509.Certificate) {
		if prev != nil {
			prev(name, c)
		}
		now := time.Now()
		f(c != nil && !now.Before(c.NotBefore) && !now.After(c.NotAfter))
	}
}
