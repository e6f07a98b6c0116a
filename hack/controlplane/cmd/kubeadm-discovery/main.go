// Command kubeadm-discovery runs kubeadm's own token discovery once and
// exits: the flag validation of 'kubeadm join'
// (validation.ValidateDiscovery), then discovery.For, which runs
// k8s.io/kubernetes/cmd/kubeadm/app/discovery/token.RetrieveValidatedConfigInfo
// and builds the bootstrap kubeconfig the way 'kubeadm join' does. It is the
// upstream peer that test/e2e (verdicts) and bench/join (time) compare
// 'tlsboot join' with: the same inputs, the same control plane, the code
// path 'kubeadm join' takes before the kubelet starts.
//
// On success it prints two lines on stdout, "server URL" and
// "ca-cert-hash sha256:HEX" (of the first CA of the validated kubeconfig),
// writes --bootstrap-kubeconfig if given (kubeadm's WriteToDisk, mode
// 0600), and exits 0. On failure it prints kubeadm's error on stderr,
// prefixed "kubeadm-discovery: ", and exits 1 (2 for a usage error).
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/klog/v2"
	kubeadmapi "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm"
	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/validation"
	"k8s.io/kubernetes/cmd/kubeadm/app/discovery"
	kubeconfigutil "k8s.io/kubernetes/cmd/kubeadm/app/util/kubeconfig"
	"k8s.io/kubernetes/cmd/kubeadm/app/util/pubkeypin"
)

// pins collects the repeatable --discovery-token-ca-cert-hash.
type pins []string

func (p *pins) String() string     { return strings.Join(*p, ",") }
func (p *pins) Set(s string) error { *p = append(*p, s); return nil }

func main() {
	var hashes pins
	server := flag.String("server", "", "API server HOST:PORT (https:// is stripped: kubeadm takes HOST:PORT)")
	token := flag.String("token", "", "bootstrap token ID.SECRET")
	flag.Var(&hashes, "discovery-token-ca-cert-hash", "CA pin sha256:HEX (repeatable)")
	unsafe := flag.Bool("discovery-token-unsafe-skip-ca-verification", false, "accept cluster-info without a CA pin")
	timeout := flag.Duration("discovery-timeout", 5*time.Minute, "kubeadm's timeouts.discovery")
	bootstrapKubeconfig := flag.String("bootstrap-kubeconfig", "", "where to write the bootstrap kubeconfig (optional)")
	klog.InitFlags(nil)
	flag.Parse()
	if *server == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "kubeadm-discovery: --server is required and no arguments are taken")
		os.Exit(2)
	}

	// What 'kubeadm join SERVER --token T --discovery-token-ca-cert-hash H'
	// puts in its JoinConfiguration: the token is also the TLS bootstrap
	// token.
	cfg := &kubeadmapi.JoinConfiguration{
		Discovery: kubeadmapi.Discovery{
			BootstrapToken: &kubeadmapi.BootstrapTokenDiscovery{
				Token:                    *token,
				APIServerEndpoint:        strings.TrimPrefix(*server, "https://"),
				CACertHashes:             hashes,
				UnsafeSkipCAVerification: *unsafe,
			},
			TLSBootstrapToken: *token,
		},
		Timeouts: &kubeadmapi.Timeouts{Discovery: &metav1.Duration{Duration: *timeout}},
	}
	// kubeadm join validates the whole JoinConfiguration; its discovery
	// part, under the same field path, is what these flags can get wrong.
	if errs := validation.ValidateDiscovery(&cfg.Discovery, field.NewPath("discovery")); len(errs) > 0 {
		fmt.Fprintln(os.Stderr, "kubeadm-discovery:", errs.ToAggregate())
		os.Exit(2)
	}
	start := time.Now()
	kubeconfig, err := discovery.For(nil, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeadm-discovery:", err)
		os.Exit(1)
	}
	_, cluster, err := kubeconfigutil.GetClusterFromKubeConfig(kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeadm-discovery:", err)
		os.Exit(1)
	}
	cas, err := certutil.ParseCertsPEM(cluster.CertificateAuthorityData)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeadm-discovery: the validated kubeconfig's CA:", err)
		os.Exit(1)
	}
	if *bootstrapKubeconfig != "" {
		if err := kubeconfigutil.WriteToDisk(*bootstrapKubeconfig, kubeconfig); err != nil {
			fmt.Fprintln(os.Stderr, "kubeadm-discovery: writing the bootstrap kubeconfig:", err)
			os.Exit(1)
		}
	}
	fmt.Printf("server %s\nca-cert-hash %s\n", cluster.Server, pubkeypin.Hash(cas[0]))
	// The time of the discovery alone, for bench/join.
	fmt.Fprintf(os.Stderr, "took %s\n", time.Since(start))
}
