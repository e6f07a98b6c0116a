package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	tokenutil "k8s.io/cluster-bootstrap/token/util"
	"k8s.io/klog/v2"

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
	token, tokenFile         string
	pins                     []string
	unsafeSkipCAVerification bool
	timeout                  time.Duration
	run                      bool
}

func newJoinCommand() *cobra.Command { return newJoinCommandExec(syscall.Exec) }

// execFunc replaces the process, as syscall.Exec does; it returns only on
// failure (a test's returns nil instead of replacing the test binary).
type execFunc func(argv0 string, argv, envv []string) error

// newJoinCommandExec is join, re-executing itself with exec (see execRun).
func newJoinCommandExec(exec execFunc) *cobra.Command {
	var (
		j joinFlags
		b bootstrapFlags
		r runFlags
	)
	cmd := &cobra.Command{
		Use:   "join SERVER --token-file FILE|--token ID.SECRET --discovery-token-ca-cert-hash sha256:HEX [flags]",
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

The token comes from exactly one of --token-file FILE (ID.SECRET and an optional newline; the
file must be a regular file private to this user, mode 0600), --token-file - (one line of stdin),
the environment variable TLSBOOT_TOKEN (/proc/PID/environ is readable only by this user and
root), or --token ID.SECRET, which every local user can read in the command line (ps,
/proc/PID/cmdline) while join runs: with --token and --run, join re-executes itself as
'tlsboot run' (same PID, no token in the arguments) once the bootstrap kubeconfig is written.

The pin is printed by 'tlsboot token create --print-join-command' (or kubeadm's), and is the
SHA-256 of the CA's public key. Without it, anyone who knows the token and sits between the
node and the API server could impersonate the cluster: --discovery-token-unsafe-skip-ca-verification
accepts that risk, loudly. The token's secret is never logged or printed.`,
		Example: `  tlsboot join 10.0.0.1:6443 --token abcdef.0123456789abcdef \
    --discovery-token-ca-cert-hash sha256:8b1a9953c4611296a827abf8c47804d7e6c49c6b5b3b1f3f5b6e6f2c9b0c1d2e

  # bootstrap, then keep the certificates valid; the token from a private file
  install -m 600 /dev/null /etc/tlsboot/token && echo abcdef.0123456789abcdef > /etc/tlsboot/token
  tlsboot join 10.0.0.1:6443 --token-file /etc/tlsboot/token --discovery-token-ca-cert-hash sha256:... --run`,
		Args: joinArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, from, err := tokenSources{
				args: j.token, argsName: "--token", argsGiven: cmd.Flags().Changed("token"),
				file: j.tokenFile, env: lookupTokenEnv(), stdin: cmd.InOrStdin(),
			}.resolve()
			if err != nil {
				return err
			}
			opts, err := j.options(args[0], tok, from)
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
			if j.run && from == tokenFromArgs {
				fmt.Fprintln(cmd.ErrOrStderr(), "WARNING: --token on the command line is visible to every local user (ps, /proc/PID/cmdline) until join re-executes itself as 'tlsboot run' after discovery; pass it with --token-file or "+tokenEnv+" instead")
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
				if from == tokenFromArgs && cmd.Context().Err() == nil {
					err := execRun(exec, runArgs(cmd.Flags(), &b))
					if err == nil {
						return nil // a test's exec
					}
					// The node must not fail to run over this: keep
					// running here, with the token still in the arguments.
					fmt.Fprintf(cmd.ErrOrStderr(), "WARNING: could not re-execute as 'tlsboot run' (%v): this process keeps the token in its command line; restart it with --token-file or %s\n", err, tokenEnv)
				}
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
	fs.StringVar(&j.token, "token", "", "bootstrap token ID.SECRET; visible to every local user in the command line: prefer --token-file or "+tokenEnv)
	fs.StringVar(&j.tokenFile, "token-file", "", "file holding the bootstrap token ID.SECRET (a regular file private to this user, mode 0600); - reads one line of stdin")
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

// joinOnlyFlags are join's own flags; 'tlsboot run' has all the others.
var joinOnlyFlags = map[string]bool{
	"token": true, "token-file": true, "discovery-token-ca-cert-hash": true,
	"discovery-token-unsafe-skip-ca-verification": true, "discovery-timeout": true, "run": true, "help": true,
}

// runArgs is the 'tlsboot run' command line that continues a 'join --run':
// the paths join wrote (explicit, since run has no defaults for them) and
// every other flag given that is not join's own, the global -v and
// --vmodule included. Never the token.
func runArgs(fs *pflag.FlagSet, b *bootstrapFlags) []string {
	args := []string{"run", "--bootstrap-kubeconfig=" + b.bootstrapKubeconfig, "--kubeconfig=" + b.kubeconfig, "--cert-dir=" + b.certDir}
	fs.Visit(func(f *pflag.Flag) {
		switch f.Name {
		case "bootstrap-kubeconfig", "kubeconfig", "cert-dir":
			return
		}
		if joinOnlyFlags[f.Name] {
			return
		}
		if s, ok := f.Value.(pflag.SliceValue); ok { // --node-ip, repeated
			for _, v := range s.GetSlice() {
				args = append(args, "--"+f.Name+"="+v)
			}
			return
		}
		args = append(args, "--"+f.Name+"="+f.Value.String())
	})
	return args
}

// execRun replaces this process with 'tlsboot run' args, so that the
// long-running agent holds no token in its command line, which every local
// user can read (ps, /proc/PID/cmdline).
//
// Why exec, and not rewriting our own arguments: the kernel shows the
// original argv memory, which Go gives no safe way to overwrite, and
// prctl(PR_SET_MM_ARG_START) needs CAP_SYS_RESOURCE. Exec keeps the PID, so
// systemd (MainPID, Type=simple or exec) and any supervisor keep tracking
// the same process, and it keeps stdin, stdout and stderr. /proc/self/exe
// is the binary that is running even if a package upgrade replaced the file
// since. The environment goes as it is: TLSBOOT_TOKEN was removed from it
// when read. Signals: 'tlsboot run' exits 0 on SIGTERM and SIGINT as
// agent.Run did here; only one arriving in the milliseconds between execve
// and the new process's signal handlers kills it by the signal (systemd
// counts that as a clean stop too).
func execRun(exec execFunc, args []string) error {
	klog.Flush()
	argv := append([]string{os.Args[0]}, args...)
	return exec("/proc/self/exe", argv, os.Environ())
}

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
			return usageError{errors.New("the argument looks like a bootstrap token: pass the API server address as the argument and the token with --token-file (or TLSBOOT_TOKEN, or --token)")}
		}
		return nil
	}
	return usageError{fmt.Errorf("join takes one argument, the API server address (HOST:PORT), got %d (see 'tlsboot join --help')", len(args))}
}

// options turns the join flags and the token into discovery options, or a
// usage error.
func (j *joinFlags) options(server string, tok token.Token, from tokenFrom) (discovery.Options, error) {
	if _, err := discovery.ServerURL(server); err != nil {
		return discovery.Options{}, usageError{err}
	}
	if from == tokenFromNone {
		return discovery.Options{}, usageError{errors.New("a bootstrap token is required: pass --token-file FILE (mode 0600), set " + tokenEnv + ", or pass --token ID.SECRET (see 'tlsboot token create')")}
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
