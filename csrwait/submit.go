package csrwait

import (
	"context"
	"crypto"
	"fmt"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/csr"
)

// Submit creates the CSR name for r, signed by key, or re-attaches to an
// existing CSR of that name left by an earlier run (ours or the kubelet's:
// names from csr.Name are the same). An empty name lets the API server
// choose one, and then there is nothing to re-attach to.
//
// An existing CSR is used only if csr.Reattach accepts it; otherwise Submit
// returns its *csr.ConflictError, or the *csr.OutcomeError of a CSR that
// was denied or failed. A failure of the server or of the connection is a
// *csr.ServerError (see csr.ClassifyServerError); other API errors (such as
// 422 Invalid) and the error of an ended ctx come back wrapped, saying what
// was being done. An invalid r is reported before any request is made.
//
// The returned object may already hold a certificate; pass it to ForCSR,
// which returns at once in that case. created reports whether this call
// created the CSR (false: re-attached). Submit makes at most two requests
// (create, then get) and does not retry; it is safe for concurrent use.
func Submit(ctx context.Context, client kubernetes.Interface, name string, r csr.Request, key crypto.Signer) (obj *certificatesv1.CertificateSigningRequest, created bool, err error) {
	obj, err = r.Object(name, key)
	if err != nil {
		return nil, false, err
	}
	csrs := client.CertificatesV1().CertificateSigningRequests()
	logger := klog.FromContext(ctx)
	made, err := csrs.Create(ctx, obj, metav1.CreateOptions{})
	if err == nil {
		logger.V(2).Info("Created certificate signing request", "csr", made.Name, "signer", r.SignerName)
		return made, true, nil
	}
	if name == "" || !apierrors.IsAlreadyExists(err) {
		return nil, false, apiError(ctx, client, err, "creating certificate signing request", name)
	}
	existing, err := csrs.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, false, apiError(ctx, client, err, "reading existing certificate signing request", name)
	}
	if err := csr.Reattach(existing, r, key.Public()); err != nil {
		return nil, false, err
	}
	logger.V(2).Info("Re-attached to existing certificate signing request", "csr", name, "uid", existing.UID)
	return existing, false, nil
}

// apiError turns err, from a request made with client while doing op, into
// a *csr.ServerError when it is a failure of the server or the connection,
// and otherwise wraps it with op and name. An ended ctx is reported as such:
// it is not the server's fault.
func apiError(ctx context.Context, client kubernetes.Interface, err error, op, name string) error {
	if ctx.Err() == nil {
		err = csr.ClassifyServerError(err, serverURL(client), op, name)
		if _, ok := err.(*csr.ServerError); ok {
			return err
		}
	}
	if name == "" {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s %s: %w", op, name, err)
}

// serverURL returns the scheme and host of the API server client talks to,
// "" when it cannot tell (a fake clientset).
func serverURL(client kubernetes.Interface) string {
	rc, ok := client.CertificatesV1().RESTClient().(*rest.RESTClient)
	if !ok || rc == nil {
		return ""
	}
	u := rc.Get().URL()
	return u.Scheme + "://" + u.Host
}
