// Package status explains a node's TLS identity from its files alone: each
// certificate of the store (client, serving), when it is due for rotation,
// unfinished requests, stale files, and whether the kubeconfig uses the
// client certificate and would work. It never contacts the API server.
package status

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/tlsboot/tlsboot/bootstrap"
	"github.com/tlsboot/tlsboot/certstore"
	"github.com/tlsboot/tlsboot/internal/agent"
	"github.com/tlsboot/tlsboot/kubeconfig"
	"github.com/tlsboot/tlsboot/rotation"
)

// States of a certificate.
const (
	StateValid       = "valid"
	StateExpired     = "expired"
	StateNotYetValid = "not_yet_valid"
	StateMissing     = "missing"
	StateUnreadable  = "unreadable"
)

// Options says where to look.
type Options struct {
	CertDir      string
	ClientPrefix string // default bootstrap.DefaultCertPrefix
	// ServingPrefix, default agent.ServingPrefix.
	ServingPrefix string
	// Kubeconfig, if set, is checked too.
	Kubeconfig string
	// RenewBefore is the agent's --renew-before, for the rotation window.
	RenewBefore time.Duration
	// Now is the time of the report; zero means time.Now().
	Now time.Time
}

// Report is the node's identity at a glance. Its JSON form is stable.
type Report struct {
	Time         time.Time     `json:"time"`
	CertDir      string        `json:"certDir"`
	Certificates []Certificate `json:"certificates"`
	Kubeconfig   *Kubeconfig   `json:"kubeconfig,omitempty"`
}

// Certificate describes one certificate of the store.
type Certificate struct {
	Name           string    `json:"name"` // client or serving
	Path           string    `json:"path"` // <prefix>-current.pem
	State          string    `json:"state"`
	Error          string    `json:"error,omitempty"`
	Subject        string    `json:"subject,omitempty"`
	Issuer         string    `json:"issuer,omitempty"`
	DNSNames       []string  `json:"dnsNames,omitempty"`
	IPAddresses    []string  `json:"ipAddresses,omitempty"`
	NotBefore      time.Time `json:"notBefore,omitzero"`
	NotAfter       time.Time `json:"notAfter,omitzero"`
	SecondsLeft    int64     `json:"secondsLeft,omitempty"`
	RotationFrom   time.Time `json:"rotationFrom,omitzero"` // earliest jittered deadline
	RotationBy     time.Time `json:"rotationBy,omitzero"`   // latest
	PendingKey     string    `json:"pendingKey,omitempty"`  // <prefix>.key.tmp: a request in progress
	StaleFiles     []string  `json:"staleFiles,omitempty"`  // older pair files, kept for rollback
	KubeconfigUses *bool     `json:"kubeconfigUses,omitempty"`
}

// Kubeconfig describes the node kubeconfig.
type Kubeconfig struct {
	Path       string `json:"path"`
	Server     string `json:"server,omitempty"`
	ClientCert string `json:"clientCertificate,omitempty"`
	UsesStore  bool   `json:"usesStore"` // its client certificate is the store's -current.pem
	Usable     bool   `json:"usable"`    // loads, pair matches, inside validity (offline)
	Error      string `json:"error,omitempty"`
}

// Collect builds the report.
func Collect(opts Options) (*Report, error) {
	if opts.CertDir == "" {
		return nil, errors.New("the certificate directory is required")
	}
	if opts.ClientPrefix == "" {
		opts.ClientPrefix = bootstrap.DefaultCertPrefix
	}
	if opts.ServingPrefix == "" {
		opts.ServingPrefix = agent.ServingPrefix
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if _, err := os.Stat(opts.CertDir); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("certificate directory %s does not exist: pass the --cert-dir that tlsboot run or the kubelet uses", opts.CertDir)
	} else if err != nil {
		return nil, fmt.Errorf("certificate directory: %w", err)
	}
	dir, _ := filepath.Abs(opts.CertDir)
	r := &Report{Time: opts.Now.UTC(), CertDir: dir}
	for _, c := range []struct{ name, prefix string }{{"client", opts.ClientPrefix}, {"serving", opts.ServingPrefix}} {
		r.Certificates = append(r.Certificates, certificate(dir, c.name, c.prefix, opts))
	}
	if opts.Kubeconfig != "" {
		k := kubeconfigReport(opts.Kubeconfig, r.Certificates[0].Path, opts.Now)
		r.Kubeconfig = &k
		r.Certificates[0].KubeconfigUses = &k.UsesStore
	}
	return r, nil
}

// Client returns the client certificate's entry.
func (r *Report) Client() Certificate { return r.Certificates[0] }

// Err returns nil when the client certificate is valid, else why not: the
// exit status of `tlsboot status`.
func (r *Report) Err() error {
	c := r.Client()
	if c.State == StateValid {
		return nil
	}
	msg := fmt.Sprintf("client certificate %s is %s", c.Path, c.State)
	if c.Error != "" {
		msg += ": " + c.Error
	}
	return errors.New(msg)
}

// certificate inspects one prefix of the store through certstore's
// read-only functions: Open would repair the directory; status only looks.
// A legacy <prefix>.crt/.key pair is read as the store reads it, and Path
// is then the legacy certificate.
func certificate(dir, name, prefix string, opts Options) Certificate {
	current := certstore.CurrentPath(dir, prefix)
	c := Certificate{Name: name, Path: current}
	// An error here (the directory cannot be searched) also makes
	// ReadCurrent fail, which the report says; it is not said twice.
	if found, _ := certstore.HasPendingKey(dir, prefix); found {
		c.PendingKey = certstore.PendingKeyPath(dir, prefix)
	}
	c.StaleFiles = stale(dir, prefix, current)
	cert, path, err := certstore.ReadCurrent(dir, prefix)
	switch {
	case errors.Is(err, certstore.ErrNoCertificate):
		c.State = StateMissing
		return c
	case err != nil:
		c.State, c.Error = StateUnreadable, err.Error()
		return c
	}
	c.Path = path
	// Zero when unknown, as the Manager takes it (rotation.Plan then
	// assumes a backdated certificate).
	storedAt, _ := certstore.StoredAt(dir, prefix)
	describe(&c, cert.Leaf, storedAt, opts)
	return c
}

// describe fills c from leaf, stored at storedAt (zero: unknown).
func describe(c *Certificate, leaf *x509.Certificate, storedAt time.Time, opts Options) {
	c.Subject, c.Issuer = leaf.Subject.String(), leaf.Issuer.String()
	c.DNSNames = leaf.DNSNames
	for _, ip := range leaf.IPAddresses {
		c.IPAddresses = append(c.IPAddresses, net.IP(ip).String())
	}
	c.NotBefore, c.NotAfter = leaf.NotBefore.UTC(), leaf.NotAfter.UTC()
	c.SecondsLeft = int64(leaf.NotAfter.Sub(opts.Now) / time.Second)
	switch {
	case opts.Now.Before(leaf.NotBefore):
		c.State = StateNotYetValid
	case opts.Now.After(leaf.NotAfter):
		c.State = StateExpired
	default:
		c.State = StateValid
	}
	p := rotation.Policy{RenewBefore: opts.RenewBefore}
	c.RotationFrom = rotation.Plan(leaf.NotBefore, leaf.NotAfter, storedAt, p, 0).Deadline.UTC()
	c.RotationBy = rotation.Plan(leaf.NotBefore, leaf.NotAfter, storedAt, p, 1).Deadline.UTC()
}

// stale lists the prefix's timestamped pair files other than the current one.
func stale(dir, prefix, current string) []string {
	files, err := certstore.PairFiles(dir, prefix)
	if err != nil {
		return nil
	}
	target, _ := filepath.EvalSymlinks(current)
	var out []string
	for _, f := range files {
		if f != target {
			out = append(out, f)
		}
	}
	return out
}

func kubeconfigReport(path, clientPath string, now time.Time) Kubeconfig {
	k := Kubeconfig{Path: path}
	cfg, err := kubeconfig.Load(path)
	if err != nil {
		k.Error = err.Error()
		return k
	}
	k.Server, k.ClientCert = cfg.Host, cfg.CertFile
	if abs, err := filepath.Abs(cfg.CertFile); err == nil && cfg.CertFile != "" {
		k.UsesStore = abs == clientPath
	}
	if _, _, err := kubeconfig.LoadUsable(path, now); err != nil {
		k.Error = err.Error()
		return k
	}
	k.Usable = true
	return k
}
