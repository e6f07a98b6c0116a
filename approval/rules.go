package approval

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/tlsboot/tlsboot/csr"
)

// The policy as a table, read top to bottom: a recogniser claims the CSRs of
// one signer; its checks run in order and the first that objects decides;
// when none does, its grants say under which rule the CSR is approved and
// which permissions of the requester (SubjectAccessReviews, as
// kube-controller-manager's approver asks) approve it.

// recognisers is the policy table. The checks put static checks of the
// request first, checks that read the cluster (Node, Lease, other Nodes)
// after them; the SubjectAccessReviews of the grants come last.
func recognisers() []recogniser {
	// Every signer's first checks, cheapest first: the key before the
	// signature it bounds, then the request's shape (request.go).
	requestChecks := []check{checkKey, checkSignature, checkAttributes, checkExtensions, checkSubject, checkSANCount}
	return []recogniser{
		{
			name:   "kubelet-client",
			signer: certificatesv1.KubeAPIServerClientKubeletSignerName,
			checks: slices.Concat(requestChecks, []check{
				checkOrganization, checkNodeCommonName, checkNodeNameValid, checkTokenBinding, checkNoSANs,
				checkUsages(certificatesv1.UsageClientAuth), checkExpiration, checkNodeRenewsItself,
				checkOneKeyPerToken, checkNoLiveNodeTakeover,
			}),
			// As kube-controller-manager: a node renewing its own
			// certificate needs selfnodeclient or, failing that,
			// nodeclient; anyone else (a bootstrap token) needs nodeclient.
			grants: []grant{
				{rule: "kubelet-client-self", when: requesterIsSubject, permissions: []string{subresourceSelfNodeClient, subresourceNodeClient}},
				{rule: "kubelet-client", permissions: []string{subresourceNodeClient}},
			},
			approved: func(c *candidate, permission string) string {
				return fmt.Sprintf("%s may create certificatesigningrequests/%s", echo(c.requester.Username), permission)
			},
		},
		{
			name:   "kubelet-serving",
			signer: certificatesv1.KubeletServingSignerName,
			checks: slices.Concat(requestChecks, []check{
				checkRequesterIsNode, checkCommonNameIsRequester, checkOrganization, checkNodeNameValid,
				checkServingSANs, checkUsages(certificatesv1.UsageServerAuth), checkExpiration,
				checkReservedSANs, checkServingScope, checkSANPolicy,
				checkNodeKnown, checkSANsAreNodeAddresses, checkSANsUnique,
			}),
			// No permission to ask for: no RBAC role grants serving
			// certificates, the checks against the Node are the policy.
			grants:   []grant{{rule: "kubelet-serving"}},
			approved: servingApproval,
		},
	}
}

// The SubjectAccessReview subresources of certificatesigningrequests that
// kubeadm's bindings grant: "nodeclient" to bootstrap tokens,
// "selfnodeclient" to nodes renewing their own certificate.
const (
	subresourceNodeClient     = "nodeclient"
	subresourceSelfNodeClient = "selfnodeclient"
)

// A recogniser claims the CSRs of one signer.
type recogniser struct {
	// name is the rule recorded on a decision taken by a check.
	name   string
	signer string
	// checks run in order; the first that objects decides.
	checks []check
	// grants: the first whose when holds decides a CSR every check passed.
	// The last has no when.
	grants []grant
	// approved is the approval message after "Auto-approved by tlsboot
	// approver (rule R): ", given the permission granted ("" when the grant
	// asks for none).
	approved func(c *candidate, permission string) string
}

// A grant approves a CSR under rule if the requester holds one of
// permissions (subresources of certificatesigningrequests, asked in order),
// or outright when it lists none.
type grant struct {
	rule        string
	when        func(c *candidate) bool // nil: always
	permissions []string
}

// A check returns nil when the candidate passes, or the decision that ends
// the evaluation.
type check func(p *Policy, c *candidate) *Decision

// candidate is a CSR being decided, with what the checks read.
type candidate struct {
	csr       *certificatesv1.CertificateSigningRequest
	req       *x509.CertificateRequest
	in        Input
	node      *corev1.Node
	requester Requester
	// nodeName is the common name without csr.NodeCommonPrefix.
	nodeName string
}

func newCandidate(in Input, req *x509.CertificateRequest) *candidate {
	return &candidate{csr: in.CSR, req: req, in: in, node: in.Node, requester: requesterOf(in.CSR),
		nodeName: strings.TrimPrefix(req.Subject.CommonName, csr.NodeCommonPrefix)}
}

// requesterIsSubject: the requester is the node it asks for, as the API
// server authenticated it: the node's user name and the system:nodes group.
// A user name alone proves nothing: any authenticator (a client certificate
// from another CA, a token file, a webhook) can name a user
// "system:node:n1" without making it that node, and such a requester must
// not skip the live-node check (C8) nor get the kubelet-client-self rule.
func requesterIsSubject(c *candidate) bool {
	return c.requester.Username == c.req.Subject.CommonName && slices.Contains(c.requester.Groups, csr.NodesGroup)
}

// decideGrant is the end of rec's evaluation of c, every check passed: the
// first grant that applies asks for its permissions in order and approves
// on the first granted. Without a granted permission there is no opinion
// yet (Wait, NotAuthorized). The error is authz's.
func (rec *recogniser) decideGrant(ctx context.Context, c *candidate, authz Authorizer) (Decision, error) {
	i := slices.IndexFunc(rec.grants, func(g grant) bool { return g.when == nil || g.when(c) })
	g := rec.grants[i]
	approve := func(permission string) Decision {
		return Decision{Verdict: Approve, Reason: ReasonAutoApproved, Rule: g.rule,
			Message: fmt.Sprintf("Auto-approved by tlsboot approver (rule %s): %s", g.rule, rec.approved(c, permission))}
	}
	if len(g.permissions) == 0 {
		return approve(""), nil
	}
	for _, sub := range g.permissions {
		ok, err := authz.Authorize(ctx, c.requester, sub)
		if err != nil {
			return Decision{}, fmt.Errorf("checking whether %q may create certificatesigningrequests/%s: %w", c.requester.Username, sub, err)
		}
		if ok {
			return approve(sub), nil
		}
	}
	first := g.permissions[0]
	d := wait(ReasonNotAuthorized, "%s may not create certificatesigningrequests/%s: bind it to ClusterRole system:certificates.k8s.io:certificatesigningrequests:%s, or approve by hand",
		echo(c.requester.Username), first, first)
	d.Rule = g.rule
	return d, nil
}
