package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	tokenutil "k8s.io/cluster-bootstrap/token/util"

	"github.com/tlsboot/tlsboot/bootstrap"
	"github.com/tlsboot/tlsboot/discovery"
	"github.com/tlsboot/tlsboot/internal/agent"
	"github.com/tlsboot/tlsboot/kubeconfig"
	"github.com/tlsboot/tlsboot/token"
)

// Where join writes by default: the paths of deploy/systemd/tlsboot.service,
// so that the unit's 'tlsboot run' recovers from what join wrote.
const (
	defaultJoinBootstrapKubeconfig = "/etc/kubernetes/bootstrap-kubelet.conf"
	defaultJoinKubeconfig          = "/var/lib/tlsboot/kubelet.conf"
	defaultJoinCertDir             = "/var/lib/kubelet/pki"
)

type joinFlags struct {
	token                    string
	pins                     []string
	unsafeSkipCAVerification bool
	timeout                  time.Duration
	run                      bool
}

func newJoinCommand() *cobra.Command {
	var (
		j joinFlags
		b bootstrapFlags
		r runFlags
	)
	cmd := &cobra.Command{
		Use:   "join SERVER --token ID.SECRET --discovery-token-ca-cert-hash sha256:HEX [flags]",
		Short: "Discover the cluster from a token and a CA pin, then bootstrap the node",
		Long: `Join a node the way 'kubeadm join' discovers a cluster, then bootstrap it as 'tlsboot bootstrap'.

SERVER is HOST:PORT or https://HOST:PORT of the API server. The steps, each of which must pass:
  1. fetch the public ConfigMap kube-public/cluster-info anonymously, trusting nothing yet;
  2. verify its signature for the token's ID with the token's secret (a signature not there
     yet is waited for until --discovery-timeout; every other failure stops at once);
  3. parse the kubeconfig inside it;
  4. check that its CA's public key matches a --discovery-token-ca-cert-hash;
  5. fetch cluster-info again verifying TLS with that CA only, and require the same content
     (this stops a man in the middle who knows the token);
  6. write --bootstrap-kubeconfig (mode 0600) with the server, the pinned CA and the token,
     and bootstrap: request the node's client certificate and write --kubeconfig.
Nothing is written unless discovery succeeds. With --run, join then continues as 'tlsboot run'.

The pin is printed by 'tlsboot token create --print-join-command' (or kubeadm's), and is the
SHA-256 of the CA's public key. Without it, anyone who knows the token and sits between the
node and the API server could impersonate the cluster: --discovery-token-unsafe-skip-ca-verification
accepts that risk, loudly. The token's secret is never logged or printed.`,
		Example: `  tlsboot join 10.0.0.1:6443 --token abcdef.0123456789abcdef \
    --discovery-token-ca-cert-hash sha256:8b1a9953c4611296a827abf8c47804d7e6c49c6b5b3b1f3f5b6e6f2c9b0c1d2e

  # bootstrap, then keep the certificates valid
  tlsboot join 10.0.0.1:6443 --token ... --discovery-token-ca-cert-hash sha256:... --run`,
		Args: joinArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := j.options(args[0])
			if err != nil {
				return err
			}
			if !j.run {
				for _, name := range runOnlyFlags {
					if cmd.Flags().Changed(name) {
						return usageError{fmt.Errorf("--%s is a flag of 'tlsboot run': add --run", name)}
					}
				}
			}
			// Every flag is checked before anything is fetched or written.
			bopts, err := b.options()
			if err != nil {
				return err
			}
			var aopts agent.Options
			if j.run {
				if aopts, err = r.options(&b); err != nil {
					return err
				}
			}
			res, err := discovery.Discover(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if err := reportDiscovery(cmd.ErrOrStderr(), res, opts); err != nil {
				return err
			}
			cfg := bootstrapKubeconfig(res, opts.Token)
			if err := kubeconfig.Write(b.bootstrapKubeconfig, cfg); err != nil {
				return fmt.Errorf("writing the bootstrap kubeconfig: %w", err)
			}
			if j.run {
				aopts.Bootstrap.InsecureWarned = true
				return agent.Run(cmd.Context(), aopts)
			}
			start := time.Now()
			result, err := bootstrap.Run(cmd.Context(), bopts)
			if err != nil {
				return interrupted(cmd.Context(), err, bopts)
			}
			return printResult(cmd.OutOrStdout(), result, time.Since(start))
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&j.token, "token", "", "bootstrap token ID.SECRET (required)")
	fs.StringArrayVar(&j.pins, "discovery-token-ca-cert-hash", nil, "pin of the cluster CA, sha256:<hex of the SHA-256 of its public key> (repeatable: any one must match)")
	fs.BoolVar(&j.unsafeSkipCAVerification, "discovery-token-unsafe-skip-ca-verification", false, "trust the CA in cluster-info without a pin (UNSAFE: a man in the middle who knows the token can impersonate the cluster)")
	fs.DurationVar(&j.timeout, "discovery-timeout", discovery.DefaultTimeout, "how long to wait for cluster-info to be signed for the token")
	fs.BoolVar(&j.run, "run", false, "after joining, keep running as 'tlsboot run' (its flags are accepted too)")
	b.register(cmd)
	r.register(cmd)
	setDefault(cmd, "bootstrap-kubeconfig", defaultJoinBootstrapKubeconfig, &b.bootstrapKubeconfig, "where to write the bootstrap kubeconfig (mode 0600), so that a later 'tlsboot run' can recover from it")
	setDefault(cmd, "kubeconfig", defaultJoinKubeconfig, &b.kubeconfig, "")
	setDefault(cmd, "cert-dir", defaultJoinCertDir, &b.certDir, "")
	return cmd
}

// runOnlyFlags are the flags join takes from run: meaningful with --run only.
var runOnlyFlags = []string{"renew-before", "reuse-key", "serving-cert", "node-ip", "hostname-override", "on-rotate", "metrics-bind-address"}

// setDefault gives a flag registered by bootstrapFlags join's default.
func setDefault(cmd *cobra.Command, name, value string, p *string, usage string) {
	f := cmd.Flags().Lookup(name)
	if f == nil {
		return
	}
	*p, f.DefValue = value, value
	f.Usage = strings.TrimSuffix(f.Usage, " (required)")
	if usage != "" {
		f.Usage = usage
	}
}

// joinArgs wants exactly SERVER, and never repeats an argument that is not
// a server address: it may be the token, put in the wrong place.
func joinArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 1 {
		if tokenutil.IsValidBootstrapToken(args[0]) {
			return usageError{errors.New("the argument looks like a bootstrap token: pass the API server address as the argument and the token with --token")}
		}
		return nil
	}
	return usageError{fmt.Errorf("join takes one argument, the API server address (HOST:PORT), got %d (see 'tlsboot join --help')", len(args))}
}

// options turns the join flags into discovery options, or a usage error.
func (j *joinFlags) options(server string) (discovery.Options, error) {
	if _, err := discovery.ServerURL(server); err != nil {
		return discovery.Options{}, usageError{err}
	}
	if j.token == "" {
		return discovery.Options{}, usageError{errors.New("--token is required: the bootstrap token ID.SECRET (see 'tlsboot token create')")}
	}
	tok, err := token.Parse(j.token)
	if err != nil {
		return discovery.Options{}, usageError{fmt.Errorf("--token: %w", err)}
	}
	opts := discovery.Options{Server: server, Token: tok, UnsafeSkipCAVerification: j.unsafeSkipCAVerification, Timeout: j.timeout}
	for _, s := range j.pins {
		p, err := discovery.ParsePin(s)
		if err != nil {
			return discovery.Options{}, usageError{fmt.Errorf("--discovery-token-ca-cert-hash: %w", err)}
		}
		opts.Pins = append(opts.Pins, p)
	}
	if len(opts.Pins) > 0 && j.unsafeSkipCAVerification {
		return discovery.Options{}, usageError{errors.New("--discovery-token-unsafe-skip-ca-verification and --discovery-token-ca-cert-hash contradict each other: keep the pin")}
	}
	if j.timeout <= 0 {
		return discovery.Options{}, usageError{fmt.Errorf("--discovery-timeout %s must be positive", j.timeout)}
	}
	if err := opts.Validate(); err != nil {
		return discovery.Options{}, usageError{err}
	}
	return opts, nil
}

// reportDiscovery says, on stderr, what was discovered and warns.
func reportDiscovery(w io.Writer, res *discovery.Result, opts discovery.Options) error {
	for _, warning := range res.Warnings {
		if _, err := fmt.Fprintf(w, "WARNING: %s\n", warning); err != nil {
			return err
		}
	}
	how := "pinned CA verified"
	if len(opts.Pins) == 0 {
		how = "CA NOT verified"
	}
	_, err := fmt.Fprintf(w, "discovered the cluster at %s (%s, cluster-info signed for token %s)\n", res.Server, how, opts.Token.ID)
	return err
}

// bootstrapKubeconfig is what kubeadm writes to bootstrap-kubelet.conf:
// the discovered server and CA, embedded, and the token.
func bootstrapKubeconfig(res *discovery.Result, tok token.Token) *clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubernetes"] = &clientcmdapi.Cluster{Server: res.Server, CertificateAuthorityData: res.CAData}
	cfg.AuthInfos["tls-bootstrap-token-user"] = &clientcmdapi.AuthInfo{Token: tok.Value()}
	cfg.Contexts["tls-bootstrap-token-user@kubernetes"] = &clientcmdapi.Context{Cluster: "kubernetes", AuthInfo: "tls-bootstrap-token-user"}
	cfg.CurrentContext = "tls-bootstrap-token-user@kubernetes"
	return cfg
}
