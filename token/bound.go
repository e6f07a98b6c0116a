package token

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	tokenutil "k8s.io/cluster-bootstrap/token/util"
)

// A bound token is meant to become only one node (once an approver enforces
// the binding: tlsboot approver does not yet). The binding travels in the
// token's auth-extra-groups, because that is the one place the API server
// copies from the Secret into the requester's identity, and so into a CSR's
// spec.groups, which an approver can trust without reading Secrets.
//
// The encoding: BindingGroupPrefix followed by the node name with every "."
// replaced by ":". Groups of bootstrap tokens must match
// system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9], which has no ".", while
// node names are DNS-1123 subdomains ([a-z0-9.-], labels that start and end
// with [a-z0-9]), which have no ":". Replacing "." by ":" is therefore a
// bijection between node names and encoded suffixes: decoding replaces ":"
// by "." and must give a valid node name again, so no two names share a
// group and no group decodes to two names. The group's length limit leaves
// MaxBoundNodeName characters for the name.
const (
	// BindingGroupPrefix starts every binding group.
	BindingGroupPrefix = "system:bootstrappers:tlsboot:node:"
	// MaxBoundNodeName is the longest node name a token can be bound to:
	// the 256 characters a bootstrap group allows after
	// "system:bootstrappers:", less "tlsboot:node:".
	MaxBoundNodeName = 256 - len(BindingGroupPrefix) + len("system:bootstrappers:")
)

// ErrBinding is the kind of the errors of BindingGroup, ParseBindingGroup
// and BoundNode.
var ErrBinding = errors.New("invalid node binding")

// BindingGroup returns the auth-extra-group that binds a token to node.
// It fails (ErrBinding) when node is not a valid node name (a DNS-1123
// subdomain) or is longer than MaxBoundNodeName.
func BindingGroup(node string) (string, error) {
	if err := checkNodeName(node); err != nil {
		return "", err
	}
	if len(node) > MaxBoundNodeName {
		return "", fmt.Errorf("%w: node name %q is %d characters long; a token can be bound to names of at most %d", ErrBinding, node, len(node), MaxBoundNodeName)
	}
	g := BindingGroupPrefix + strings.ReplaceAll(node, ".", ":")
	if err := tokenutil.ValidateBootstrapGroupName(g); err != nil { // cannot happen after the checks above
		return "", fmt.Errorf("%w: %v", ErrBinding, err)
	}
	return g, nil
}

// ParseBindingGroup decodes a group made by BindingGroup. ok is false, with
// a nil error, for a group that does not start with BindingGroupPrefix. A
// group that does but does not decode to a valid node name returns an
// ErrBinding error: an approver must treat it as a binding it cannot
// satisfy, never as no binding.
func ParseBindingGroup(group string) (node string, ok bool, err error) {
	enc, found := strings.CutPrefix(group, BindingGroupPrefix)
	if !found {
		return "", false, nil
	}
	if strings.Contains(enc, ".") {
		return "", true, fmt.Errorf("%w: group %q contains a dot, which no binding group does", ErrBinding, group)
	}
	node = strings.ReplaceAll(enc, ":", ".")
	if err := checkNodeName(node); err != nil || len(node) > MaxBoundNodeName {
		return "", true, fmt.Errorf("%w: group %q does not decode to a node name", ErrBinding, group)
	}
	return node, true, nil
}

// BoundNode returns the node that groups (a token's auth-extra-groups, or a
// CSR's spec.groups) bind to. bound is false when no group is a binding
// group. Several binding groups for the same node are one binding; binding
// groups for different nodes, or one that does not decode, return an
// ErrBinding error, and the caller must refuse: the requester is bound, but
// not to one node.
func BoundNode(groups []string) (node string, bound bool, err error) {
	for _, g := range groups {
		n, ok, err := ParseBindingGroup(g)
		if !ok {
			continue
		}
		if err != nil {
			return "", true, err
		}
		if bound && n != node {
			return "", true, fmt.Errorf("%w: groups bind to both %q and %q", ErrBinding, node, n)
		}
		node, bound = n, true
	}
	return node, bound, nil
}

func checkNodeName(node string) error {
	if msgs := validation.IsDNS1123Subdomain(node); len(msgs) > 0 {
		return fmt.Errorf("%w: %q is not a valid node name: %s", ErrBinding, node, msgs[0])
	}
	return nil
}
