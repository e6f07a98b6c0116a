// Package agent is the `tlsboot run` daemon: it bootstraps the node's client
// certificate when needed, keeps it and optionally the serving certificate
// valid with rotation.Managers, runs the post-rotation hook, forces a
// rotation on SIGHUP and serves metrics, health and readiness.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/bootstrap"
	"github.com/tlsboot/tlsboot/certstore"
	"github.com/tlsboot/tlsboot/internal/metrics"
	"github.com/tlsboot/tlsboot/rotation"
)

// ServingPrefix names the serving certificate's files, as the kubelet does.
const ServingPrefix = "kubelet-server"

// DefaultMetricsAddress is where metrics, /healthz and /readyz are served.
const DefaultMetricsAddress = "127.0.0.1:10290"

// Options configures Run.
type Options struct {
	// Bootstrap holds the node name, files, key type and timeouts, as for
	// `tlsboot bootstrap`. The bootstrap kubeconfig may be absent: the
	// agent then cannot recover an expired or rejected certificate on its
	// own, says so and keeps retrying.
	Bootstrap bootstrap.Options
	// RenewBefore is the floor of the renewal point: renew at the latest
	// when this much lifetime is left. 0: only the jittered 70–90%.
	RenewBefore time.Duration
	// ReuseKey renews with the current key instead of a new one.
	ReuseKey bool
	// Serving enables the serving certificate, with SANs Hostname and NodeIPs.
	Serving  bool
	Hostname string
	NodeIPs  []net.IP
	// ServingCAFile, if set, is a PEM file of the CA certificates that an
	// issued serving certificate must chain to: the CA of the cluster's
	// kubernetes.io/kubelet-serving signer. Without it a serving
	// certificate gets the offline checks of its request only (key,
	// names, usages, not a CA, validity), as the kubelet's does: the API
	// server cannot vouch for it. Validate reads it once; the agent reads
	// it again at every renewal. Only with Serving.
	ServingCAFile string
	// OnRotate is a shell command run after each rotation; "" for none.
	OnRotate string
	// MetricsAddress serves /metrics, /healthz and /readyz; "" or "0" disables.
	MetricsAddress string
	// InitialBackoff and MaxBackoff pace retries; zero takes rotation's defaults.
	InitialBackoff, MaxBackoff time.Duration
}

// Validate reports the first invalid option. It reads ServingCAFile, if
// set: a file that cannot be read or holds no PEM certificate is a
// *ServingCAError.
func (o Options) Validate() error {
	switch {
	case o.Bootstrap.KubeconfigPath == "" || o.Bootstrap.CertDir == "" || o.Bootstrap.NodeName == "":
		return errors.New("the kubeconfig, the certificate directory and the node name are required")
	case o.RenewBefore < 0:
		return fmt.Errorf("renew-before %v must not be negative", o.RenewBefore)
	case o.Serving && o.Hostname == "" && len(o.NodeIPs) == 0:
		return errors.New("the serving certificate needs a host name or at least one node IP")
	case !o.Serving && (o.Hostname != "" || len(o.NodeIPs) > 0):
		return errors.New("a host name or node IPs are only used with the serving certificate")
	case !o.Serving && o.ServingCAFile != "":
		return errors.New("a serving CA file is only used with the serving certificate")
	case o.ServingCAFile != "":
		_, err := readCAFile(o.ServingCAFile)
		return err
	}
	return nil
}

// agent is one run of the daemon.
type agent struct {
	opts    Options
	client  *certstore.Store
	clientM *rotation.Manager
	hooks   sync.WaitGroup // running on-rotate commands
	// releaseExecutable adds the executable's pages to what releaseMemory
	// gives back (ReleaseExecutableEnv).
	releaseExecutable bool
}

// Run runs the agent until ctx ends, then returns nil once every goroutine
// has stopped. A certificate being written when ctx ends is completed
// first, so the store is always consistent. It fails at start for bad
// options, an unusable certificate directory or metrics address.
func Run(ctx context.Context, opts Options) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	if opts.Bootstrap.CertPrefix == "" {
		opts.Bootstrap.CertPrefix = bootstrap.DefaultCertPrefix
	}
	a := &agent{opts: opts, releaseExecutable: releaseExecutableEnabled()}
	var err error
	if a.client, err = openStore(opts.Bootstrap.CertDir, opts.Bootstrap.CertPrefix); err != nil {
		return err
	}
	var l net.Listener
	if opts.MetricsAddress != "" && opts.MetricsAddress != "0" {
		if l, err = metrics.Listen(opts.MetricsAddress); err != nil {
			return err
		}
		defer l.Close() // on early errors; Serve closes it otherwise
	}
	return a.run(ctx, l)
}

func (a *agent) run(ctx context.Context, l net.Listener) error {
	// SIGHUP is caught from here on, before /readyz can answer: a script
	// that waits for readiness and then sends SIGHUP must get a renewal,
	// not the default action of a SIGHUP, which ends the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reg := metrics.NewRegistry()
	hooks := a.withMemoryRelease(ctx, a.withOnRotate(ctx, metrics.NewAgent(reg).Hooks()))
	ready := make(chan struct{})
	var readyOnce sync.Once
	clientHooks := hooks
	clientHooks.Current = chain(hooks.Current, func(valid bool) {
		if valid {
			readyOnce.Do(func() {
				close(ready)
				// Start-up is over: what it touched can go (see
				// releaseMemory).
				a.releaseMemory(ctx)
			})
		}
	})
	var err error
	if a.clientM, err = rotation.New(a.clientOptions(clientHooks)); err != nil {
		return err
	}
	managers := []*rotation.Manager{a.clientM}
	var serving *rotation.Manager
	if a.opts.Serving {
		if serving, err = a.servingManager(hooks); err != nil {
			return err
		}
		managers = append(managers, serving)
	}
	var wg sync.WaitGroup // the managers and the metrics server
	if l != nil {
		a.serve(ctx, &wg, l, &metrics.Server{Registry: reg, Ready: a.ready})
	}
	wg.Go(func() { a.clientM.Run(ctx) })
	if serving != nil {
		wg.Go(func() {
			// The serving certificate is requested with the client
			// certificate: wait for one instead of failing at once.
			select {
			case <-ready:
				serving.Run(ctx)
			case <-ctx.Done():
			}
		})
	}
	a.forceOnSIGHUP(ctx, hup, managers)
	a.stop(ctx, &wg)
	return nil
}

// stop waits, once ctx has ended, for the goroutines of wg (the managers
// and the metrics server) and then for the on-rotate commands. In this
// order every rotation, including one a manager completes during the
// shutdown, has either started its command before the agent waits for the
// commands, or logged that it skipped it (see withOnRotate); no command
// outlives Run.
func (a *agent) stop(ctx context.Context, wg *sync.WaitGroup) {
	klog.FromContext(ctx).Info("Agent stopping")
	wg.Wait()
	a.hooks.Wait()
}

func (a *agent) serve(ctx context.Context, wg *sync.WaitGroup, l net.Listener, srv *metrics.Server) {
	logger := klog.FromContext(ctx)
	logger.Info("Serving metrics and health endpoints", "address", l.Addr().String())
	wg.Go(func() {
		if err := srv.Serve(ctx, l); err != nil {
			logger.Error(err, "Metrics server stopped")
		}
	})
}

// forceOnSIGHUP triggers a renewal of every certificate on each signal
// from hup until ctx ends.
func (a *agent) forceOnSIGHUP(ctx context.Context, hup <-chan os.Signal, managers []*rotation.Manager) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			klog.FromContext(ctx).Info("SIGHUP: renewing the certificates now")
			for _, m := range managers {
				m.Trigger()
			}
		}
	}
}

// ready reports nil when a valid client certificate is on disk, or why not
// and what the agent is doing about it.
func (a *agent) ready() error {
	cur, err := a.client.Current()
	now := time.Now()
	var why string
	switch {
	case err != nil:
		why = fmt.Sprintf("no client certificate: %v", err)
	case now.Before(cur.Leaf.NotBefore):
		why = fmt.Sprintf("client certificate %s is not valid before %s", a.client.CurrentPath(), cur.Leaf.NotBefore.UTC().Format(time.RFC3339))
	case now.After(cur.Leaf.NotAfter):
		why = fmt.Sprintf("client certificate %s expired at %s", a.client.CurrentPath(), cur.Leaf.NotAfter.UTC().Format(time.RFC3339))
	default:
		return nil
	}
	if a.clientM != nil {
		if st := a.clientM.Status(); st.LastError != nil {
			why += "; last attempt: " + st.LastError.Error()
		}
	}
	return errors.New(why)
}

func openStore(dir, prefix string) (*certstore.Store, error) {
	s, err := certstore.Open(certstore.Options{Dir: dir, Prefix: prefix})
	if err != nil {
		return nil, fmt.Errorf("certificate directory %s: %w", dir, err)
	}
	return s, nil
}
