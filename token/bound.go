package token

import "github.com/tlsboot/tlsboot/token/binding"

// A bound token can become only one node: tlsboot approver denies a client
// CSR from it for any other node, and a second key. The binding travels in
// the token's auth-extra-groups; package binding holds the encoding (pure
// code, which the approval policy shares). These are its names here.
const (
	// BindingGroupPrefix starts every binding group (binding.Prefix).
	BindingGroupPrefix = binding.Prefix
	// MaxBoundNodeName is the longest node name a token can be bound to
	// (binding.MaxNodeName).
	MaxBoundNodeName = binding.MaxNodeName
)

// ErrBinding is the kind of the errors of BindingGroup, ParseBindingGroup
// and BoundNode (binding.ErrInvalid).
var ErrBinding = binding.ErrInvalid

// BindingGroup returns the auth-extra-group that binds a token to node: see
// binding.Group.
func BindingGroup(node string) (string, error) { return binding.Group(node) }

// ParseBindingGroup decodes a group made by BindingGroup: see binding.Parse.
func ParseBindingGroup(group string) (node string, ok bool, err error) { return binding.Parse(group) }

// BoundNode returns the node that groups bind to: see binding.Node.
func BoundNode(groups []string) (node string, bound bool, err error) { return binding.Node(groups) }
