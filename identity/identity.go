// Package identity asks the API server who a client certificate is, before
// the certificate is trusted with a node's identity.
//
// An issued certificate that passes every offline check (csr.Check: key,
// names, usages, validity) may still be useless: only the API server knows
// which CAs it trusts for client certificates, and many clusters keep that
// CA apart from the one that verifies the API server (k3s and RKE2,
// OpenShift, an endpoint behind a public or corporate CA, kube-apiserver's
// self-signed default). Checking the chain against the kubeconfig's CA would
// refuse those clusters; not checking at all would store a certificate the
// server rejects. So the fact is verified where it is true: one
// SelfSubjectReview (authentication.k8s.io/v1) authenticated with the new
// certificate and key, and nothing else, must come back as the requested
// user in the requested group.
package identity

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tlsboot/tlsboot/csr"
)

// Config returns a client config for cluster's API server whose only
// credential is the client certificate certPEM with its key keyPEM: the
// server, its CA, server name, Insecure, proxy and dialer of cluster are
// kept; its bearer token, basic auth, exec or auth provider and client
// certificate are dropped, so that the server cannot authenticate the
// request any other way. cluster is not modified.
//
// The config has a Proxy function (http.ProxyFromEnvironment unless cluster
// has one), which keeps client-go from caching its transport, so that the
// transport of each check goes with its client: a long-running agent
// checks one new certificate per rotation, and client-go's cache lets go
// of unused transports only while its ClientsAllowTLSCacheGC feature gate
// is on (the default from client-go 1.36, a beta gate). Each request is
// bounded by cluster's Timeout, RequestTimeout when it has none: a server
// that accepts the connection and never answers is one that did not
// answer (csr.ErrUnreachable), not a hang.
func Config(cluster *rest.Config, certPEM, keyPEM []byte) *rest.Config {
	cfg := rest.AnonymousClientConfig(cluster)
	cfg.CertData, cfg.KeyData = certPEM, keyPEM
	if cfg.Proxy == nil {
		cfg.Proxy = http.ProxyFromEnvironment
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = RequestTimeout
	}
	return cfg
}

// RequestTimeout bounds a request of Config's clients when the cluster
// config sets no Timeout.
const RequestTimeout = 30 * time.Second

// Confirm asks the API server, through client (which must authenticate
// with nothing but the certificate to check: see Config), who it is, with
// one SelfSubjectReview, and returns nil when it is user in group. It
// blocks for one request, bounded by ctx.
//
// It returns a *csr.IdentityError naming csrName (which may be empty) when
// the API server rejects the certificate (401) or authenticates it as
// another user or without group: the certificate must not be used. Every
// other failure is a *csr.ServerError, from csr.ClassifyServerError: an
// unreachable server (ErrUnreachable, worth retrying: it says nothing
// about the certificate), a failed TLS verification of the server
// (ErrTLS), or a 403 (ErrForbidden: the server authenticated the
// certificate but its user may not create SelfSubjectReviews, so who it is
// cannot be confirmed; every authenticated user may by default, through
// the system:basic-user ClusterRole). A server that does not serve
// SelfSubjectReviews (404: Kubernetes before 1.28) is a plain error that
// says so. ctx's error is returned as it is.
func Confirm(ctx context.Context, client kubernetes.Interface, server, csrName, user, group string) error {
	got, err := review(ctx, client, server, csrName)
	var se *csr.ServerError
	switch {
	case errors.As(err, &se) && errors.Is(se.Kind, csr.ErrUnauthorized):
		return &csr.IdentityError{CSR: csrName, Server: server, Want: user, WantGroup: group, Unauthorized: true}
	case errors.As(err, &se) && errors.Is(se.Kind, csr.ErrForbidden):
		se.Hint = "the API server authenticated the issued certificate, but its user may not create selfsubjectreviews.authentication.k8s.io, " +
			"which confirms who it is; allow it (the default system:basic-user ClusterRole does, for every authenticated user)"
		return err
	case err != nil:
		return err
	case got.Username != user || !slices.Contains(got.Groups, group):
		return csr.NewIdentityError(csrName, server, user, group, got.Username, got.Groups)
	}
	return nil
}

// op is what Confirm's *csr.ServerError says was being done.
const op = "confirming the issued certificate with a SelfSubjectReview"

// review returns who client authenticates as.
func review(ctx context.Context, client kubernetes.Interface, server, csrName string) (authenticationv1.UserInfo, error) {
	r, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return authenticationv1.UserInfo{}, &NotServedError{CSR: csrName, Server: server}
	case err != nil:
		return authenticationv1.UserInfo{}, csr.ClassifyServerError(err, server, op, csrName)
	}
	return r.Status.UserInfo, nil
}

// NotServedError reports an API server that does not serve
// SelfSubjectReviews (authentication.k8s.io/v1, Kubernetes 1.28 and later),
// so that an issued certificate cannot be confirmed and is not used.
type NotServedError struct {
	CSR    string // the CSR that issued the certificate; empty if not known
	Server string // the API server's URL; empty if unknown
}

func (e *NotServedError) Error() string {
	server := "the API server"
	if e.Server != "" {
		server += " at " + e.Server
	}
	if e.CSR != "" {
		server = "certificate signing request " + e.CSR + " was issued, but " + server
	}
	return server + " does not serve selfsubjectreviews.authentication.k8s.io/v1 (Kubernetes 1.28 and later), which confirms who an issued certificate is: upgrade the API server, or enable the API"
}

// ConfirmNode is Confirm for a node's client certificate: it makes a client
// with Config(cluster, certPEM, keyPEM) and confirms that the API server
// authenticates it as system:node:<node> in system:nodes. Its errors are
// Confirm's, and an error of client-go building the client (an invalid
// certificate, key or TLS setting) as it is.
func ConfirmNode(ctx context.Context, cluster *rest.Config, csrName, node string, certPEM, keyPEM []byte) error {
	client, err := kubernetes.NewForConfig(Config(cluster, certPEM, keyPEM))
	if err != nil {
		return err
	}
	return Confirm(ctx, client, cluster.Host, csrName, csr.NodeCommonPrefix+node, csr.NodesGroup)
}
