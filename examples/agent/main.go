// Command agent is a small node agent built on tlsboot's library, the way an
// author outside this repository would write one (no internal packages). It
//
//  1. bootstraps the node's client certificate from a bootstrap kubeconfig
//     (bootstrap.Run), or keeps the one it already has;
//  2. keeps that certificate valid (a rotation.Manager on the kubelet-layout
//     certstore.Store): renewals authenticate with the current certificate,
//     each new certificate is stored only once the API server authenticates
//     it as the node (identity.ConfirmNode), and when there is no
//     certificate that works, it bootstraps again;
//  3. builds one client-go clientset on the Manager's live identity
//     (Manager.RESTConfig: each connection presents the current certificate,
//     and all of them are closed after a rotation) and with it renews a
//     coordination.k8s.io/v1 Lease named after the node every --heartbeat,
//     as the kubelet's node heartbeat does.
//
// It stops cleanly on SIGINT or SIGTERM. See README.md next to this file.
package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	coordinationclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/tlsboot/tlsboot/bootstrap"
	"github.com/tlsboot/tlsboot/certstore"
	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/identity"
	"github.com/tlsboot/tlsboot/kubeconfig"
	"github.com/tlsboot/tlsboot/rotation"
)

const (
	// leaseDuration is the Lease's leaseDurationSeconds: how long the node
	// counts as alive after a renewal. 40s is the kubelet's default.
	leaseDuration = 40
	// renewTimeout bounds one renewal of the Lease, retries included, so
	// that a hung connection cannot stop the heartbeat.
	renewTimeout = 10 * time.Second
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stopped := ctx.Err() != nil // by a signal: an error is then the stop itself
	stop()
	klog.Flush()
	if err != nil && !stopped {
		fmt.Fprintln(os.Stderr, "agent: "+err.Error())
		os.Exit(1)
	}
}

// run parses args and runs the agent until ctx ends.
func run(ctx context.Context, args []string) error {
	var boot bootstrap.Options
	fs := flag.NewFlagSet("agent", flag.ExitOnError) // usage errors exit 2
	fs.StringVar(&boot.BootstrapKubeconfigPath, "bootstrap-kubeconfig", "", "kubeconfig with the bootstrap credentials (a bootstrap token)")
	fs.StringVar(&boot.KubeconfigPath, "kubeconfig", "", "the node kubeconfig to write; it points at the certificate store")
	fs.StringVar(&boot.CertDir, "cert-dir", "", "the certificate directory (kubelet layout: kubelet-client-current.pem)")
	fs.StringVar(&boot.NodeName, "node-name", "", "the node's name: the agent authenticates as system:node:<name>")
	leaseNamespace := fs.String("lease-namespace", corev1.NamespaceNodeLease, "namespace of the node's Lease (NodeRestriction allows only kube-node-lease)")
	interval := fs.Duration("heartbeat", 2*time.Second, "how often to renew the Lease")
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	fs.Var(klogFlags.Lookup("v").Value, "v", "log verbosity (klog): 2 shows connections closed after a rotation")
	_ = fs.Parse(args) // ExitOnError: a bad flag never gets here
	for _, f := range []struct{ name, value string }{{"bootstrap-kubeconfig", boot.BootstrapKubeconfigPath},
		{"kubeconfig", boot.KubeconfigPath}, {"cert-dir", boot.CertDir}, {"node-name", boot.NodeName}} {
		if f.value == "" {
			return fmt.Errorf("--%s is required", f.name)
		}
	}
	if *interval <= 0 {
		return fmt.Errorf("--heartbeat %s must be positive", *interval)
	}
	logger := klog.Background()
	ctx = klog.NewContext(ctx, logger) // the library logs through the context's logger

	// 1. Bootstrap. Run returns at once when the kubeconfig already holds a
	// usable certificate; otherwise it asks for one with the bootstrap
	// credentials and waits until the CSR is approved and signed.
	res, err := bootstrap.Run(ctx, boot)
	if err != nil {
		return err
	}
	logger.Info("Node identity ready", "node", boot.NodeName, "bootstrapped", res.Bootstrapped)

	// 2. Keep it valid. The store is the one bootstrap.Run wrote; the node
	// kubeconfig gives the API server's address and CA.
	store, err := certstore.Open(certstore.Options{Dir: boot.CertDir, Prefix: bootstrap.DefaultCertPrefix})
	if err != nil {
		return err
	}
	cluster, err := kubeconfig.Load(boot.KubeconfigPath)
	if err != nil {
		return err
	}
	var clientset *kubernetes.Clientset // on the live identity, made below before Run
	mgr, err := rotation.New(rotation.Options{
		Name:  "client",
		Store: store,
		// Ask for a node client certificate: system:node:<name> in system:nodes.
		Template: func(pub crypto.PublicKey) csr.Request { return csr.NodeClient(boot.NodeName, pub) },
		// Renewals authenticate as the node, with the current certificate.
		Client: func(context.Context) (kubernetes.Interface, error) { return clientset, nil },
		// Before an issued certificate is stored, the API server must
		// authenticate it, with nothing else, as system:node:<name> in
		// system:nodes: only the API server knows which CAs it trusts for
		// client certificates, and the kubeconfig's CA (which verifies the
		// API server) is often not the one that signs them. Roots, an
		// offline chain check against a CA file you name, is optional.
		Confirm: func(ctx context.Context, csrName string, certPEM, keyPEM []byte) error {
			return identity.ConfirmNode(ctx, cluster, csrName, boot.NodeName, certPEM, keyPEM)
		},
		// Without a working certificate (missing, expired, or rejected with
		// a 401), bootstrap again, with a new key so that the CSR is new.
		Recover: func(ctx context.Context) (time.Duration, error) {
			again := boot
			again.Force, again.FreshKey = true, true
			res, err := bootstrap.Run(ctx, again)
			if err != nil {
				return 0, err
			}
			return res.Issuance, nil
		},
		// At start, ask the API server who we are; a 401 makes the Manager
		// recover instead of waiting for the certificate's deadline.
		Verify: func(ctx context.Context) error {
			r, err := clientset.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
			if err != nil {
				return csr.ClassifyServerError(err, cluster.Host, "verifying the client certificate", "")
			}
			logger.Info("Authenticated", "user", r.Status.UserInfo.Username)
			return nil
		},
		Hooks: rotation.Hooks{
			// Called on the Manager's goroutine whenever the certificate
			// changes: at start and after each rotation.
			Current: func(_ string, c *x509.Certificate) {
				if c != nil {
					logger.Info("Client certificate in use", "serial", c.SerialNumber.Text(16), "not_after", c.NotAfter.UTC().Format(time.RFC3339))
				}
			},
		},
	})
	if err != nil {
		return err
	}

	// 3. One clientset for everything, on the live identity.
	cfg, err := mgr.RESTConfig(cluster)
	if err != nil {
		return err
	}
	cfg.UserAgent = "tlsboot-example-agent"
	if clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}

	done := make(chan error, 1)
	go func() { done <- mgr.Run(ctx) }()
	heartbeat(ctx, clientset.CoordinationV1().Leases(*leaseNamespace), boot.NodeName, *interval, mgr)
	err = <-done // Run returns once ctx has ended
	logger.Info("Stopped")
	return err
}

// heartbeat renews the Lease name every interval until ctx ends, logging
// each renewal with the serial of the certificate in use.
func heartbeat(ctx context.Context, leases coordinationclient.LeaseInterface, name string, interval time.Duration, mgr *rotation.Manager) {
	logger := klog.FromContext(ctx)
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		lease, err := renewLease(ctx, leases, name)
		switch {
		case ctx.Err() != nil: // stopping
		case err != nil:
			logger.Error(err, "Heartbeat failed", "lease", name)
		default:
			logger.Info("Lease renewed", "lease", klog.KObj(lease),
				"renew_time", lease.Spec.RenewTime.UTC().Format(time.RFC3339Nano), "serial", serial(mgr.Current()))
		}
	}, interval)
}

// serial is the hexadecimal serial number of cert, "" for none.
func serial(cert *tls.Certificate) string {
	if cert == nil {
		return ""
	}
	return cert.Leaf.SerialNumber.Text(16) // Current always sets Leaf
}

// renewLease sets the Lease's renewTime to now, creating the Lease the
// first time.
//
// A rotation closes the connections made with the previous certificate, so a
// request in flight at that moment fails without an answer from the server.
// client-go retries reads on its own but not writes; like the kubelet's
// lease controller, retry here before calling the heartbeat failed. An
// answer from the server (401, 403, ...) is final, except a conflict.
func renewLease(ctx context.Context, leases coordinationclient.LeaseInterface, name string) (*coordinationv1.Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, renewTimeout)
	defer cancel()
	retriable := func(err error) bool {
		var status apierrors.APIStatus
		return ctx.Err() == nil && (!errors.As(err, &status) || apierrors.IsConflict(err))
	}
	var out *coordinationv1.Lease
	err := retry.OnError(retry.DefaultRetry, retriable, func() error {
		lease, err := leases.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			lease, err = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name}}, nil
		}
		if err != nil {
			return err
		}
		now := metav1.NewMicroTime(time.Now())
		lease.Spec.HolderIdentity = &name
		lease.Spec.LeaseDurationSeconds = ptr.To[int32](leaseDuration)
		lease.Spec.RenewTime = &now
		if lease.ResourceVersion == "" {
			out, err = leases.Create(ctx, lease, metav1.CreateOptions{})
		} else {
			out, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
		}
		return err
	})
	return out, err
}
