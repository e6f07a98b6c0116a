package approval

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The well-known node identity.
const (
	nodesGroup = "system:nodes"
	nodePrefix = "system:node:"
)

// The SubjectAccessReview subresources of certificatesigningrequests that
// kubeadm's bindings grant: "nodeclient" to bootstrap tokens,
// "selfnodeclient" to nodes renewing their own certificate.
const (
	SubresourceNodeClient     = "nodeclient"
	SubresourceSelfNodeClient = "selfnodeclient"
)

// candidate is a CSR being decided, with what the checks read.
type candidate struct {
	csr       *certificatesv1.CertificateSigningRequest
	req       *x509.CertificateRequest
	in        Input
	node      *corev1.Node
	requester Requester
}

// A check returns nil when the candidate passes, or the decision that ends
// the evaluation.
type check func(p *Policy, c *candidate) *Decision

// A recogniser claims the CSRs of one signer: all its checks must pass, then
// final decides (it may ask the Authorizer).
type recogniser struct {
	name   string
	signer string
	checks []check
	final  func(ctx context.Context, c *candidate, authz Authorizer) (Decision, error)
}

// requestChecks run first for every signer, cheapest first: the key before
// the signature it bounds, then the request's shape.
var requestChecks = []check{checkKey, checkSignature, checkAttributes, checkExtensions, checkSubject, checkSANCount}

// recognisers is the policy table. Every check must pass; the order puts
// static checks of the request first, checks that read the cluster (Node,
// Lease, other Nodes) after them, and the SubjectAccessReview last.
func recognisers() []recogniser {
	return []recogniser{
		{
			name:   "kubelet-client",
			signer: certificatesv1.KubeAPIServerClientKubeletSignerName,
			checks: slices.Concat(requestChecks, []check{
				checkOrganization, checkNodeCommonName, checkNodeNameValid, checkNoSANs,
				checkUsages(certificatesv1.UsageClientAuth), checkExpiration, checkNodeRenewsItself,
				checkNoLiveNodeTakeover,
			}),
			final: authorizeClient,
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
			final: approveServing,
		},
	}
}

// NodeName returns the node named by a CSR's common name
// ("system:node:<name>"), or "" if it names none or does not parse.
func NodeName(csr *certificatesv1.CertificateSigningRequest) string {
	req, err := ParseRequest(csr.Spec.Request)
	if err != nil {
		return ""
	}
	name, _ := strings.CutPrefix(req.Subject.CommonName, nodePrefix)
	if name == req.Subject.CommonName {
		return ""
	}
	return name
}

func denyp(reason, format string, args ...any) *Decision {
	d := deny(reason, format, args...)
	return &d
}

// checkOrganization: O must be exactly [system:nodes], as the Node
// authorizer and kube-controller-manager require.
func checkOrganization(_ *Policy, c *candidate) *Decision {
	if o := c.req.Subject.Organization; !slices.Equal(o, []string{nodesGroup}) {
		return denyp(ReasonBadOrganization, "subject organization is %s, must be exactly [%q]", echoList("organizations", o), nodesGroup)
	}
	return nil
}

// checkNodeCommonName: CN must be system:node:<non-empty name>.
func checkNodeCommonName(_ *Policy, c *candidate) *Decision {
	cn := c.req.Subject.CommonName
	if !strings.HasPrefix(cn, nodePrefix) || len(cn) == len(nodePrefix) {
		return denyp(ReasonBadCommonName, "subject common name %s is not of the form %s<node name>", echo(cn), nodePrefix)
	}
	return nil
}

// checkNodeNameValid: the node name must be a lower-case DNS-1123
// subdomain, as the API server requires of a Node's name: no certificate
// for a name no Node can have (and that tools would read differently).
func checkNodeNameValid(_ *Policy, c *candidate) *Decision {
	name := strings.TrimPrefix(c.req.Subject.CommonName, nodePrefix)
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return denyp(ReasonInvalidNodeName, "node name %s is not a valid Node name: %s", echo(name), errs[0])
	}
	return nil
}

// checkNoSANs: a client certificate carries its identity in the subject only.
func checkNoSANs(_ *Policy, c *candidate) *Decision {
	r := c.req
	if n := len(r.DNSNames) + len(r.IPAddresses) + len(r.EmailAddresses) + len(r.URIs); n > 0 {
		return denyp(ReasonSANNotAllowed, "a kubelet client certificate must not have subject alternative names, the request has %d: %s",
			n, echoList("names", slices.Concat(r.DNSNames, stringsOf(r.IPAddresses), r.EmailAddresses, stringsOf(r.URIs))))
	}
	return nil
}

// checkUsages returns a check that the usages are exactly digital signature
// and auth, plus key encipherment only for an RSA key (the only key type
// that can encipher a key: asking for it with another key is a malformed
// request).
func checkUsages(auth certificatesv1.KeyUsage) check {
	return func(_ *Policy, c *candidate) *Decision {
		want := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, auth}
		if _, ok := c.req.PublicKey.(*rsa.PublicKey); ok && slices.Contains(c.csr.Spec.Usages, certificatesv1.UsageKeyEncipherment) {
			want = append(want, certificatesv1.UsageKeyEncipherment)
		}
		got := slices.Clone(c.csr.Spec.Usages)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			return denyp(ReasonBadUsages, "usages %s are not allowed: want exactly %q and %q, plus %q for RSA keys only",
				echoList("usages", stringsOf(c.csr.Spec.Usages)), certificatesv1.UsageDigitalSignature, auth, certificatesv1.UsageKeyEncipherment)
		}
		return nil
	}
}

// checkExpiration: spec.expirationSeconds no longer than MaxExpiration.
func checkExpiration(p *Policy, c *candidate) *Decision {
	s := c.csr.Spec.ExpirationSeconds
	if s == nil || p.opts.MaxExpiration == 0 {
		return nil
	}
	if d := time.Duration(*s) * time.Second; d > p.opts.MaxExpiration {
		return denyp(ReasonExpirationTooLong, "requested expiration %s is longer than the allowed %s", d, p.opts.MaxExpiration)
	}
	return nil
}

// checkNodeRenewsItself: a node may ask for a client certificate only in its
// own name. kube-controller-manager would try the nodeclient permission and
// leave the CSR pending; a node asking for another node's identity is an
// attack, so we deny it.
func checkNodeRenewsItself(_ *Policy, c *candidate) *Decision {
	user := c.requester.Username
	if strings.HasPrefix(user, nodePrefix) && user != c.req.Subject.CommonName {
		return denyp(ReasonNodeMismatch, "node %s may not request a client certificate for %s", echo(user), echo(c.req.Subject.CommonName))
	}
	return nil
}

// authorizeClient is kube-controller-manager's SubjectAccessReview step: a
// requester renewing its own identity needs selfnodeclient (or, as in
// kube-controller-manager, nodeclient); anyone else needs nodeclient.
func authorizeClient(ctx context.Context, c *candidate, authz Authorizer) (Decision, error) {
	subresources, rule := []string{SubresourceNodeClient}, "kubelet-client"
	if c.requester.Username == c.req.Subject.CommonName {
		subresources, rule = []string{SubresourceSelfNodeClient, SubresourceNodeClient}, "kubelet-client-self"
	}
	for _, sub := range subresources {
		ok, err := authz.Authorize(ctx, c.requester, sub)
		if err != nil {
			return Decision{}, fmt.Errorf("checking whether %q may create certificatesigningrequests/%s: %w", c.requester.Username, sub, err)
		}
		if ok {
			return Decision{Verdict: Approve, Reason: ReasonAutoApproved, Rule: rule,
				Message: fmt.Sprintf("Auto-approved by tlsboot approver (rule %s): %s may create certificatesigningrequests/%s", rule, echo(c.requester.Username), sub)}, nil
		}
	}
	d := wait(ReasonNotAuthorized, "%s may not create certificatesigningrequests/%s: bind it to ClusterRole system:certificates.k8s.io:certificatesigningrequests:%s, or approve by hand",
		echo(c.requester.Username), subresources[0], subresources[0])
	d.Rule = rule
	return d, nil
}

// checkRequesterIsNode: only a node, authenticated as one, may ask for a
// serving certificate.
func checkRequesterIsNode(_ *Policy, c *candidate) *Decision {
	r := c.requester
	if !strings.HasPrefix(r.Username, nodePrefix) || len(r.Username) == len(nodePrefix) || !slices.Contains(r.Groups, nodesGroup) {
		return denyp(ReasonRequesterNotNode, "requester %s is not a node: serving certificates are approved only for a user %s<name> in group %s", echo(r.Username), nodePrefix, nodesGroup)
	}
	return nil
}

// checkCommonNameIsRequester: node A may not ask for node B's certificate.
func checkCommonNameIsRequester(_ *Policy, c *candidate) *Decision {
	if cn := c.req.Subject.CommonName; cn != c.requester.Username {
		return denyp(ReasonNodeMismatch, "subject common name %s is not the requester %s", echo(cn), echo(c.requester.Username))
	}
	return nil
}

// checkServingSANs: at least one DNS name or IP address; no email or URI
// SANs; no wildcard DNS names (no Node address is a wildcard).
func checkServingSANs(_ *Policy, c *candidate) *Decision {
	r := c.req
	if len(r.EmailAddresses) > 0 || len(r.URIs) > 0 {
		return denyp(ReasonSANNotAllowed, "email and URI subject alternative names are not allowed in a serving certificate, the request has %s",
			echoList("names", slices.Concat(r.EmailAddresses, stringsOf(r.URIs))))
	}
	if len(r.DNSNames) == 0 && len(r.IPAddresses) == 0 {
		return denyp(ReasonMissingSAN, "a serving certificate needs at least one DNS name or IP address")
	}
	for _, name := range r.DNSNames {
		if strings.Contains(name, "*") {
			return denyp(ReasonSANNotAllowed, "wildcard DNS name %s is not allowed", echo(name))
		}
	}
	return nil
}
