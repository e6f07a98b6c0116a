// Package discovery finds and verifies a cluster's API server address and
// CA from a bootstrap token and CA pins: kubeadm's token discovery, which
// `tlsboot join` runs before it bootstraps.
//
// The steps, each of which must pass:
//
//  1. Fetch the public ConfigMap kube-public/cluster-info anonymously over
//     TLS, trusting nothing yet.
//  2. Verify its detached JWS for this token's ID (HS256 keyed with the
//     token's secret, signed by kube-controller-manager's bootstrapsigner).
//     A signature that is not there yet is waited for, with backoff, until
//     Options.Timeout; every other failure ends Discover at once.
//  3. Parse the kubeconfig it holds: one cluster, an https server, a CA.
//  4. Check that a CA in it has the public key of one of the pins.
//  5. Fetch cluster-info again, verifying TLS with the pinned CAs only,
//     and require the same kubeconfig.
//
// Attacker model. Whoever holds the token can sign any cluster-info, so the
// signature alone proves nothing against a man in the middle who knows the
// token; the pin does (step 4), and step 5 proves that the server that
// holds the pinned CA's key serves that very content. Against an attacker
// without the token the signature suffices, which is what the unsafe
// skip-CA-verification mode relies on. Safer than kubeadm in one way: only
// the pinned certificates of the CA bundle are trusted in step 5 and
// handed to the caller, so a CA appended to the bundle by someone who
// knows the token is never trusted. The pin is the SHA-256 of the CA's
// SubjectPublicKeyInfo, computed here in a few lines (kubeadm's pubkeypin
// lives in k8s.io/kubernetes, which tlsboot does not import).
package discovery

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/cluster-bootstrap/token/jws"
	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/token"
)

// DefaultTimeout is how long Discover waits for a signature by default.
const DefaultTimeout = 5 * time.Minute

// Options configures Discover.
type Options struct {
	// Server is the API server to ask: https://HOST:PORT or HOST:PORT
	// (required).
	Server string
	// Token is the bootstrap token (required).
	Token token.Token
	// Pins are the acceptable CA pins. At least one is required unless
	// UnsafeSkipCAVerification.
	Pins []Pin
	// UnsafeSkipCAVerification trusts the CA in cluster-info on the
	// strength of the signature alone: anyone who knows the token and can
	// intercept this node's traffic can then make it trust another CA.
	UnsafeSkipCAVerification bool
	// Timeout bounds the wait for a signature. Default DefaultTimeout.
	Timeout time.Duration

	backoff wait.Backoff // tests shorten it
}

// Validate checks the options without any I/O.
func (o Options) Validate() error {
	if _, err := ServerURL(o.Server); err != nil {
		return err
	}
	if o.Token.ID == "" {
		return fmt.Errorf("a bootstrap token is required")
	}
	if len(o.Pins) == 0 && !o.UnsafeSkipCAVerification {
		return fmt.Errorf("a CA pin is required: without one, anyone who knows the token and can intercept this node's traffic can make it trust their CA and talk to their server; pass --discovery-token-ca-cert-hash sha256:<hash> (printed by 'tlsboot token create --print-join-command'), or accept that risk with --discovery-token-unsafe-skip-ca-verification")
	}
	for _, p := range o.Pins {
		if _, err := ParsePin(string(p)); err != nil {
			return err
		}
	}
	if o.Timeout < 0 {
		return fmt.Errorf("the discovery timeout must not be negative")
	}
	return nil
}

// ServerURL turns HOST:PORT or https://HOST:PORT into the https URL of the
// API server, or returns a one-line error.
func ServerURL(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("the API server address is required (HOST:PORT or https://HOST:PORT)")
	}
	raw := s
	if !strings.Contains(s, "://") {
		raw = "https://" + s
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		return "", fmt.Errorf("API server address %q is not HOST:PORT or https://HOST:PORT", s)
	}
	return "https://" + u.Host, nil
}

// Result is a verified cluster-info.
type Result struct {
	// Server is the API server URL that cluster-info names (as kubeadm,
	// this is used for bootstrapping, not the address that was asked).
	Server string
	// CAData is the PEM of the CA certificates to trust: the pinned ones,
	// or the whole bundle when CA verification was skipped.
	CAData []byte
	// Warnings are for the operator: CA verification skipped, unpinned
	// certificates dropped from the bundle.
	Warnings []string
}

// Discover runs the steps of the package comment. It returns when a
// verified cluster-info is found, on the first failure, or when ctx ends.
// Every error after Validate is an *Error. It logs at verbosity 1 through
// the logger in ctx, never the token's secret.
func Discover(ctx context.Context, opts Options) (*Result, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	server, _ := ServerURL(opts.Server)
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.backoff.Duration == 0 {
		// Starts fast (bootstrapsigner signs within a second of a new
		// token) and ends at one request every 10 s.
		opts.backoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 1 << 30, Cap: 10 * time.Second}
	}
	cm, sig, err := fetchSigned(ctx, server, opts)
	if err != nil {
		return nil, err
	}
	content := cm.Data[bootstrapapi.KubeConfigKey]
	if err := verifySignature(server, content, sig, opts.Token); err != nil {
		return nil, err
	}
	srv, certs, err := parseKubeconfig(server, content)
	if err != nil {
		return nil, err
	}
	res := &Result{Server: srv}
	trusted, trust := certs, "the pinned CA"
	if len(opts.Pins) > 0 {
		if trusted, err = pinned(server, certs, opts.Pins); err != nil {
			return nil, err
		}
		if n := len(certs) - len(trusted); n > 0 {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%d certificate(s) in the CA bundle of cluster-info match no pin and are not trusted", n))
		}
	} else {
		trust = "the CA named in cluster-info"
		res.Warnings = append(res.Warnings, fmt.Sprintf("CA verification skipped (--discovery-token-unsafe-skip-ca-verification): trusting the CA that %s presented (%s) because cluster-info is signed with the token; anyone who knows the token and can intercept this node's traffic could have presented their own", server, pinList(certs)))
	}
	pool := x509.NewCertPool()
	for _, c := range trusted {
		pool.AddCert(c)
		res.CAData = append(res.CAData, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	klog.FromContext(ctx).V(1).Info("cluster-info signed and pinned; fetching it again over verified TLS", "server", server, "token_id", opts.Token.ID)
	again, err := fetch(ctx, server, pool, trust)
	if err != nil {
		return nil, err
	}
	if got := again.Data[bootstrapapi.KubeConfigKey]; got != content {
		return nil, &Error{Kind: ErrNotVerified, Server: server, msg: fmt.Sprintf("cluster-info fetched from %s over TLS verified with %s differs from the signed copy fetched before: someone may be in the middle between this node and the API server (or cluster-info changed just now: run join again); nothing was written", server, trust)}
	}
	return res, nil
}

// fetchSigned fetches cluster-info until it holds a signature for the
// token's ID or opts.Timeout passes (step 1 and its retry).
func fetchSigned(ctx context.Context, server string, opts Options) (*corev1.ConfigMap, string, error) {
	deadline := time.Now().Add(opts.Timeout)
	backoff := opts.backoff
	logger := klog.FromContext(ctx)
	for {
		cm, err := fetch(ctx, server, nil, "")
		if err != nil {
			return nil, "", err
		}
		if cm.Data[bootstrapapi.KubeConfigKey] == "" {
			return nil, "", &Error{Kind: ErrNotSetUp, Server: server, msg: fmt.Sprintf("cluster-info on %s holds no kubeconfig: run 'tlsboot setup --kubeconfig ADMIN' against this cluster", server)}
		}
		if sig := cm.Data[bootstrapapi.JWSSignatureKeyPrefix+opts.Token.ID]; sig != "" {
			return cm, sig, nil
		}
		delay := backoff.Step()
		if time.Now().Add(delay).After(deadline) {
			return nil, "", &Error{Kind: ErrNoSignature, Server: server, msg: fmt.Sprintf("cluster-info on %s has no signature for token ID %s (waited %s): the token is wrong, expired or deleted, or kube-controller-manager does not run the bootstrapsigner controller (see 'tlsboot setup'); create a new token with 'tlsboot token create'", server, opts.Token.ID, opts.Timeout)}
		}
		logger.Info("Waiting for cluster-info to be signed for the token", "server", server, "token_id", opts.Token.ID, "retry_in", delay.Round(time.Millisecond))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, "", &Error{Kind: ErrNoSignature, Server: server, Err: ctx.Err(), msg: fmt.Sprintf("stopped waiting for a signature of cluster-info on %s for token ID %s: %v", server, opts.Token.ID, ctx.Err())}
		case <-t.C:
		}
	}
}

// verifySignature is step 2: the detached JWS must be the one the token's
// secret makes. The comparison is constant-time; cluster-bootstrap's
// DetachedTokenIsValid compares with ==.
func verifySignature(server, content, sig string, tok token.Token) error {
	want, err := jws.ComputeDetachedSignature(content, tok.ID, tok.Secret)
	if err == nil && subtle.ConstantTimeCompare([]byte(want), []byte(sig)) == 1 {
		return nil
	}
	return &Error{Kind: ErrBadSignature, Server: server, msg: fmt.Sprintf("cluster-info on %s is signed for token ID %s, but not with this token's secret: the secret (after the dot) of --token is wrong, or cluster-info was altered on the way; nothing was written", server, tok.ID)}
}

// parseKubeconfig is step 3.
func parseKubeconfig(server, content string) (string, []*x509.Certificate, error) {
	bad := func(format string, args ...any) (string, []*x509.Certificate, error) {
		return "", nil, &Error{Kind: ErrMalformed, Server: server, msg: fmt.Sprintf("the kubeconfig in cluster-info on %s %s: fix cluster-info with 'tlsboot setup --kubeconfig ADMIN'", server, fmt.Sprintf(format, args...))}
	}
	cfg, err := clientcmd.Load([]byte(content))
	if err != nil {
		return bad("does not parse (%v)", oneLine(err))
	}
	if len(cfg.Clusters) != 1 {
		return bad("holds %d clusters, not one", len(cfg.Clusters))
	}
	var cluster *clientcmdapi.Cluster
	for _, c := range cfg.Clusters {
		cluster = c
	}
	u, err := url.Parse(cluster.Server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return bad("names server %q, not an https URL", bounded(cluster.Server))
	}
	var certs []*x509.Certificate
	rest := bytes.TrimSpace(cluster.CertificateAuthorityData)
	for len(rest) > 0 {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil || block.Type != "CERTIFICATE" {
			return bad("has certificate-authority-data that is not PEM certificates")
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return bad("has a CA certificate that does not parse (%v)", err)
		}
		certs = append(certs, c)
		rest = bytes.TrimSpace(rest)
	}
	if len(certs) == 0 {
		return bad("has no certificate-authority-data")
	}
	return cluster.Server, certs, nil
}

// pinned is step 4: the certificates whose key matches a pin.
func pinned(server string, certs []*x509.Certificate, pins []Pin) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	var presented []Pin
	for _, c := range certs {
		p := PinOf(c)
		presented = append(presented, p)
		for _, want := range pins {
			if subtle.ConstantTimeCompare([]byte(p), []byte(want)) == 1 {
				out = append(out, c)
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, &Error{Kind: ErrPinMismatch, Server: server, Presented: presented, msg: fmt.Sprintf("the CA that %s presents in cluster-info has the public key hash %s, which matches no --discovery-token-ca-cert-hash: compare it with the hash of the cluster's CA (printed by 'tlsboot token create --print-join-command' on the control plane); if they differ, someone may be in the middle; nothing was written", server, pinList(certs))}
	}
	return out, nil
}

// pinList lists the pins of certs, at most maxPins of them: the list comes
// from the server, and a message repeats only a bounded part of it.
func pinList(certs []*x509.Certificate) string {
	var s []string
	for i, c := range certs {
		if i == maxPins {
			s = append(s, fmt.Sprintf("and %d more", len(certs)-maxPins))
			break
		}
		s = append(s, string(PinOf(c)))
	}
	return strings.Join(s, ", ")
}

// oneLine is err's text on one line, bounded: parse errors may quote what
// the server sent.
func oneLine(err error) string { return bounded(strings.Join(strings.Fields(err.Error()), " ")) }

// Bounds of what a message repeats from the server's answer.
const (
	maxEcho = 256
	maxPins = 5
)

// bounded cuts s, taken from the server's answer, to maxEcho bytes, saying
// how much was left out.
func bounded(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	cut := maxEcho
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s…(%d more bytes)", s[:cut], len(s)-cut)
}
