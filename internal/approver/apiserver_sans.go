package approver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/approval"
)

// The API server's own serving certificate names every name and IP its
// clients dial (a load balancer's name and VIP included), which nothing
// else in the cluster lists: the approver reads it with a TLS handshake,
// without trusting it (only its SANs are kept, to refuse them to nodes),
// from the API server host it is configured with and from each address of
// the default/kubernetes EndpointSlices, also with SNI for the names it
// knows the API server by (its own kubeconfig's host, cluster-info's
// server), since a server may present another certificate per name.
const (
	// servingNamesRefresh is how often the certificates are read again;
	// an EndpointSlice or cluster-info change reads them at once.
	servingNamesRefresh = time.Minute
	// servingDialTimeout bounds one TCP connect and handshake.
	servingDialTimeout = 5 * time.Second
	// maxDialAddresses and maxSNINames bound one refresh to
	// maxDialAddresses × (1 + maxSNINames) handshakes, servingDialParallel
	// at a time.
	maxDialAddresses    = 8
	maxSNINames         = 4
	servingDialParallel = 8
	// maxNamesPerCertificate bounds the SANs kept of one certificate.
	maxNamesPerCertificate = 256
)

// dialTarget is one handshake: an address (host:port) and the server name
// sent (SNI), "" for none.
type dialTarget struct{ addr, sni string }

// readCertificateFunc returns the leaf certificate the server at addr
// presents for sni. It must return within ctx and must not trust it.
type readCertificateFunc func(ctx context.Context, addr, sni string) (*x509.Certificate, error)

// readServingCertificate does a TLS handshake with addr and returns the
// leaf certificate the server presented, unverified: nothing is trusted
// and nothing is sent after the handshake. Bounded by servingDialTimeout.
func readServingCertificate(ctx context.Context, addr, sni string) (*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, servingDialTimeout)
	defer cancel()
	var leaf *x509.Certificate
	cfg := &tls.Config{
		ServerName: sni,
		// Not trusted: its names are only ever refused to nodes, so a
		// forged certificate can at worst refuse a name, never grant one.
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 {
				leaf = cs.PeerCertificates[0]
			}
			return nil
		},
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: servingDialTimeout}, Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if conn != nil {
		conn.Close()
	}
	if err != nil {
		return nil, err
	}
	if leaf == nil {
		return nil, errors.New("the server presented no certificate")
	}
	return leaf, nil
}

// certificateNames returns the DNS names and IPs of cert in canonical form
// (CanonicalAddress), at most maxNamesPerCertificate.
func certificateNames(cert *x509.Certificate) []string {
	out := make([]string, 0, min(len(cert.DNSNames)+len(cert.IPAddresses), maxNamesPerCertificate))
	for _, ip := range cert.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap().String())
		}
	}
	for _, n := range cert.DNSNames {
		out = append(out, CanonicalAddress(n))
	}
	if len(out) > maxNamesPerCertificate {
		out = out[:maxNamesPerCertificate]
	}
	return out
}

// servingNames holds the SANs of the API server's serving certificates,
// the last good read of each target. Safe for concurrent use.
type servingNames struct {
	read readCertificateFunc
	// trigger asks the loop to read again now (non-blocking, idempotent).
	trigger chan struct{}
	// known turns true once one certificate was read; it never turns
	// false again (the last good names are kept when a dial fails).
	known atomic.Bool
	// firstKnown is closed when known turns true.
	firstKnown chan struct{}
	once       sync.Once

	mu       sync.RWMutex // guards byTarget and names
	byTarget map[dialTarget][]string
	names    map[string]struct{} // the union of byTarget
}

func newServingNames(read readCertificateFunc) *servingNames {
	return &servingNames{read: read, trigger: make(chan struct{}, 1), firstKnown: make(chan struct{}), byTarget: map[dialTarget][]string{}, names: map[string]struct{}{}}
}

// Trigger asks for a refresh; it never blocks. A nil s does nothing.
func (s *servingNames) Trigger() {
	if s == nil {
		return
	}
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// has reports whether addr (canonical) is a SAN of a serving certificate read.
func (s *servingNames) has(addr string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.names[addr]
	return ok
}

// refresh reads the certificate of every target, servingDialParallel at a
// time, and keeps the names of each read; a target that fails keeps its
// last good names, a target no longer listed is dropped. It returns how
// many reads failed, and the last error.
func (s *servingNames) refresh(ctx context.Context, targets []dialTarget) (failed int, lastErr error) {
	var mu sync.Mutex // guards failed and lastErr
	sem := make(chan struct{}, servingDialParallel)
	var wg sync.WaitGroup
	for _, t := range targets {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			cert, err := s.read(ctx, t.addr, t.sni)
			if err != nil {
				mu.Lock()
				failed, lastErr = failed+1, err
				mu.Unlock()
				return
			}
			s.store(t, certificateNames(cert))
		})
	}
	wg.Wait()
	s.retain(targets)
	return failed, lastErr
}

func (s *servingNames) store(t dialTarget, names []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byTarget[t] = names
	s.rebuild()
	s.known.Store(true)
	s.once.Do(func() { close(s.firstKnown) })
}

// retain drops the names of targets that are no longer listed.
func (s *servingNames) retain(targets []dialTarget) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t := range s.byTarget {
		if !slices.Contains(targets, t) {
			delete(s.byTarget, t)
		}
	}
	s.rebuild()
}

// rebuild recomputes names; s.mu must be held.
func (s *servingNames) rebuild() {
	names := map[string]struct{}{}
	for _, ns := range s.byTarget {
		for _, n := range ns {
			names[n] = struct{}{}
		}
	}
	s.names = names
}

// hostPort returns the host:port of a server URL (or host[:port]), with
// defPort when it has none; "" when it does not parse.
func hostPort(server, defPort string) string {
	if u, err := url.Parse(server); err == nil && u.Host != "" {
		server = u.Host
	}
	if h, p, err := net.SplitHostPort(server); err == nil {
		return net.JoinHostPort(h, p)
	}
	if server == "" {
		return ""
	}
	return net.JoinHostPort(server, defPort)
}

// dialTargets lists the handshakes of one refresh: the configured API
// server, each address:port of the default/kubernetes EndpointSlices and
// the servers of cluster-info, each without SNI and with each name the API
// server is known by. Bounded by maxDialAddresses and maxSNINames.
func (c *Controller) dialTargets() []dialTarget {
	var addrs, names []string
	addAddr := func(a string) {
		if a != "" && !slices.Contains(addrs, a) && len(addrs) < maxDialAddresses {
			addrs = append(addrs, a)
		}
	}
	addName := func(hp string) {
		h, _, err := net.SplitHostPort(hp)
		if _, ipErr := netip.ParseAddr(h); err != nil || ipErr == nil || slices.Contains(names, h) || len(names) >= maxSNINames {
			return
		}
		names = append(names, h)
	}
	if c.opts.APIServer != "" {
		hp := hostPort(c.opts.APIServer, "443")
		addAddr(hp)
		addName(hp)
	}
	for _, server := range c.cluster.clusterInfoServers() {
		hp := hostPort(server, "443")
		addAddr(hp)
		addName(hp)
	}
	for _, a := range c.apiServerEndpoints() {
		addAddr(a)
	}
	targets := make([]dialTarget, 0, len(addrs)*(1+len(names)))
	for _, a := range addrs {
		targets = append(targets, dialTarget{addr: a})
		for _, n := range names {
			targets = append(targets, dialTarget{addr: a, sni: n})
		}
	}
	return targets
}

// apiServerEndpoints returns address:port of every endpoint of the
// default/kubernetes EndpointSlices (port 443 if a slice names none).
func (c *Controller) apiServerEndpoints() []string {
	if c.cluster.slices == nil {
		return nil
	}
	list, _ := c.cluster.slices.List(labels.Everything())
	var out []string
	for _, s := range list {
		if s.Labels[discoveryv1.LabelServiceName] != apiServerService {
			continue
		}
		ports := []string{"443"}
		if len(s.Ports) > 0 {
			ports = ports[:0]
			for _, p := range s.Ports {
				if p.Port != nil {
					ports = append(ports, strconv.Itoa(int(*p.Port)))
				}
			}
		}
		for _, ep := range s.Endpoints {
			for _, a := range ep.Addresses {
				for _, p := range ports {
					out = append(out, net.JoinHostPort(a, p))
				}
			}
		}
	}
	return out
}

// startServingNames starts reading the API server's serving certificates
// and waits until one was read or the first refresh is over (each
// handshake bounded by servingDialTimeout), so that the workers usually
// start with the names known. stop ends the reads and waits for them.
func (c *Controller) startServingNames(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	first, stopped := c.runServingNames(ctx)
	select {
	case <-c.cluster.serving.firstKnown:
	case <-first:
	case <-ctx.Done():
	}
	return func() {
		cancel()
		<-stopped
	}
}

// runServingNames reads the API server's serving certificates until ctx
// ends: at once, then every servingNamesRefresh and on Trigger. After the
// first certificate read it requeues the pending serving CSRs, which
// waited for it. first is closed when the first refresh is over, stopped
// when the reads have stopped.
func (c *Controller) runServingNames(ctx context.Context) (first, stopped <-chan struct{}) {
	s := c.cluster.serving
	done, end := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(end)
		logger := klog.FromContext(ctx)
		ticker := c.opts.Clock.NewTicker(servingNamesRefresh)
		defer ticker.Stop()
		isFirst := true
		for {
			wasKnown := s.known.Load()
			targets := c.dialTargets()
			failed, err := s.refresh(ctx, targets)
			switch {
			case !s.known.Load():
				if err == nil {
					err = errors.New("no API server address to read it from")
				}
				logger.Error(err, "Reading the API server's serving certificate failed: serving CSRs wait until it is read; check that the approver reaches its API server and the default/kubernetes EndpointSlice addresses", "targets", len(targets))
			case failed > 0:
				logger.V(2).Info("Reading some of the API server's serving certificates failed; keeping their last names", "failed", failed, "targets", len(targets), "err", err)
			}
			if !wasKnown && s.known.Load() {
				logger.Info("Read the API server's serving certificate: its names and addresses are reserved")
				c.requeueServing()
			}
			if isFirst {
				close(done)
				isFirst = false
			}
			select {
			case <-ctx.Done():
				return
			case <-ticker.C():
			case <-s.trigger:
			}
		}
	}()
	return done, end
}

// requeueServing queues every pending serving CSR.
func (c *Controller) requeueServing() {
	inf, ok := c.csrs[certificatesv1.KubeletServingSignerName]
	if !ok {
		return
	}
	for _, obj := range inf.Informer().GetStore().List() {
		if csr, ok := obj.(*certificatesv1.CertificateSigningRequest); ok && !approval.Decided(csr) {
			c.queue.Add(key{certificatesv1.KubeletServingSignerName, csr.Name})
		}
	}
}

// refreshOnChange is an event handler that reads the certificates again
// when the objects naming the API server's addresses change.
func (c *Controller) refreshOnChange() cache.ResourceEventHandler {
	trigger := func(any) { c.cluster.serving.Trigger() }
	return cache.ResourceEventHandlerFuncs{AddFunc: trigger, UpdateFunc: func(_, o any) { trigger(o) }, DeleteFunc: trigger}
}
