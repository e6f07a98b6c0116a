package discovery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// maxConfigMapSize bounds what is read from a server not yet trusted: a
// ConfigMap cannot hold more than 1 MiB, and its JSON a little more.
const maxConfigMapSize = 2 << 20

// requestTimeout bounds one fetch.
const requestTimeout = 10 * time.Second

// fetch GETs kube-public/cluster-info anonymously. With a nil pool it
// trusts any server certificate (step 1); otherwise it verifies the server
// with exactly the pool (step 5), which errors call trust ("the pinned CA",
// or "the CA named in cluster-info" when no pin was given).
//
// This is a plain HTTP GET rather than a clientset call so that what an
// untrusted server sends is bounded (size, time, no redirects) and no
// credential is ever attached.
func fetch(ctx context.Context, server string, pool *x509.CertPool, trust string) (*corev1.ConfigMap, error) {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if pool == nil {
		tlsConfig.InsecureSkipVerify = true // step 1: nothing is trusted yet, the JWS and the pin decide
	} else {
		tlsConfig.RootCAs = pool
	}
	transport := &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: tlsConfig, ForceAttemptHTTP2: true}
	defer transport.CloseIdleConnections()
	client := &http.Client{
		Transport:     transport,
		Timeout:       requestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	u := server + "/api/v1/namespaces/kube-public/configmaps/cluster-info"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, &Error{Kind: ErrUnreachable, Server: server, Err: err, msg: fmt.Sprintf("cannot ask %s for cluster-info: %v", server, err)}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, requestError(server, pool != nil, trust, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxConfigMapSize+1))
	if err != nil {
		return nil, &Error{Kind: ErrUnreachable, Server: server, Err: err, msg: fmt.Sprintf("reading cluster-info from %s: %v", server, err)}
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, &Error{Kind: ErrNotSetUp, Server: server, msg: fmt.Sprintf("%s has no ConfigMap kube-public/cluster-info (404): run 'tlsboot setup --kubeconfig ADMIN' against this cluster, or check the address", server)}
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, &Error{Kind: ErrNotSetUp, Server: server, msg: fmt.Sprintf("%s does not let anonymous users read kube-public/cluster-info (%s): run 'tlsboot setup --kubeconfig ADMIN' (it creates the Role that allows it) and check that kube-apiserver runs with --anonymous-auth=true", server, resp.Status)}
	default:
		return nil, &Error{Kind: ErrUnreachable, Server: server, msg: fmt.Sprintf("%s answered %s to a read of kube-public/cluster-info: check that it is a Kubernetes API server", server, resp.Status)}
	}
	if len(body) > maxConfigMapSize {
		return nil, &Error{Kind: ErrMalformed, Server: server, msg: fmt.Sprintf("cluster-info from %s is larger than %d bytes: refusing it", server, maxConfigMapSize)}
	}
	var cm corev1.ConfigMap
	if err := json.Unmarshal(body, &cm); err != nil {
		return nil, &Error{Kind: ErrMalformed, Server: server, Err: err, msg: fmt.Sprintf("cluster-info from %s is not a ConfigMap (%v): check that %s is a Kubernetes API server", server, err, server)}
	}
	return &cm, nil
}

// requestError explains a request that got no HTTP answer. A TLS
// verification failure can only happen in the second fetch, which verifies
// with trust.
func requestError(server string, verifying bool, trust string, err error) *Error {
	var (
		hostErr    x509.HostnameError
		unknownCA  x509.UnknownAuthorityError
		invalidErr x509.CertificateInvalidError
		verifyErr  *tls.CertificateVerificationError
	)
	switch {
	case !verifying:
	case errors.As(err, &hostErr):
		return &Error{Kind: ErrNotVerified, Server: server, Err: err, msg: fmt.Sprintf("the certificate %s presents is signed by %s but not valid for that address (%v): join through an address the API server certificate names", server, trust, hostErr.Error())}
	case errors.As(err, &unknownCA), errors.As(err, &invalidErr), errors.As(err, &verifyErr):
		return &Error{Kind: ErrNotVerified, Server: server, Err: err, msg: fmt.Sprintf("%s presents a TLS certificate %s does not verify (%v): someone may be in the middle between this node and the API server, or the address is not the API server's; nothing was written", server, trust, rootCause(err))}
	}
	return &Error{Kind: ErrUnreachable, Server: server, Err: err, msg: fmt.Sprintf("cannot reach the API server at %s (%v): check the address and that kube-apiserver runs", server, rootCause(err))}
}

// rootCause drops net/http's "Get URL:" prefix, which repeats the server.
func rootCause(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	var verr *tls.CertificateVerificationError
	if errors.As(err, &verr) && verr.Err != nil {
		return verr.Err
	}
	return err
}
