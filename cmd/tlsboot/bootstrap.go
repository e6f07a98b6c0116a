package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tlsboot/tlsboot/bootstrap"
	"github.com/tlsboot/tlsboot/csr"
)

// bootstrapFlags are the flags of bootstrap, shared with run.
type bootstrapFlags struct {
	kubeconfig, bootstrapKubeconfig, certDir, nodeName, certPrefix, keyType, clientCAFile string
	waitTimeout, serverWait, expiration                                                   time.Duration
}

func (f *bootstrapFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.bootstrapKubeconfig, "bootstrap-kubeconfig", "", "kubeconfig with the bootstrap credentials (required)")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig to write for the node's own identity (required)")
	fs.StringVar(&f.certDir, "cert-dir", "", "directory of the certificate store (required)")
	fs.StringVar(&f.nodeName, "node-name", "", "node name; the certificate is for system:node:<name> (default: the host name, lower-cased)")
	fs.StringVar(&f.certPrefix, "cert-prefix", bootstrap.DefaultCertPrefix, "prefix of the file names in the certificate directory")
	fs.StringVar(&f.keyType, "key-type", string(csr.DefaultKeyType), "type of a new private key: "+joinKeyTypes())
	fs.DurationVar(&f.waitTimeout, "wait-timeout", bootstrap.DefaultWaitTimeout, "how long to wait for the certificate to be issued")
	fs.DurationVar(&f.serverWait, "server-wait", bootstrap.DefaultServerWait, "how long to wait for the API server to answer before trying anyway")
	fs.StringVar(&f.clientCAFile, "client-ca-file", "", "PEM file of the CA(s) of the kubelet client signer, which issued client certificates must also chain to (default: no chain check; the API server must always accept the certificate as system:node:<name> before it is stored)")
	fs.DurationVar(&f.expiration, "expiration", 0, fmt.Sprintf("requested certificate lifetime (spec.expirationSeconds, at least %v; default: the signer's)", csr.MinExpiration))
}

func joinKeyTypes() string {
	var s []string
	for _, t := range csr.KeyTypes() {
		s = append(s, string(t))
	}
	return strings.Join(s, ", ")
}

// options turns the flags into library options, or a usage error.
func (f *bootstrapFlags) options() (bootstrap.Options, error) {
	var missing []string
	for _, m := range []struct{ name, value string }{
		{"--bootstrap-kubeconfig", f.bootstrapKubeconfig}, {"--kubeconfig", f.kubeconfig}, {"--cert-dir", f.certDir},
	} {
		if m.value == "" {
			missing = append(missing, m.name)
		}
	}
	if len(missing) > 0 {
		return bootstrap.Options{}, usageError{fmt.Errorf("missing required flag %s", strings.Join(missing, ", "))}
	}
	keyType, err := csr.ParseKeyType(f.keyType)
	if err != nil {
		return bootstrap.Options{}, usageError{fmt.Errorf("--key-type: %w", err)}
	}
	if f.waitTimeout == 0 {
		// Zero would mean the library's default; on the command line it
		// is more likely a mistake than a wish for one hour.
		return bootstrap.Options{}, usageError{errors.New("--wait-timeout must be positive")}
	}
	node := f.nodeName
	if node == "" {
		host, err := os.Hostname()
		if err != nil {
			return bootstrap.Options{}, fmt.Errorf("cannot determine the node name from the host name (%v): pass --node-name", err)
		}
		node = strings.ToLower(host)
	}
	opts := bootstrap.Options{
		KubeconfigPath:          f.kubeconfig,
		BootstrapKubeconfigPath: f.bootstrapKubeconfig,
		CertDir:                 f.certDir,
		NodeName:                node,
		CertPrefix:              f.certPrefix,
		KeyType:                 keyType,
		WaitTimeout:             f.waitTimeout,
		ServerWait:              f.serverWait,
		Expiration:              f.expiration,
		ClientCAFile:            f.clientCAFile,
	}
	if err := opts.Validate(); err != nil {
		return bootstrap.Options{}, invalidOptions(err)
	}
	return opts, nil
}

// invalidOptions turns the error of a library's Validate into a usage
// error, naming the flag when the error's type says which one it is.
func invalidOptions(err error) error {
	var exp *csr.ExpirationError
	var roots *csr.RootsError
	switch {
	case errors.As(err, &exp):
		return usageError{fmt.Errorf("--expiration: %w", exp)}
	case errors.As(err, &roots):
		return usageError{fmt.Errorf("--client-ca-file: %w: pass a PEM file of the CA that signs kubelet client certificates", roots.Err)}
	}
	return usageError{err}
}

func newBootstrapCommand() *cobra.Command {
	var f bootstrapFlags
	cmd := &cobra.Command{
		Use:   "bootstrap --bootstrap-kubeconfig FILE --kubeconfig FILE --cert-dir DIR [--node-name NAME]",
		Short: "Request the node's client certificate once and write a kubeconfig that uses it",
		Long: `Turn bootstrap credentials into the node's own client certificate, as the kubelet does.

If --kubeconfig already holds a usable client certificate, nothing is done. Otherwise a
private key is loaded or created in --cert-dir, a CertificateSigningRequest for
system:node:<node-name> is created (or, after an interrupted run, found again), and once it
is approved and signed the certificate is stored in --cert-dir and --kubeconfig is written.
Files are kubelet-compatible: <prefix>-<time>.pem, <prefix>-current.pem, <prefix>.key.tmp.`,
		Example: `  tlsboot bootstrap --bootstrap-kubeconfig /etc/kubernetes/bootstrap-kubelet.conf \
    --kubeconfig /etc/kubernetes/kubelet.conf --cert-dir /var/lib/kubelet/pki`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := f.options()
			if err != nil {
				return err
			}
			start := time.Now()
			res, err := bootstrap.Run(cmd.Context(), opts)
			if err != nil {
				return explainFailure(interrupted(cmd.Context(), err, opts))
			}
			return printResult(cmd.OutOrStdout(), res, time.Since(start))
		},
	}
	f.register(cmd)
	return cmd
}

// explainFailure adds to a typed failure of the library what only the
// command knows: its flags.
func explainFailure(err error) error {
	var timeout *csr.TimeoutError
	switch {
	case errors.As(err, &timeout):
		return fmt.Errorf("%w, or raise --wait-timeout", err)
	case errors.Is(err, bootstrap.ErrWaitTimeout):
		return fmt.Errorf("%w; raise --wait-timeout to keep trying longer", err)
	}
	return err
}

// interrupted replaces the error of a run stopped by a signal with what the
// operator needs to know.
func interrupted(ctx context.Context, err error, opts bootstrap.Options) error {
	if ctx.Err() == nil {
		return err
	}
	return fmt.Errorf("interrupted: nothing was stored; the key in %s is kept, run again to resume with the same key and CSR", opts.CertDir)
}

func printResult(w io.Writer, res *bootstrap.Result, took time.Duration) error {
	subject, expiry := "", ""
	if c := res.Certificate; c != nil {
		subject = c.Subject.CommonName
		expiry = fmt.Sprintf("valid until %s (%s left)", c.NotAfter.UTC().Format(time.RFC3339), time.Until(c.NotAfter).Round(time.Second))
	}
	tookText := took.Round(100 * time.Microsecond).String()
	var err error
	if !res.Bootstrapped {
		_, err = fmt.Fprintf(w, "kubeconfig %s is usable (%s, %s): nothing to do (took %s)\n", res.KubeconfigPath, subject, expiry, tookText)
		return err
	}
	how := "issued"
	if res.Reattached {
		how = "issued (resumed an earlier request)"
	}
	_, err = fmt.Fprintf(w, "certificate for %s %s by CSR %s, %s (took %s)\n  certificate: %s\n  kubeconfig:  %s\n",
		subject, how, res.CSRName, expiry, tookText, res.CertPath, res.KubeconfigPath)
	return err
}
