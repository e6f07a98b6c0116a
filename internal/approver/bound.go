package approver

import (
	"fmt"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"

	"github.com/tlsboot/tlsboot/token/binding"
)

// boundRequesterIndex indexes the CSRs of requesters bound to a node (whose
// spec.groups carry a binding group: a token made by token create
// --node-name) by spec.username, so that the policy's one-key check
// (approval.Input.SameRequester) reads the other CSRs of the same token
// from the cache, without a list per CSR. Denied and failed CSRs yield
// nothing and are not indexed; CSRs of unbound requesters are not indexed
// at all.
//
// No lock is needed to keep two keys from both being approved: the
// informer adds a CSR to its store before its handler queues it, and adds
// CSRs in the order the API server stored them, so a worker deciding the
// later of two CSRs of one token always finds the earlier one here,
// approved or pending (a bootstrap token cannot delete CSRs). The policy
// then denies the later one (see approval's checkOneKeyPerToken). This
// holds across replicas too: each decision's own cache is what matters.
const boundRequesterIndex = "bound-requester"

func indexByBoundRequester(obj any) ([]string, error) {
	csr, ok := obj.(*certificatesv1.CertificateSigningRequest)
	if !ok || !hasBindingGroup(csr.Spec.Groups) || deniedOrFailed(csr) {
		return nil, nil
	}
	return []string{csr.Spec.Username}, nil
}

// hasBindingGroup: a group starts with binding.Prefix (whether or not it
// decodes: the policy decides what an undecodable binding means).
func hasBindingGroup(groups []string) bool {
	for _, g := range groups {
		if strings.HasPrefix(g, binding.Prefix) {
			return true
		}
	}
	return false
}

func deniedOrFailed(csr *certificatesv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed {
			return true
		}
	}
	return false
}

// sameRequester returns the CSRs of csr's signer from csr's requester,
// csr included, when that requester is bound to a node; nil otherwise. The
// error (an index that is not there) must stop the decision: without these
// CSRs the policy could not enforce one key per bound token.
func (c *Controller) sameRequester(csr *certificatesv1.CertificateSigningRequest) ([]*certificatesv1.CertificateSigningRequest, error) {
	inf, ok := c.csrs[csr.Spec.SignerName]
	if !ok || !hasBindingGroup(csr.Spec.Groups) {
		return nil, nil
	}
	objs, err := inf.Informer().GetIndexer().ByIndex(boundRequesterIndex, csr.Spec.Username)
	if err != nil {
		return nil, fmt.Errorf("reading the other certificate signing requests of %q from the cache: %w", csr.Spec.Username, err)
	}
	out := make([]*certificatesv1.CertificateSigningRequest, 0, len(objs))
	for _, o := range objs {
		if s, ok := o.(*certificatesv1.CertificateSigningRequest); ok {
			out = append(out, s)
		}
	}
	return out, nil
}
