// Package kubeconfig reads, checks and writes the kubeconfig files of TLS
// bootstrapping: the bootstrap kubeconfig an operator provides, and the node
// kubeconfig that points at the certificate store.
//
// Loading and flattening are client-go's (clientcmd); this package adds what
// a node needs on top: errors that name the file and say what to fix, an
// offline usability check of a kubeconfig's client certificate, and an atomic,
// durable write with mode 0600.
package kubeconfig

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/internal/atomicfile"
)

// Load reads the kubeconfig at path and returns the REST config of its
// current context; relative file paths in it are resolved against its
// directory. Errors are one line naming the file and what is wrong with it
// (missing, too large, not a regular file, unparsable, no or undefined
// current-context); a missing file's error says "does not exist". The file
// is read once, with a limit of atomicfile.MaxReadSize (1 MiB). Load only
// reads and is safe for concurrent use.
func Load(path string) (*rest.Config, error) {
	raw, err := loadRaw(path)
	if err != nil {
		return nil, err
	}
	if raw.CurrentContext == "" {
		return nil, fmt.Errorf("kubeconfig %s has no current-context: set one with 'kubectl config use-context --kubeconfig %s NAME'", path, path)
	}
	if _, ok := raw.Contexts[raw.CurrentContext]; !ok {
		return nil, fmt.Errorf("kubeconfig %s: current-context %q is not defined in contexts", path, raw.CurrentContext)
	}
	cfg, err := clientcmd.NewNonInteractiveClientConfig(*raw, raw.CurrentContext, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s is not usable: %w", path, oneLine(err))
	}
	return cfg, nil
}

// loadRaw reads and parses the kubeconfig at path like clientcmd's loading
// rules for an explicit path, but with a size limit: clientcmd would read
// a file of any size into memory.
func loadRaw(path string) (*clientcmdapi.Config, error) {
	data, err := atomicfile.ReadFile(path)
	if err != nil {
		var tooLarge *atomicfile.TooLargeError
		var notRegular *atomicfile.NotRegularError
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("kubeconfig %s does not exist", path)
		case errors.As(err, &tooLarge) || errors.As(err, &notRegular):
			return nil, fmt.Errorf("kubeconfig %w", err)
		}
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	raw, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s cannot be parsed: %w", path, oneLine(err))
	}
	// Relative paths in the file are resolved against the file's
	// directory, as kubectl and the loading rules do.
	for _, c := range raw.Clusters {
		c.LocationOfOrigin = path
	}
	for _, a := range raw.AuthInfos {
		a.LocationOfOrigin = path
	}
	for _, c := range raw.Contexts {
		c.LocationOfOrigin = path
	}
	if err := clientcmd.ResolveLocalPaths(raw); err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return raw, nil
}

// InsecureWarning returns the one-line warning for a kubeconfig whose
// cluster skips TLS verification of the API server, or "" when it does
// not (or cfg is nil). what names the file's role, e.g. "bootstrap
// kubeconfig". It is pure.
func InsecureWarning(cfg *rest.Config, what, path string) string {
	if cfg == nil || !cfg.Insecure {
		return ""
	}
	return fmt.Sprintf("%s %s sets insecure-skip-tls-verify: its credentials travel over a connection that does not verify the API server, so anyone on the path can take them; set certificate-authority(-data) instead", what, path)
}

// ReadableWarnings returns one line for each file of the kubeconfig at
// path, loaded as cfg, that holds a credential and that its group or
// everyone may read: the kubeconfig itself when it embeds a token, a client
// key or a password, and the client key file and token file it names. Any
// local user who can read such a file can authenticate as its user (for a
// bootstrap kubeconfig: request certificates for new nodes). what names
// the file's role, e.g. "bootstrap kubeconfig". It only stats the files
// (following links: the certificate store's -current.pem is one); a file
// that cannot be stated is not warned about, its reader reports it. The
// lines name the file and the chmod that fixes it, never the credential.
func ReadableWarnings(cfg *rest.Config, what, path string) []string {
	if cfg == nil {
		return nil
	}
	var out []string
	warn := func(file, label, holds string) {
		fi, err := os.Stat(file)
		if err != nil || fi.Mode().Perm()&0o044 == 0 {
			return
		}
		out = append(out, fmt.Sprintf("%s is readable by its group or everyone (mode %04o) and holds %s: any local user who can read it can authenticate as its user; make it private with 'chmod 600 %s'",
			label, fi.Mode().Perm(), holds, file))
	}
	// clientcmd reads a token file into BearerToken too: the token is
	// embedded only when no file is named.
	switch {
	case cfg.BearerToken != "" && cfg.BearerTokenFile == "":
		warn(path, what+" "+path, "a token")
	case len(cfg.KeyData) > 0:
		warn(path, what+" "+path, "a client key")
	case cfg.Password != "":
		warn(path, what+" "+path, "a password")
	}
	if cfg.KeyFile != "" {
		warn(cfg.KeyFile, "client key "+cfg.KeyFile+" (of "+what+" "+path+")", "a private key")
	}
	if cfg.BearerTokenFile != "" {
		warn(cfg.BearerTokenFile, "token file "+cfg.BearerTokenFile+" (of "+what+" "+path+")", "a token")
	}
	return out
}

// CAPool returns the certificate authorities cfg trusts for the API
// server (CAData, else CAFile read with the size limit), or nil when it
// names none (system roots, or insecure-skip-tls-verify). The error names
// the CA file when it cannot be read, and says so when the data holds no
// PEM certificate. It only reads and is safe for concurrent use.
func CAPool(cfg *rest.Config) (*x509.CertPool, error) {
	data := cfg.CAData
	if len(data) == 0 && cfg.CAFile != "" {
		var err error
		if data, err = atomicfile.ReadFile(cfg.CAFile); err != nil {
			return nil, fmt.Errorf("reading the certificate authority: %w", err)
		}
	}
	if len(data) == 0 {
		return nil, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, errors.New("the certificate authority data holds no PEM certificate")
	}
	return pool, nil
}

// LoadUsable loads the kubeconfig at path (see Load) and reports whether it
// can be used as a node's identity without contacting the server: its
// client certificate and key load and belong together, and every
// certificate of the chain is inside its validity window at now. When
// usable it returns the REST config and the leaf of the client
// certificate. Otherwise the error says why, on one line naming the file:
// it wraps fs.ErrNotExist when the kubeconfig does not exist and
// fs.ErrPermission when it may not be read, so that a caller can tell
// "bootstrap" from "fix the file". It reads files only (with the size
// limit of Load) and is safe for concurrent use.
func LoadUsable(path string, now time.Time) (*rest.Config, *x509.Certificate, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	cfg, err := Load(path)
	if err != nil {
		return nil, nil, err
	}
	leaf, err := checkClientCertificate(cfg, now)
	if err != nil {
		return nil, nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return cfg, leaf, nil
}

// checkClientCertificate checks the client certificate of cfg as
// LoadUsable does and returns its leaf.
func checkClientCertificate(cfg *rest.Config, now time.Time) (*x509.Certificate, error) {
	certPEM, keyPEM, err := clientCredentials(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("client certificate and key do not form a pair: %w", err)
	}
	certs, err := csr.ParseCertificatesPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	for _, c := range certs {
		if now.Before(c.NotBefore) {
			return nil, fmt.Errorf("client certificate %q is not valid before %s", c.Subject.CommonName, c.NotBefore.UTC().Format(time.RFC3339))
		}
		if now.After(c.NotAfter) {
			return nil, fmt.Errorf("client certificate %q expired at %s", c.Subject.CommonName, c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	return certs[0], nil
}

func clientCredentials(cfg *rest.Config) (certPEM, keyPEM []byte, err error) {
	certPEM, keyPEM = cfg.CertData, cfg.KeyData
	if len(certPEM) == 0 && cfg.CertFile != "" {
		if certPEM, err = atomicfile.ReadFile(cfg.CertFile); err != nil {
			return nil, nil, fmt.Errorf("reading client certificate: %w", err)
		}
	}
	if len(keyPEM) == 0 && cfg.KeyFile != "" {
		if keyPEM, err = atomicfile.ReadFile(cfg.KeyFile); err != nil {
			return nil, nil, fmt.Errorf("reading client key: %w", err)
		}
	}
	if len(certPEM) == 0 || len(keyPEM) == 0 {
		return nil, nil, errors.New("no client certificate and key")
	}
	return certPEM, keyPEM, nil
}

// Node returns the kubeconfig of a node whose identity is the certificate
// and key at pemPath, for the cluster cluster describes: its server, CA
// (file or data), TLS server name and insecure flag. Names follow the
// kubelet's. Nothing of cluster's credentials is copied. It is pure.
func Node(cluster *rest.Config, pemPath string) *clientcmdapi.Config {
	var caData []byte
	if cluster.CAFile == "" {
		caData = cluster.CAData
	}
	return &clientcmdapi.Config{
		Clusters: map[string]*clientcmdapi.Cluster{"default-cluster": {
			Server:                   cluster.Host,
			InsecureSkipTLSVerify:    cluster.Insecure,
			CertificateAuthority:     cluster.CAFile,
			CertificateAuthorityData: caData,
			TLSServerName:            cluster.ServerName,
		}},
		AuthInfos: map[string]*clientcmdapi.AuthInfo{"default-auth": {
			ClientCertificate: pemPath,
			ClientKey:         pemPath,
		}},
		Contexts: map[string]*clientcmdapi.Context{"default-context": {
			Cluster:   "default-cluster",
			AuthInfo:  "default-auth",
			Namespace: "default",
		}},
		CurrentContext: "default-context",
	}
}

// Write writes cfg to path atomically with mode 0600, creating the
// directory with mode 0700 if it is missing and refusing a directory its
// group or everyone can write to (a one-line error that names it, its mode
// and the chmod that makes it private). File paths in cfg are made
// absolute first, so the kubeconfig works from any working directory. An
// identical private file is left as it is. On error the file at path is as
// it was; the error of a failed write names path and wraps its cause:
// errors.Is(err, syscall.ENOSPC) (or EDQUOT) reports a full file system,
// and the message then says to free space there.
// Temporary files that a killed Write left next to path are removed. Two
// concurrent Writes of one path leave one of the two contents, whole; the
// other may fail.
func Write(path string, cfg *clientcmdapi.Config) error {
	cfg = cfg.DeepCopy()
	for _, c := range cfg.Clusters {
		if err := absolute(&c.CertificateAuthority); err != nil {
			return err
		}
	}
	for _, a := range cfg.AuthInfos {
		if err := absolute(&a.ClientCertificate); err != nil {
			return err
		}
		if err := absolute(&a.ClientKey); err != nil {
			return err
		}
	}
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("encoding kubeconfig %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("kubeconfig: creating directory: %w", err)
	}
	if err := atomicfile.CheckDir(dir, "kubeconfig directory"); err != nil {
		return err
	}
	// A write killed before its rename left a temporary file that nothing
	// else removes. Best effort: failing to tidy up must not fail a write.
	_ = atomicfile.RemoveTemps(path)
	// A node re-bootstrapping usually writes what is already there: skip
	// the write (and its fsyncs) when the file is private and identical.
	// Anything else (a link, another owner, a wider mode) is replaced by
	// the atomic write, never chmodded in place.
	if old, err := atomicfile.ReadPrivateFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	return nil
}

func absolute(p *string) error {
	if *p == "" || filepath.IsAbs(*p) {
		return nil
	}
	abs, err := filepath.Abs(*p)
	if err != nil {
		return err
	}
	*p = abs
	return nil
}

// oneLine keeps client-go's multi-line aggregate errors on one line.
func oneLine(err error) error {
	if !strings.Contains(err.Error(), "\n") {
		return err
	}
	return errors.New(strings.Join(strings.Fields(err.Error()), " "))
}
