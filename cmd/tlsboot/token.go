package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"

	"github.com/tlsboot/tlsboot/discovery"
	"github.com/tlsboot/tlsboot/internal/atomicfile"
	"github.com/tlsboot/tlsboot/token"
)

// defaultAdminKubeconfig is kubeadm's admin kubeconfig.
const defaultAdminKubeconfig = "/etc/kubernetes/admin.conf"

func addAdminKubeconfigFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVar(p, "kubeconfig", defaultAdminKubeconfig, "kubeconfig of a cluster administrator")
}

// admin is a client for the cluster of an admin kubeconfig.
type admin struct {
	path   string
	config *rest.Config
	client kubernetes.Interface
}

func loadAdmin(path string) (*admin, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, usageError{fmt.Errorf("cannot read the admin kubeconfig %s (%v): pass --kubeconfig", path, errors.Unwrap(err))}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("admin kubeconfig %s: %v", path, oneLine(err))
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("admin kubeconfig %s: %v", path, oneLine(err))
	}
	return &admin{path: path, config: cfg, client: client}, nil
}

// caPEM returns the CA the admin kubeconfig trusts: the CA that setup
// publishes and that join pins.
func (a *admin) caPEM() ([]byte, error) {
	data := a.config.CAData
	if len(data) == 0 && a.config.CAFile != "" {
		var err error
		if data, err = atomicfile.ReadFile(a.config.CAFile); err != nil {
			return nil, fmt.Errorf("reading the CA of admin kubeconfig %s: %v", a.path, err)
		}
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("admin kubeconfig %s names no CA (certificate-authority or certificate-authority-data): nodes need the cluster CA to verify the API server; add it", a.path)
	}
	if _, err := certutil.ParseCertsPEM(data); err != nil {
		return nil, fmt.Errorf("the CA of admin kubeconfig %s does not parse: %v", a.path, err)
	}
	return data, nil
}

// pins returns the pins of the admin kubeconfig's CA certificates.
func (a *admin) pins() ([]discovery.Pin, error) {
	data, err := a.caPEM()
	if err != nil {
		return nil, err
	}
	certs, _ := certutil.ParseCertsPEM(data)
	var pins []discovery.Pin
	for _, c := range certs {
		pins = append(pins, discovery.PinOf(c))
	}
	return pins, nil
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

func newTokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and delete bootstrap tokens (kubeadm's format)",
		Long: `Manage bootstrap tokens: Secrets bootstrap-token-<id> of type bootstrap.kubernetes.io/token in
kube-system, the format of kubeadm, so that kubeadm and tlsboot can use each other's tokens.

A token "<id>.<secret>" authenticates as system:bootstrap:<id> with its extra groups, and
kube-controller-manager's bootstrapsigner signs cluster-info with it so that 'tlsboot join'
(and 'kubeadm join') can discover the cluster. --node-name binds the token to one node, which
'tlsboot approver' enforces (see docs/join.md).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newTokenCreateCommand(), newTokenListCommand(), newTokenDeleteCommand())
	return cmd
}

// noArgs is cobra.NoArgs as a usage error that does not repeat the
// arguments (one may be a token).
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("%s takes no arguments, got %d (see '%s --help')", cmd.CommandPath(), len(args), cmd.CommandPath())}
	}
	return nil
}

type tokenCreateFlags struct {
	kubeconfig, description, nodeName, server, tokenFile string
	ttl                                                  time.Duration
	groups, usages                                       []string
	printJoin, allowNoExpiry                             bool
}

func newTokenCreateCommand() *cobra.Command {
	var f tokenCreateFlags
	cmd := &cobra.Command{
		Use:   "create [TOKEN | --token-file FILE] [--ttl 24h] [--description TEXT] [--groups G,...] [--node-name NAME] [--print-join-command]",
		Short: "Create a bootstrap token and print it (or the join command)",
		Long: `Create a bootstrap token and print it on stdout, or with --print-join-command a complete
'tlsboot join' command with the cluster CA's pin.

TOKEN, if given, must be [a-z0-9]{6}.[a-z0-9]{16}; by default one is generated. With --node-name
the token carries a binding to that node (an extra group) and its default TTL is 1h instead of
24h. 'tlsboot approver' enforces it: a client certificate request from the token for any other
node is denied (TokenBoundToOtherNode), and so is a second key (TokenAlreadyUsed). The binding
holds only if 'tlsboot approver' is the cluster's only approver of client certificates:
kube-controller-manager's csrapproving ignores it (run it with --controllers=...,-csrapproving;
docs/join.md). --ttl 0 never expires; an unbound token that never expires lets whoever finds it
join nodes under any name until someone deletes it, so it needs --allow-no-expiry as well (kubeadm's
'token create --ttl 0' needs no such flag; the token made is the same). TOKEN on the command line
is visible to other local users while the command runs: --token-file FILE reads it from a private
file instead.`,
		Example: `  tlsboot token create --print-join-command
  tlsboot token create --node-name worker-1.example.com --print-join-command
  tlsboot token create --ttl 2h --description "rack 4" --groups system:bootstrappers:rack4`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError{fmt.Errorf("token create takes at most one TOKEN, got %d arguments", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			src := tokenSources{argsName: "TOKEN", file: f.tokenFile, stdin: cmd.InOrStdin()}
			if len(args) == 1 {
				src.args, src.argsGiven = args[0], true
			}
			given, from, err := src.resolve()
			if err != nil {
				return err
			}
			spec, err := f.spec(cmd.Flags().Changed("ttl"), given, from != tokenFromNone, time.Now())
			if err != nil {
				return err
			}
			a, err := loadAdmin(f.kubeconfig)
			if err != nil {
				return err
			}
			var join string
			if f.printJoin { // before creating: a token without its join command is of no use here
				if join, err = joinCommand(cmd.Context(), a, f.server, spec); err != nil {
					return err
				}
			}
			if err := token.Create(cmd.Context(), a.client, spec); err != nil {
				return err
			}
			out := spec.Token.Value()
			if f.printJoin {
				out = join
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), out)
			return err
		},
	}
	fs := cmd.Flags()
	addAdminKubeconfigFlag(fs, &f.kubeconfig)
	fs.DurationVar(&f.ttl, "ttl", token.DefaultTTL, "how long the token is valid; 0 never expires (needs --allow-no-expiry without --node-name) (default 1h with --node-name)")
	fs.BoolVar(&f.allowNoExpiry, "allow-no-expiry", false, "allow --ttl 0 for a token not bound to a node: it never expires, so whoever finds it can join nodes until it is deleted")
	fs.StringVar(&f.tokenFile, "token-file", "", "create the token ID.SECRET held in this file (mode 0600) instead of a random one; - reads one line of stdin")
	fs.StringVar(&f.description, "description", "", "a description of how the token is used, shown by token list")
	fs.StringSliceVar(&f.groups, "groups", []string{token.DefaultGroup}, "extra groups the token authenticates as; each must match "+`system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]`)
	fs.StringSliceVar(&f.usages, "usages", token.DefaultUsages, "how the token may be used: signing (discovery), authentication")
	fs.StringVar(&f.nodeName, "node-name", "", "bind the token to this node: tlsboot approver refuses it for any other node, and for a second key (see docs/join.md)")
	fs.BoolVar(&f.printJoin, "print-join-command", false, "print the 'tlsboot join' command (with the token and the CA pin) instead of the token")
	fs.StringVar(&f.server, "server", "", "API server address for the join command (default: the server in cluster-info, else the admin kubeconfig's)")
	return cmd
}

// spec turns the flags and the given token (if given, else a random one)
// into a token spec, or a usage error.
func (f *tokenCreateFlags) spec(ttlSet bool, tok token.Token, given bool, now time.Time) (token.Spec, error) {
	if !given {
		var err error
		if tok, err = token.Generate(); err != nil {
			return token.Spec{}, err
		}
	}
	ttl := f.ttl
	if f.nodeName != "" && !ttlSet {
		ttl = token.BoundTTL
	}
	switch {
	case ttl < 0:
		return token.Spec{}, usageError{fmt.Errorf("--ttl %s is negative", ttl)}
	case ttl == 0 && f.nodeName == "" && !f.allowNoExpiry:
		// kubeadm creates such a token without asking; the format is the
		// same, only this command wants the choice spelt out.
		return token.Spec{}, usageError{errors.New("--ttl 0 makes a token that never expires, and without --node-name whoever finds it can join nodes under any name until it is deleted: give a --ttl (e.g. 24h), bind it with --node-name, or add --allow-no-expiry if that is meant")}
	case f.allowNoExpiry && ttl != 0:
		return token.Spec{}, usageError{fmt.Errorf("--allow-no-expiry is for --ttl 0, but the token expires after %s: drop --allow-no-expiry, or pass --ttl 0", ttl)}
	}
	spec := token.Spec{Token: tok, Description: f.description, Usages: f.usages, Groups: f.groups, NodeName: f.nodeName}
	if ttl > 0 {
		spec.Expires = now.Add(ttl)
	}
	if err := spec.Validate(); err != nil {
		return token.Spec{}, usageError{err}
	}
	return spec, nil
}

// joinCommand returns the join command for spec: the server nodes should
// use (cluster-info's, as published by setup) and the admin CA's pins.
func joinCommand(ctx context.Context, a *admin, server string, spec token.Spec) (string, error) {
	pins, err := a.pins()
	if err != nil {
		return "", err
	}
	if server == "" {
		server = a.config.Host
		cm, err := a.client.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, "cluster-info", metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return "", fmt.Errorf("the cluster has no ConfigMap kube-public/cluster-info, so 'tlsboot join' cannot discover it: run 'tlsboot setup --kubeconfig %s' first", a.path)
		case err != nil:
			return "", fmt.Errorf("reading kube-public/cluster-info: %v", oneLine(err))
		}
		if cfg, err := clientcmd.Load([]byte(cm.Data["kubeconfig"])); err == nil {
			for _, c := range cfg.Clusters {
				server = c.Server
			}
		}
	}
	if _, err := discovery.ServerURL(server); err != nil {
		return "", usageError{fmt.Errorf("--server: %w", err)}
	}
	parts := []string{"tlsboot join", server, "--token", spec.Token.Value()}
	for _, p := range pins {
		parts = append(parts, "--discovery-token-ca-cert-hash", string(p))
	}
	if spec.NodeName != "" {
		parts = append(parts, "--node-name", spec.NodeName)
	}
	return strings.Join(parts, " "), nil
}

func newTokenListCommand() *cobra.Command {
	var kubeconfig, output string
	cmd := &cobra.Command{
		Use:   "list [-o json]",
		Short: "List the bootstrap tokens (IDs only: secrets are never printed)",
		Long: `List the bootstrap tokens in kube-system, with kubeadm's columns. Unlike kubeadm, the TOKEN
column shows only the public ID: a listing is no place for secrets ('tlsboot token delete ID'
takes it). Expired tokens (kube-controller-manager's tokencleaner deletes them) show "expired".`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" && output != "text" {
				return usageError{fmt.Errorf("-o %q: the output formats are text and json", output)}
			}
			a, err := loadAdmin(kubeconfig)
			if err != nil {
				return err
			}
			infos, err := token.List(cmd.Context(), a.client)
			if err != nil {
				return err
			}
			if output == "json" {
				return printTokensJSON(cmd.OutOrStdout(), infos, time.Now())
			}
			return printTokens(cmd.OutOrStdout(), infos, time.Now())
		},
	}
	addAdminKubeconfigFlag(cmd.Flags(), &kubeconfig)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func printTokens(w io.Writer, infos []token.Info, now time.Time) error {
	tw := tabwriter.NewWriter(w, 10, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "TOKEN\tTTL\tEXPIRES\tUSAGES\tDESCRIPTION\tEXTRA GROUPS")
	for _, i := range infos {
		ttl, expires := "<forever>", "<never>"
		if i.Expires != nil {
			expires = i.Expires.UTC().Format(time.RFC3339)
			ttl = duration.ShortHumanDuration(i.Expires.Sub(now))
		}
		if i.Expired(now) {
			ttl = "expired"
		}
		desc := i.Description
		if desc == "" {
			desc = "<none>"
		}
		if i.Problem != "" {
			desc += " (" + i.Problem + ")"
		}
		usages, groups := strings.Join(i.Usages, ","), strings.Join(i.Groups, ",")
		if usages == "" {
			usages = "<none>"
		}
		if groups == "" {
			groups = "<none>"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", i.ID, ttl, expires, usages, oneLine(errors.New(desc)), groups)
	}
	return tw.Flush()
}

// tokenJSON is one token in 'token list -o json'.
type tokenJSON struct {
	token.Info
	Expired bool `json:"expired"`
}

func printTokensJSON(w io.Writer, infos []token.Info, now time.Time) error {
	out := struct {
		Tokens []tokenJSON `json:"tokens"`
	}{Tokens: []tokenJSON{}}
	for _, i := range infos {
		out.Tokens = append(out.Tokens, tokenJSON{Info: i, Expired: i.Expired(now)})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func newTokenDeleteCommand() *cobra.Command {
	var kubeconfig string
	cmd := &cobra.Command{
		Use:   "delete ID...",
		Short: "Delete bootstrap tokens by ID (or whole token)",
		Long: `Delete bootstrap tokens. Each argument is a token ID ("abcdef") or a whole token
("abcdef.0123456789abcdef"), as kubeadm accepts. Every argument is checked before anything is
deleted.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{errors.New("token delete needs at least one token ID (see 'tlsboot token list')")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var ids []string
			for _, arg := range args {
				id, err := token.ParseID(arg)
				if err != nil {
					return usageError{err}
				}
				ids = append(ids, id)
			}
			a, err := loadAdmin(kubeconfig)
			if err != nil {
				return err
			}
			for _, id := range ids {
				if err := token.Delete(cmd.Context(), a.client, id); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "bootstrap token %q deleted\n", id)
			}
			return nil
		},
	}
	addAdminKubeconfigFlag(cmd.Flags(), &kubeconfig)
	return cmd
}
