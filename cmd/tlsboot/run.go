package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tlsboot/tlsboot/bootstrap"
	"github.com/tlsboot/tlsboot/internal/agent"
)

// runFlags are the flags of run on top of bootstrapFlags.
type runFlags struct {
	renewBefore      time.Duration
	reuseKey         bool
	servingCert      bool
	nodeIPs          []string
	hostnameOverride string
	servingCAFile    string
	onRotate         string
	metricsAddress   string
}

func (f *runFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.DurationVar(&f.renewBefore, "renew-before", 0, "renew at the latest when this much of a certificate's lifetime is left (default: only the jittered 70-90% point)")
	fs.BoolVar(&f.reuseKey, "reuse-key", false, "renew with the current private key instead of a new one")
	fs.BoolVar(&f.servingCert, "serving-cert", false, "also request and rotate the kubelet serving certificate (signer kubernetes.io/kubelet-serving, prefix "+agent.ServingPrefix+")")
	fs.StringArrayVar(&f.nodeIPs, "node-ip", nil, "IP address for the serving certificate's SANs (repeatable; needs --serving-cert)")
	fs.StringVar(&f.hostnameOverride, "hostname-override", "", "DNS name for the serving certificate's SANs (default: the host name, lower-cased; needs --serving-cert)")
	fs.StringVar(&f.servingCAFile, "serving-ca-file", "", "PEM file of the CA(s) of the kubelet-serving signer, which serving certificates must chain to (default: no chain check, only the checks of the request, as the kubelet does; needs --serving-cert)")
	fs.StringVar(&f.onRotate, "on-rotate", "", "shell command run after each rotation, with TLSBOOT_CERT_PATH, TLSBOOT_CERT_NAME (client|serving) and TLSBOOT_ROTATION_REASON set")
	fs.StringVar(&f.metricsAddress, "metrics-bind-address", agent.DefaultMetricsAddress, "address of /metrics, /healthz and /readyz; 0 disables")
}

// options turns the flags into agent options, or a usage error.
func (f *runFlags) options(b *bootstrapFlags) (agent.Options, error) {
	bopts, err := b.options()
	if err != nil {
		return agent.Options{}, err
	}
	if !f.servingCert && (len(f.nodeIPs) > 0 || f.hostnameOverride != "") {
		return agent.Options{}, usageError{errors.New("--node-ip and --hostname-override set the serving certificate's SANs: add --serving-cert")}
	}
	if !f.servingCert && f.servingCAFile != "" {
		return agent.Options{}, usageError{errors.New("--serving-ca-file checks the serving certificate: add --serving-cert")}
	}
	ips, err := parseIPs(f.nodeIPs)
	if err != nil {
		return agent.Options{}, err
	}
	host := f.hostnameOverride
	if f.servingCert && host == "" {
		h, err := os.Hostname()
		if err != nil {
			return agent.Options{}, fmt.Errorf("cannot determine the host name for the serving certificate (%v): pass --hostname-override", err)
		}
		host = strings.ToLower(h)
	}
	opts := agent.Options{
		Bootstrap:      bopts,
		RenewBefore:    f.renewBefore,
		ReuseKey:       f.reuseKey,
		Serving:        f.servingCert,
		Hostname:       host,
		NodeIPs:        ips,
		ServingCAFile:  f.servingCAFile,
		OnRotate:       f.onRotate,
		MetricsAddress: f.metricsAddress,
	}
	if err := opts.Validate(); err != nil {
		var ca *agent.ServingCAError
		if errors.As(err, &ca) {
			return agent.Options{}, usageError{fmt.Errorf("--serving-ca-file: %w: pass a PEM file of the CA that signs kubelet serving certificates", ca.Err)}
		}
		return agent.Options{}, invalidOptions(err)
	}
	return opts, nil
}

func parseIPs(s []string) ([]net.IP, error) {
	var ips []net.IP
	for _, v := range s {
		ip := net.ParseIP(strings.TrimSpace(v))
		if ip == nil {
			return nil, usageError{fmt.Errorf("--node-ip %q is not an IP address", v)}
		}
		ips = append(ips, ip)
	}
	return ips, nil
}

func newRunCommand() *cobra.Command {
	var b bootstrapFlags
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run --bootstrap-kubeconfig FILE --kubeconfig FILE --cert-dir DIR [flags]",
		Short: "Keep the node's certificates valid: bootstrap, rotate, recover, until stopped",
		Long: `Run the node agent until SIGTERM or SIGINT (exit 0).

It bootstraps the client certificate as 'tlsboot bootstrap' does when there is no usable one,
then renews it at a jittered 70-90% of its real lifetime (or --renew-before before expiry,
whichever is earlier), authenticating with the current certificate and a new key. An expired,
not yet valid or rejected (401) certificate is replaced with the bootstrap credentials; if the
bootstrap kubeconfig is gone, the agent says so, keeps retrying with backoff, and /readyz fails.
The kubeconfig points at <cert-dir>/<prefix>-current.pem, so a rotation needs no rewrite.

With --serving-cert it also keeps a kubelet serving certificate (<cert-dir>/kubelet-server-current.pem)
for the host name and --node-ip addresses; an operator or approver must approve those CSRs.

An issued certificate is stored only if it is a leaf for the requested key, names and extended key
usages and chains to the --kubeconfig cluster's CA (when that names one); serving certificates chain
to the CA(s) in --serving-ca-file instead when it is set, for a kubelet-serving signer with its own CA.

SIGHUP renews every certificate now. Between deadlines the agent sleeps, having given back to the
OS the memory start-up and the last rotation used, its executable's pages included (set
TLSBOOT_RELEASE_EXECUTABLE=0 to keep those resident; see the operator guide, Memory).`,
		Example: `  tlsboot run --bootstrap-kubeconfig /etc/kubernetes/bootstrap-kubelet.conf \
    --kubeconfig /etc/kubernetes/kubelet.conf --cert-dir /var/lib/kubelet/pki \
    --serving-cert --node-ip 10.0.0.5 --on-rotate 'systemctl reload my-agent'

  # rotate now
  kill -HUP $(pidof tlsboot)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := f.options(&b)
			if err != nil {
				return err
			}
			// Once per start, whether or not the credentials are used
			// now: they will be whenever the agent has to recover.
			bootstrap.WarnInsecure(cmd.Context(), opts.Bootstrap.BootstrapKubeconfigPath)
			bootstrap.WarnReadable(cmd.Context(), "kubeconfig", opts.Bootstrap.KubeconfigPath)
			opts.Bootstrap.InsecureWarned = true
			return agent.Run(cmd.Context(), opts)
		},
	}
	b.register(cmd)
	f.register(cmd)
	return cmd
}
