// Package binding encodes and decodes the node binding of a tlsboot bound
// bootstrap token: the auth-extra-group that names the one node the token
// may become. It is pure code (no client, no I/O), so that the approval
// policy can read a binding from a CSR's spec.groups without depending on
// client-go.
//
// The binding travels in the token's auth-extra-groups, because that is the
// one place the API server copies from the token's Secret into the
// requester's identity, and so into a CSR's spec.groups, which an approver
// can trust without reading Secrets.
//
// The encoding: Prefix followed by the node name with every "." replaced by
// ":". Groups of bootstrap tokens must match
// system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9], which has no ".", while
// node names are DNS-1123 subdomains ([a-z0-9.-], labels that start and end
// with [a-z0-9]), which have no ":". Replacing "." by ":" is therefore a
// bijection between node names and encoded suffixes: decoding replaces ":"
// by "." and must give a valid node name again, so no two names share a
// group and no group decodes to two names. The group's length limit leaves
// MaxNodeName characters for the name.
package binding

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	tokenutil "k8s.io/cluster-bootstrap/token/util"
)

const (
	// Prefix starts every binding group.
	Prefix = "system:bootstrappers:tlsboot:node:"
	// MaxNodeName is the longest node name a token can be bound to: the
	// 256 characters a bootstrap group allows after "system:bootstrappers:",
	// less "tlsboot:node:".
	MaxNodeName = 256 - len(Prefix) + len("system:bootstrappers:")
)

// ErrInvalid is the kind of the errors of Group, Parse and Node.
var ErrInvalid = errors.New("invalid node binding")

// Group returns the auth-extra-group that binds a token to node. It fails
// (ErrInvalid) when node is not a valid node name (a DNS-1123 subdomain) or
// is longer than MaxNodeName.
func Group(node string) (string, error) {
	if err := checkNodeName(node); err != nil {
		return "", err
	}
	if len(node) > MaxNodeName {
		return "", fmt.Errorf("%w: node name %q is %d characters long; a token can be bound to names of at most %d", ErrInvalid, node, len(node), MaxNodeName)
	}
	g := Prefix + strings.ReplaceAll(node, ".", ":")
	if err := tokenutil.ValidateBootstrapGroupName(g); err != nil { // cannot happen after the checks above
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return g, nil
}

// Parse decodes a group made by Group. ok is false, with a nil error, for a
// group that does not start with Prefix. A group that does but does not
// decode to a valid node name returns an ErrInvalid error: an approver must
// treat it as a binding it cannot satisfy, never as no binding. The error
// quotes group with %q, unbounded: callers that echo it must bound it.
func Parse(group string) (node string, ok bool, err error) {
	enc, found := strings.CutPrefix(group, Prefix)
	if !found {
		return "", false, nil
	}
	if strings.Contains(enc, ".") {
		return "", true, fmt.Errorf("%w: group %q contains a dot, which no binding group does", ErrInvalid, group)
	}
	node = strings.ReplaceAll(enc, ":", ".")
	if err := checkNodeName(node); err != nil || len(node) > MaxNodeName {
		return "", true, fmt.Errorf("%w: group %q does not decode to a node name", ErrInvalid, group)
	}
	return node, true, nil
}

// Node returns the node that groups (a token's auth-extra-groups, or a CSR's
// spec.groups) bind to. bound is false when no group starts with Prefix.
// Several binding groups for the same node are one binding; binding groups
// for different nodes, or one that does not decode, return an ErrInvalid
// error with bound true, and the caller must refuse: the requester is
// bound, but not to one node.
func Node(groups []string) (node string, bound bool, err error) {
	for _, g := range groups {
		n, ok, err := Parse(g)
		if !ok {
			continue
		}
		if err != nil {
			return "", true, err
		}
		if bound && n != node {
			return "", true, fmt.Errorf("%w: groups bind to both %q and %q", ErrInvalid, node, n)
		}
		node, bound = n, true
	}
	return node, bound, nil
}

func checkNodeName(node string) error {
	if msgs := validation.IsDNS1123Subdomain(node); len(msgs) > 0 {
		return fmt.Errorf("%w: %q is not a valid node name: %s", ErrInvalid, node, msgs[0])
	}
	return nil
}
