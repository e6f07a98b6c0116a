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
	"github.com/tlsboot/tlsboot/identity"
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
		Roots:          a.clientRoots,
		Confirm:        a.confirm,
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
// certificates go through the same offline checks as the client
// certificate's, and chain to ServingCAFile when it is set. The API server
// cannot vouch for a serving certificate, so nothing is confirmed with it.
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

// clientRoots returns the CAs of Bootstrap.ClientCAFile, which a renewed
// client certificate must chain to, or nil (no such check) when it is not
// set: the CA that verifies the API server (the node kubeconfig's) is
// often not the one that signs client certificates, and confirm asks the
// API server itself. The file is read at every renewal, so a replaced CA
// file is used from the next one on.
func (a *agent) clientRoots() (*x509.CertPool, error) {
	if a.opts.Bootstrap.ClientCAFile == "" {
		return nil, nil
	}
	return csr.LoadRoots(a.opts.Bootstrap.ClientCAFile)
}

// servingRoots returns the CAs of ServingCAFile, which a renewed serving
// certificate must chain to, or nil (only the offline checks of the
// request, as the kubelet does) when it is not set. It is read at every
// renewal.
func (a *agent) servingRoots() (*x509.CertPool, error) {
	if a.opts.ServingCAFile == "" {
		return nil, nil
	}
	return readCAFile(a.opts.ServingCAFile)
}

// confirm asks the API server of the node kubeconfig's cluster whether it
// takes an issued client certificate for the node (identity.ConfirmNode).
func (a *agent) confirm(ctx context.Context, csrName string, certPEM, keyPEM []byte) error {
	cfg, err := kubeconfig.Load(a.opts.Bootstrap.KubeconfigPath)
	if err != nil {
		return err
	}
	return identity.ConfirmNode(ctx, cfg, csrName, a.opts.Bootstrap.NodeName, certPEM, keyPEM)
}

// ServingCAError reports a serving CA file (Options.ServingCAFile) that
// cannot be read or holds no PEM certificate. Err names the file.
type ServingCAError struct {
	File string
	Err  error
}

func (e *ServingCAError) Error() string { return "serving CA file: " + e.Err.Error() }
func (e *ServingCAError) Unwrap() error { return e.Err }

// readCAFile reads the PEM certificates of file (csr.LoadRoots) into a
// pool; errors are *ServingCAError.
func readCAFile(file string) (*x509.CertPool, error) {
	pool, err := csr.LoadRoots(file)
	var re *csr.RootsError
	if errors.As(err, &re) {
		return nil, &ServingCAError{File: file, Err: re.Err}
	}
	return pool, err
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
