package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/approval"
	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/internal/approver"
	"github.com/tlsboot/tlsboot/internal/metrics"
)

// approverFlags are the flags of `tlsboot approver`.
type approverFlags struct {
	kubeconfig, dnsRegex, timeoutAction, metricsAddr string
	leaseNamespace, leaseName                        string
	clusterDomain, liveNodeAction                    string
	signers, ipCIDRs, serviceCIDRs                   []string
	reservedCIDRs, reservedDNS                       []string
	reserveServiceIPs                                bool
	workers, burst                                   int
	qps                                              float32
	dryRun, leaderElect                              bool
	maxExpiration, pendingTimeout, sarTTL            time.Duration
	nodeAliveGrace                                   time.Duration
	leaseDuration, renewDeadline, retryPeriod        time.Duration
}

func newApproverCommand() *cobra.Command {
	var f approverFlags
	cmd := &cobra.Command{
		Use:   "approver",
		Short: "Approve or deny node client and serving certificate signing requests (a controller)",
		Long: `approver is a controller that decides kubelet certificate signing requests:

  client CSRs  (kubernetes.io/kube-apiserver-client-kubelet): kube-controller-manager's
               checks, then a SubjectAccessReview for the requester on
               certificatesigningrequests/nodeclient or /selfnodeclient; a
               bootstrap token never takes over a live node (its Lease was
               renewed within --node-alive-grace): see --live-node-action
  serving CSRs (kubernetes.io/kubelet-serving): only inside the scope you set with
               --allowed-ip-cidrs and/or --allowed-dns-regex (without one they
               are left pending, with one Event saying so); the requesting node
               asks for itself, every DNS name and IP is one of its Node's
               status.addresses and no other Node's, and never a Service or
               API server address, loopback, link-local or a .svc name

Anything malformed or oversized is denied with a short message saying what was
wrong; CSRs of other signers are never read. Run it with kube-controller-manager's
csrapproving controller off (--controllers=*,-csrapproving). See docs/approver.md.`,
		Example: `  # in a cluster (in-cluster config), two replicas: see deploy/approver/
  tlsboot approver --leader-elect-namespace tlsboot-system

  # out of cluster, one replica, only logging what it would do
  tlsboot approver --kubeconfig admin.conf --leader-elect=false --dry-run

  # serving certificates for names under .nodes.example.com and IPs in 10.0.0.0/16
  # (the regex always matches the whole name: no ^...$ needed)
  tlsboot approver --allowed-dns-regex '[a-z0-9-]+\.nodes\.example\.com' --allowed-ip-cidrs 10.0.0.0/16`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runApprover(cmd.Context(), &f)
		},
	}
	f.register(cmd)
	return cmd
}

func (f *approverFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of the approver's identity (default: in-cluster configuration)")
	fs.StringSliceVar(&f.signers, "signers", csr.NodeSigners(), "signers whose CSRs to decide")
	fs.IntVar(&f.workers, "workers", approver.DefaultWorkers, "CSRs decided in parallel")
	fs.BoolVar(&f.dryRun, "dry-run", false, "log the decision for each CSR and change nothing")
	fs.DurationVar(&f.maxExpiration, "max-expiration", 365*24*time.Hour, "deny CSRs whose spec.expirationSeconds is longer (0: no limit)")
	fs.StringVar(&f.dnsRegex, "allowed-dns-regex", "", "serving scope: every DNS name of a serving CSR must match this regular expression, which is always anchored (matches the whole name); unset, DNS names are never approved; with neither this nor --allowed-ip-cidrs, serving CSRs are left pending")
	fs.StringSliceVar(&f.ipCIDRs, "allowed-ip-cidrs", nil, "serving scope: every IP of a serving CSR must be in one of these CIDRs (where nodes serve); unset, IP addresses are never approved")
	fs.StringSliceVar(&f.serviceCIDRs, "service-cidrs", nil, "Service IP ranges, never approved in a serving certificate; used with the cluster's ServiceCIDR objects (and instead of them when there are none)")
	fs.StringSliceVar(&f.reservedCIDRs, "reserved-cidrs", nil, "IP ranges never approved in a serving certificate, whatever the scope: the control-plane endpoint and VIPs the approver cannot see in the cluster (a load balancer in front of the API server)")
	fs.StringSliceVar(&f.reservedDNS, "reserved-dns", nil, "DNS names (exact) never approved in a serving certificate, whatever the scope: the API server's load-balancer name and others the approver cannot see")
	fs.BoolVar(&f.reserveServiceIPs, "reserve-service-ips", true, "never approve a Service's externalIPs or load-balancer ingress in a serving certificate; turn off only where those are the nodes' own addresses (k3s ServiceLB, externalIPs set to node IPs)")
	fs.StringVar(&f.clusterDomain, "cluster-domain", approval.DefaultClusterDomain, "the cluster's DNS domain: names under .svc and .svc.<domain> are never approved")
	fs.DurationVar(&f.nodeAliveGrace, "node-alive-grace", approval.DefaultNodeAliveGrace, "a Node whose kubelet Lease (or Ready heartbeat) was renewed this recently is alive: a bootstrap token may not take over its identity")
	fs.StringVar(&f.liveNodeAction, "live-node-action", "deny", "a bootstrap client CSR for a live Node: deny, or leave it pending for a human (with one Event)")
	fs.DurationVar(&f.pendingTimeout, "pending-timeout", time.Hour, "how long a CSR may wait for its Node or its permission (0: forever)")
	fs.StringVar(&f.timeoutAction, "pending-timeout-action", "leave", "after --pending-timeout: leave (for a human) or deny")
	fs.DurationVar(&f.sarTTL, "sar-cache-ttl", approver.DefaultSARCacheTTL, fmt.Sprintf("reuse a SubjectAccessReview answer for the same requester and permission this long (0: never, at most %s)", approver.MaxSARCacheTTL))
	fs.Float32Var(&f.qps, "kube-api-qps", 1000, "client rate limit: API requests per second")
	fs.IntVar(&f.burst, "kube-api-burst", 2000, "client rate limit: burst of API requests")
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8080", "address of /metrics, /healthz and /readyz")
	fs.BoolVar(&f.leaderElect, "leader-elect", true, "decide only while holding the leader Lease (run several replicas safely)")
	fs.StringVar(&f.leaseNamespace, "leader-elect-namespace", "kube-system", "namespace of the leader Lease")
	fs.StringVar(&f.leaseName, "leader-elect-lease-name", "tlsboot-approver", "name of the leader Lease")
	fs.DurationVar(&f.leaseDuration, "leader-elect-lease-duration", 15*time.Second, "how long a standby waits before taking an unrenewed Lease")
	fs.DurationVar(&f.renewDeadline, "leader-elect-renew-deadline", 10*time.Second, "how long the leader tries to renew before giving up")
	fs.DurationVar(&f.retryPeriod, "leader-elect-retry-period", 2*time.Second, "how often to try to acquire or renew the Lease")
}

// policy turns the policy flags into approval options, or a usage error.
func (f *approverFlags) policy() (*approval.Policy, error) {
	opts := approval.Options{MaxExpiration: f.maxExpiration, PendingTimeout: f.pendingTimeout,
		ClusterDomain: f.clusterDomain, NodeAliveGrace: f.nodeAliveGrace}
	switch f.timeoutAction {
	case "leave":
	case "deny":
		opts.DenyOnTimeout = true
	default:
		return nil, usageError{fmt.Errorf("--pending-timeout-action %q: use leave or deny", f.timeoutAction)}
	}
	switch f.liveNodeAction {
	case "deny":
	case "leave":
		opts.LeaveLiveNode = true
	default:
		return nil, usageError{fmt.Errorf("--live-node-action %q: use deny or leave", f.liveNodeAction)}
	}
	if f.nodeAliveGrace <= 0 {
		return nil, usageError{fmt.Errorf("--node-alive-grace %s: must be positive", f.nodeAliveGrace)}
	}
	if errs := validation.IsDNS1123Subdomain(f.clusterDomain); len(errs) > 0 {
		return nil, usageError{fmt.Errorf("--cluster-domain %q: %s", f.clusterDomain, errs[0])}
	}
	for _, s := range f.serviceCIDRs {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, usageError{fmt.Errorf("--service-cidrs: %w", err)}
		}
		opts.ServiceCIDRs = append(opts.ServiceCIDRs, p.Masked())
	}
	for _, s := range f.reservedCIDRs {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, usageError{fmt.Errorf("--reserved-cidrs: %w", err)}
		}
		opts.ReservedCIDRs = append(opts.ReservedCIDRs, p.Masked())
	}
	for _, s := range f.reservedDNS {
		opts.ReservedDNS = append(opts.ReservedDNS, strings.TrimSpace(s))
	}
	opts.AllowedDNSRegex = f.dnsRegex
	for _, s := range f.ipCIDRs {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, usageError{fmt.Errorf("--allowed-ip-cidrs: %w", err)}
		}
		opts.AllowedIPs = append(opts.AllowedIPs, p.Masked())
	}
	p, err := approval.New(opts)
	var bad *approval.OptionError
	if errors.As(err, &bad) {
		if flag, ok := approvalFlags[bad.Option]; ok {
			return nil, usageError{fmt.Errorf("%s: %w", flag, bad.Err)}
		}
	}
	if err != nil {
		return nil, usageError{err}
	}
	return p, nil
}

// approvalFlags names the flag of each approval.Options field that a flag sets.
var approvalFlags = map[string]string{
	"MaxExpiration":   "--max-expiration",
	"PendingTimeout":  "--pending-timeout",
	"AllowedIPs":      "--allowed-ip-cidrs",
	"AllowedDNSRegex": "--allowed-dns-regex",
	"ReservedCIDRs":   "--reserved-cidrs",
	"ReservedDNS":     "--reserved-dns",
}

// check reports conflicting or out-of-range flags as usage errors.
func (f *approverFlags) check() error {
	switch {
	case f.workers < 1:
		return usageError{fmt.Errorf("--workers must be at least 1, got %d", f.workers)}
	case f.qps <= 0 || f.burst < 1:
		return usageError{errors.New("--kube-api-qps must be positive and --kube-api-burst at least 1")}
	case f.sarTTL < 0 || f.sarTTL > approver.MaxSARCacheTTL:
		return usageError{fmt.Errorf("--sar-cache-ttl %s: must be between 0 and %s", f.sarTTL, approver.MaxSARCacheTTL)}
	case f.leaderElect && (f.leaseNamespace == "" || f.leaseName == ""):
		return usageError{errors.New("--leader-elect needs --leader-elect-namespace and --leader-elect-lease-name")}
	case f.leaderElect && !(f.retryPeriod < f.renewDeadline && f.renewDeadline < f.leaseDuration):
		return usageError{errors.New("leader election needs --leader-elect-retry-period < --leader-elect-renew-deadline < --leader-elect-lease-duration")}
	}
	return nil
}

// checkSigners reports a --signers value that p does not decide.
func (f *approverFlags) checkSigners(p *approval.Policy) error {
	var supported []string // p.Signers() has one per recogniser
	for _, s := range p.Signers() {
		if !slices.Contains(supported, s) {
			supported = append(supported, s)
		}
	}
	for _, s := range f.signers {
		if !slices.Contains(supported, s) {
			return usageError{fmt.Errorf("--signers: %q is not supported: use %s", s, strings.Join(supported, ", "))}
		}
	}
	return nil
}

// restConfig loads --kubeconfig, or the in-cluster configuration.
func (f *approverFlags) restConfig() (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if f.kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", f.kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("loading --kubeconfig %s: %w", f.kubeconfig, err)
		}
	} else if cfg, err = rest.InClusterConfig(); err != nil {
		return nil, fmt.Errorf("not running in a cluster (%w): pass --kubeconfig FILE", err)
	}
	cfg.QPS, cfg.Burst = f.qps, f.burst
	cfg.UserAgent = "tlsboot-approver"
	// Protobuf, as kube-controller-manager: smaller and cheaper to decode
	// than JSON, which matters for the few oversized objects the informers
	// must still read once.
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	return cfg, nil
}

func runApprover(ctx context.Context, f *approverFlags) error {
	if err := f.check(); err != nil {
		return err
	}
	policy, err := f.policy()
	if err != nil {
		return err
	}
	if err := f.checkSigners(policy); err != nil {
		return err
	}
	client, eventClient, host, err := f.clients()
	if err != nil {
		return err
	}
	listener, err := metrics.Listen(f.metricsAddr)
	if err != nil {
		return fmt.Errorf("--metrics-bind-address: %w", err)
	}
	m := metrics.NewApprover()
	opts := f.controllerOptions(client, policy, m.Hooks())
	opts.EventClient = eventClient
	opts.APIServer = host
	if err := opts.Validate(); err != nil {
		listener.Close()
		return invalidOptions(err)
	}
	ctrl, err := approver.New(opts)
	if err != nil {
		listener.Close()
		return err
	}
	m.SetPending(ctrl.Pending)
	reg := metrics.NewRegistry()
	reg.MustRegister(m)
	logger := klog.FromContext(ctx)
	if f.dnsRegex == "" && len(f.ipCIDRs) == 0 && slices.Contains(f.signers, certificatesv1.KubeletServingSignerName) {
		logger.Info("No serving scope: serving CSRs are left pending, each with one Event; set --allowed-ip-cidrs and/or --allowed-dns-regex to approve them")
	}
	logger.Info("Serving metrics and health", "address", listener.Addr().String())
	return serveApprover(ctx, &metrics.Server{Registry: reg, Ready: ctrl.Ready}, listener, func(ctx context.Context) error {
		return ctrl.Run(ctx, f.leaderElection())
	})
}

// clients returns the approver's client and one for Events: a client of
// their own, with its own rate limiter (same limits), so that in a burst
// Events never slow the decisions down; and the API server's URL, whose
// serving certificate's names are reserved.
func (f *approverFlags) clients() (client, eventClient kubernetes.Interface, host string, err error) {
	cfg, err := f.restConfig()
	if err != nil {
		return nil, nil, "", err
	}
	if client, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, nil, "", fmt.Errorf("creating Kubernetes client: %w", err)
	}
	if eventClient, err = kubernetes.NewForConfig(rest.CopyConfig(cfg)); err != nil {
		return nil, nil, "", fmt.Errorf("creating Kubernetes client: %w", err)
	}
	return client, eventClient, cfg.Host, nil
}

func (f *approverFlags) controllerOptions(client kubernetes.Interface, p *approval.Policy, hooks approver.Hooks) approver.Options {
	ttl := f.sarTTL
	if ttl == 0 {
		ttl = -1 // Options: negative disables reuse, zero means the default
	}
	return approver.Options{
		Client: client, Policy: p, Signers: f.signers, Workers: f.workers, DryRun: f.dryRun,
		SARCacheTTL: ttl, Identity: identity(), Hooks: hooks, Hint: approverHint,
		IgnoreServiceIPs: !f.reserveServiceIPs,
	}
}

// approverHint is what an operator can do about a CSR the approver leaves
// pending or denies for reason: the policy's messages say what is wrong,
// the command knows its flags.
func approverHint(reason string) string {
	switch reason {
	case approval.ReasonNoServingScope:
		return "To approve serving certificates, run tlsboot approver with --allowed-ip-cidrs and/or --allowed-dns-regex set to the addresses and names your nodes serve on (the regex is anchored)"
	case approval.ReasonSANForbiddenByPolicy:
		return "The serving scope is --allowed-dns-regex (DNS names; anchored) and --allowed-ip-cidrs (IP addresses); a kind of SAN without its flag is never approved"
	case approval.ReasonNodeAlive:
		return "To re-provision this node, delete its Node object first; a request left pending can also be decided by hand (kubectl certificate approve|deny)"
	case approval.ReasonPendingTimeout:
		return "How long a CSR may wait, and what happens then, are --pending-timeout and --pending-timeout-action"
	case approval.ReasonExpirationTooLong:
		return "The longest spec.expirationSeconds approved is --max-expiration"
	case approval.ReasonSANReserved:
		return "Service ranges come from the cluster's ServiceCIDR objects and --service-cidrs; names under .svc.<domain> use --cluster-domain; the control-plane endpoint is read from the API server's serving certificate and kube-public/cluster-info, with --reserved-cidrs and --reserved-dns for more; Services' externalIPs and load-balancer ingress are reserved unless --reserve-service-ips=false"
	case approval.ReasonAPIServerNamesUnknown:
		return "The approver reads the API server's serving certificate with a TLS handshake to its --kubeconfig server and the default/kubernetes EndpointSlice addresses: check that it reaches them"
	case approval.ReasonTokenBoundToOtherNode, approval.ReasonInvalidTokenBinding, approval.ReasonTokenAlreadyUsed:
		return "A token bound to one node is made with 'tlsboot token create --node-name NODE'; revoke a misused one with 'tlsboot token delete ID'"
	}
	return ""
}

func (f *approverFlags) leaderElection() *approver.LeaderElection {
	if !f.leaderElect {
		return nil
	}
	return &approver.LeaderElection{Namespace: f.leaseNamespace, Name: f.leaseName,
		LeaseDuration: f.leaseDuration, RenewDeadline: f.renewDeadline, RetryPeriod: f.retryPeriod}
}

// identity names this process in the Lease and in Events: the host name
// (the pod name in a cluster) and a random suffix, so that two processes on
// one host are told apart.
func identity() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	rand.Read(b)
	return host + "_" + hex.EncodeToString(b)
}

// serveApprover serves srv on l while run runs; either one failing stops the
// other. It returns run's error, else the server's.
func serveApprover(ctx context.Context, srv *metrics.Server, l net.Listener, run func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	served := make(chan error, 1)
	go func() {
		err := srv.Serve(ctx, l)
		cancel()
		served <- err
	}()
	runErr := run(ctx)
	cancel()
	serveErr := <-served
	if runErr != nil {
		return runErr
	}
	if serveErr != nil {
		return fmt.Errorf("serving metrics: %w", serveErr)
	}
	return nil
}
