package approval

import (
	"crypto/rsa"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/tlsboot/tlsboot/csr"
)

// Checks of the node identity and the certificate asked for, for both
// signers, and the client signer's own (alive.go has its live-node check,
// serving.go the serving signer's).

// checkOrganization: O must be exactly [system:nodes], as the Node
// authorizer and kube-controller-manager require.
func checkOrganization(_ *Policy, c *candidate) *Decision {
	if o := c.req.Subject.Organization; !slices.Equal(o, []string{csr.NodesGroup}) {
		return denyp(ReasonBadOrganization, "subject organization is %s, must be exactly [%q]", echoList("organizations", o), csr.NodesGroup)
	}
	return nil
}

// checkNodeCommonName: CN must be system:node:<non-empty name>.
func checkNodeCommonName(_ *Policy, c *candidate) *Decision {
	if cn := c.req.Subject.CommonName; !isNodeName(cn) {
		return denyp(ReasonBadCommonName, "subject common name %s is not of the form %s<node name>", echo(cn), csr.NodeCommonPrefix)
	}
	return nil
}

// isNodeName: name is system:node:<non-empty name>.
func isNodeName(name string) bool {
	return strings.HasPrefix(name, csr.NodeCommonPrefix) && len(name) > len(csr.NodeCommonPrefix)
}

// checkNodeNameValid: the node name must be a lower-case DNS-1123
// subdomain, as the API server requires of a Node's name: no certificate
// for a name no Node can have (and that tools would read differently).
func checkNodeNameValid(_ *Policy, c *candidate) *Decision {
	if errs := validation.IsDNS1123Subdomain(c.nodeName); len(errs) > 0 {
		return denyp(ReasonInvalidNodeName, "node name %s is not a valid Node name: %s", echo(c.nodeName), errs[0])
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
// attack, so we deny it. It judges the user name alone, group or not: a
// requester named like a node (in system:nodes or not) asking for another
// node is denied; one outside system:nodes asking for its own name passes
// here but is not the node itself (requesterIsSubject), so the live-node
// check and the nodeclient review judge it as any other requester.
func checkNodeRenewsItself(_ *Policy, c *candidate) *Decision {
	if user := c.requester.Username; strings.HasPrefix(user, csr.NodeCommonPrefix) && user != c.req.Subject.CommonName {
		return denyp(ReasonNodeMismatch, "node %s may not request a client certificate for %s", echo(user), echo(c.req.Subject.CommonName))
	}
	return nil
}
