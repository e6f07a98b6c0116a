package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tlsboot/tlsboot/bootstrap"
	"github.com/tlsboot/tlsboot/internal/agent"
	"github.com/tlsboot/tlsboot/internal/status"
)

// errStatus marks a report that was printed but whose client certificate
// is not valid: exit 1 without repeating the report.
type errStatus struct{ err error }

func (e errStatus) Error() string { return e.err.Error() }

func newStatusCommand() *cobra.Command {
	var opts status.Options
	var output string
	cmd := &cobra.Command{
		Use:   "status --cert-dir DIR [--kubeconfig FILE] [-o text|json]",
		Short: "Explain the node's certificates and kubeconfig, offline",
		Long: `Show, for the client and the serving certificate of --cert-dir: subject, SANs, issuer,
validity, time left, when rotation is due, a pending temporary key (a bootstrap or renewal in
progress) and stale files; and whether --kubeconfig uses the client certificate and is usable.
Nothing is sent to the API server.

Exit status: 0 when the client certificate is valid, 1 when it is missing, expired, not yet
valid or unreadable (the report is printed anyway), 2 for bad flags.`,
		Example: `  tlsboot status --cert-dir /var/lib/kubelet/pki --kubeconfig /etc/kubernetes/kubelet.conf
  tlsboot status --cert-dir /var/lib/kubelet/pki -o json | jq .certificates[0].secondsLeft`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.CertDir == "" {
				return usageError{errors.New("missing required flag --cert-dir")}
			}
			if output != "text" && output != "json" {
				return usageError{fmt.Errorf("-o %q: want text or json", output)}
			}
			r, err := status.Collect(opts)
			if err != nil {
				return err
			}
			if err := write(cmd, r, output); err != nil {
				return err
			}
			if err := r.Err(); err != nil {
				return errStatus{err}
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&opts.CertDir, "cert-dir", "", "directory of the certificate store (required)")
	fs.StringVar(&opts.Kubeconfig, "kubeconfig", "", "node kubeconfig to check")
	fs.StringVar(&opts.ClientPrefix, "cert-prefix", bootstrap.DefaultCertPrefix, "prefix of the client certificate's files")
	fs.StringVar(&opts.ServingPrefix, "serving-prefix", agent.ServingPrefix, "prefix of the serving certificate's files")
	fs.DurationVar(&opts.RenewBefore, "renew-before", 0, "the agent's --renew-before, to show when rotation is due")
	fs.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func write(cmd *cobra.Command, r *status.Report, output string) error {
	if output == "json" {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return r.WriteText(cmd.OutOrStdout())
}
