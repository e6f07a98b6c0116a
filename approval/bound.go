package approval

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"

	"github.com/tlsboot/tlsboot/token/binding"
)

// Bound tokens (tlsboot token create --node-name): the token's
// auth-extra-groups carry a binding group (package token/binding) that the
// API server copies into the requester's identity, so into spec.groups. The
// policy reads the binding from spec.groups alone, never from a Secret.

// MaxSameRequester bounds how many other CSRs of a bound requester
// (Input.SameRequester) the one-key check reads. A node bootstrapping with
// a bound token makes one CSR, and a retry finds that CSR again by name:
// more than this many undenied CSRs from one bound token is an attack, and
// the CSR is denied (TokenAlreadyUsed) without reading them, so that no
// requester can make a decision cost more than this many parses.
const MaxSameRequester = 16

// checkTokenBinding: a requester whose spec.groups carry a binding may ask
// only for the bound node's identity. Binding groups that do not decode, or
// that name two nodes, are a binding no CSR satisfies (InvalidTokenBinding),
// never "no binding".
func checkTokenBinding(_ *Policy, c *candidate) *Decision {
	node, bound, err := binding.Node(c.requester.Groups)
	if !bound {
		return nil
	}
	if err != nil {
		return denyp(ReasonInvalidTokenBinding, "requester %s is bound to a node, but its binding groups %s do not name exactly one valid node name: "+
			"no request from it can be approved; create a new token bound to the node", echo(c.requester.Username), echoList("groups", bindingGroups(c.requester.Groups)))
	}
	if node != c.nodeName {
		return denyp(ReasonTokenBoundToOtherNode, "requester %s is a token bound to node %s and may not request a client certificate for node %s; "+
			"join as %s, or create a token bound to %s", echo(c.requester.Username), echo(node), echo(c.nodeName), echo(node), echo(c.nodeName))
	}
	return nil
}

// bindingGroups returns the groups that start with binding.Prefix.
func bindingGroups(groups []string) []string {
	var out []string
	for _, g := range groups {
		if strings.HasPrefix(g, binding.Prefix) {
			out = append(out, g)
		}
	}
	return out
}

// checkOneKeyPerToken: a bound token yields one identity. A client CSR from
// a bound requester is denied (TokenAlreadyUsed) when another CSR of the
// same signer from the same requester (Input.SameRequester), approved or
// still pending, asks for a different public key, or when there are more
// than MaxSameRequester such CSRs. The same key asking again (a retry) is
// not affected, nor are denied or failed CSRs: they yield nothing.
//
// Why both approved and pending, earlier and later: with SameRequester read
// from an informer cache, two CSRs with different keys are never both
// approved, without any lock. The cache receives CSRs in the order the API
// server stored them, and a CSR is decided only once it is in the cache; so
// when the later of two is decided, the earlier is in the cache, approved
// or pending (the bootstrap token cannot delete CSRs), and the later is
// denied. The earlier one, if it sees the later, is denied too: two keys
// racing for one bound token both lose, and the node retries with its key
// once the racer's CSR is denied. A decided CSR whose request the cache
// dropped is compared by its PublicKeyHashAnnotation; a CSR that does not
// parse, or whose request was dropped without a hash (a pending one, over a
// size limit), counts as a different key: it will be denied by the checks
// anyway.
func checkOneKeyPerToken(_ *Policy, c *candidate) *Decision {
	if _, bound, _ := binding.Node(c.requester.Groups); !bound {
		return nil
	}
	n := 0
	for _, o := range c.in.SameRequester {
		if o == nil || o.Name == c.csr.Name || o.Spec.SignerName != c.csr.Spec.SignerName ||
			o.Spec.Username != c.requester.Username || deniedOrFailed(o) {
			continue
		}
		if n++; n > MaxSameRequester {
			return denyp(ReasonTokenAlreadyUsed, "requester %s, a token bound to node %s, has more than %d other requests that are approved or pending: "+
				"a bound token yields one identity; find out who made them, and create a new token bound to the node",
				echo(c.requester.Username), echo(c.nodeName), MaxSameRequester)
		}
		if sameKey(o, c.req.RawSubjectPublicKeyInfo) {
			continue
		}
		state := "pending"
		if Decided(o) {
			state = "approved"
		}
		return denyp(ReasonTokenAlreadyUsed, "requester %s, a token bound to node %s, already asked for a certificate for another key in %s request %s: "+
			"a bound token yields one identity; if this request is the node's own, find out who made %s, and create a new token bound to the node",
			echo(c.requester.Username), echo(c.nodeName), state, echo(o.Name), echo(o.Name))
	}
	return nil
}

// deniedOrFailed: obj carries a Denied or Failed condition.
func deniedOrFailed(obj *certificatesv1.CertificateSigningRequest) bool {
	for _, cond := range obj.Status.Conditions {
		if cond.Type == certificatesv1.CertificateDenied || cond.Type == certificatesv1.CertificateFailed {
			return true
		}
	}
	return false
}

// PublicKeyHashAnnotation carries, on a cached copy of a decided CSR whose
// spec.request the cache dropped, the SHA-256 of the request's
// SubjectPublicKeyInfo (lower-case hex; PublicKeyHash), so that the
// one-key check still knows which key an approved CSR asked for.
//
// It is read only from a CSR without spec.request: the API server never
// stores a CSR with an empty request, so such a copy is always the cache's
// own doing (a cache that first removes every annotation the CSR came
// with), and a requester cannot claim another key's hash on a CSR of its
// own.
const PublicKeyHashAnnotation = "tlsboot.io/public-key-sha256"

// PublicKeyHash returns the lower-case hex SHA-256 of the
// SubjectPublicKeyInfo of request (a spec.request of at most
// MaxRequestBytes), or "" if it does not parse. The signature is not
// checked: the hash only tells keys apart.
func PublicKeyHash(request []byte) string {
	req, err := parseUnverified(request)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(req.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// sameKey: obj is for the public key spki — its request parses (within
// MaxRequestBytes) and carries spki, or, when a cache dropped its request,
// its PublicKeyHashAnnotation is spki's hash. Without either it counts as
// another key.
func sameKey(obj *certificatesv1.CertificateSigningRequest, spki []byte) bool {
	if len(obj.Spec.Request) == 0 {
		h := obj.Annotations[PublicKeyHashAnnotation]
		sum := sha256.Sum256(spki)
		return h != "" && h == hex.EncodeToString(sum[:])
	}
	req, err := parseUnverified(obj.Spec.Request)
	return err == nil && bytes.Equal(req.RawSubjectPublicKeyInfo, spki)
}
