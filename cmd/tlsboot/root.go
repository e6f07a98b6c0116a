package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/internal/version"
)

// usageError marks an error in how the command was invoked (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "tlsboot",
		Short: "Kubernetes TLS bootstrapping and certificate lifecycle for nodes and node agents",
		Long: `tlsboot turns a bootstrap token into a node's own client certificate and kubeconfig,
the way the kubelet does, and keeps that identity valid.

Commands:
  approver    approve or deny node client and serving CSRs (a controller for the cluster)
  bootstrap   request a node client certificate once and write a kubeconfig that uses it
  join        discover the cluster from an address, a bootstrap token and a CA pin, then bootstrap
  run         keep the node's certificates valid: bootstrap, rotate, recover (the agent)
  setup       prepare a cluster for token discovery and TLS bootstrapping (idempotent)
  status      explain the node's certificates and kubeconfig (offline)
  token       create, list and delete bootstrap tokens (kubeadm's format)
  version     print the version`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Without these cobra reports an unknown command as a failure
		// (exit 1) rather than as a usage error.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			hint := "see 'tlsboot --help'"
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				hint = "did you mean " + s[0] + "?"
			}
			return usageError{fmt.Errorf("unknown command %q (%s)", args[0], hint)}
		},
		RunE:                       func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		SuggestionsMinimumDistance: 2,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
	// klog's verbosity flags; its output goes to stderr.
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	for _, name := range []string{"v", "vmodule"} {
		root.PersistentFlags().AddGoFlag(klogFlags.Lookup(name))
	}
	root.AddCommand(newVersionCommand(), newBootstrapCommand(), newRunCommand(), newStatusCommand(), newApproverCommand())
	root.AddCommand(newSetupCommand())
	root.AddCommand(newTokenCommand())
	root.AddCommand(newJoinCommand())
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of tlsboot",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), version.String())
			return err
		},
	}
}
