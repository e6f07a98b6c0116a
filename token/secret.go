package token

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	tokenutil "k8s.io/cluster-bootstrap/token/util"

	"github.com/tlsboot/tlsboot/token/binding"
)

// DefaultGroup is the extra group of kubeadm's node tokens, which kubeadm's
// (and tlsboot setup's) ClusterRoleBindings allow to create node CSRs.
const DefaultGroup = "system:bootstrappers:kubeadm:default-node-token"

// Default lifetimes, as kubeadm's for unbound tokens; a bound token is
// meant for one join, so it lives briefly.
const (
	DefaultTTL = 24 * time.Hour
	BoundTTL   = time.Hour
)

// DefaultUsages are kubeadm's: the token authenticates, and
// kube-controller-manager signs cluster-info with it for discovery.
var DefaultUsages = []string{"signing", "authentication"}

// Spec describes a bootstrap token to store.
type Spec struct {
	// Token is the token to store (required; see Generate).
	Token Token
	// Expires is when the token stops working; the zero time never
	// expires (as kubeadm's --ttl 0).
	Expires time.Time
	// Description is shown by token list.
	Description string
	// Usages are among "signing" and "authentication".
	Usages []string
	// Groups are the extra groups the token authenticates as; each must
	// match system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9].
	Groups []string
	// NodeName, if set, binds the token to that node:
	// binding.Group(NodeName) is added to Groups.
	NodeName string
}

// Validate checks the spec as kubeadm's token create does, plus the node
// binding. Its one-line errors never contain the token's secret.
func (s Spec) Validate() error {
	if !tokenutil.IsValidBootstrapToken(s.Token.Value()) {
		return fmt.Errorf("%w: the token to store must be 6 and 16 characters of a-z and 0-9 joined by a dot", ErrMalformed)
	}
	if err := tokenutil.ValidateUsages(s.Usages); err != nil {
		return err
	}
	for _, g := range s.Groups {
		if err := tokenutil.ValidateBootstrapGroupName(g); err != nil {
			return err
		}
	}
	if (len(s.Groups) > 0 || s.NodeName != "") && !slices.Contains(s.Usages, "authentication") {
		return fmt.Errorf("token groups and a node binding need the usage \"authentication\" (they have no effect without it)")
	}
	if s.NodeName != "" {
		if _, err := binding.Group(s.NodeName); err != nil {
			return err
		}
	}
	if _, bound, err := binding.Node(s.Groups); err != nil || bound {
		return fmt.Errorf("%w: bind a token to a node with the node name (token create --node-name), not with a %s* group", binding.ErrInvalid, binding.Prefix)
	}
	return nil
}

// NewSecret returns the kubeadm-format Secret of spec: bootstrap-token-<id>
// in kube-system, type bootstrap.kubernetes.io/token.
func NewSecret(spec Spec) (*corev1.Secret, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	data := map[string][]byte{
		bootstrapapi.BootstrapTokenIDKey:     []byte(spec.Token.ID),
		bootstrapapi.BootstrapTokenSecretKey: []byte(spec.Token.Secret),
	}
	if !spec.Expires.IsZero() {
		data[bootstrapapi.BootstrapTokenExpirationKey] = []byte(spec.Expires.UTC().Format(time.RFC3339))
	}
	if spec.Description != "" {
		data[bootstrapapi.BootstrapTokenDescriptionKey] = []byte(spec.Description)
	}
	for _, u := range spec.Usages {
		data[bootstrapapi.BootstrapTokenUsagePrefix+u] = []byte("true")
	}
	groups := slices.Clone(spec.Groups)
	if spec.NodeName != "" {
		g, _ := binding.Group(spec.NodeName) // checked by Validate
		groups = append(groups, g)
	}
	if len(groups) > 0 {
		data[bootstrapapi.BootstrapTokenExtraGroupsKey] = []byte(strings.Join(groups, ","))
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: SecretName(spec.Token.ID), Namespace: metav1.NamespaceSystem},
		Type:       bootstrapapi.SecretTypeBootstrapToken,
		Data:       data,
	}, nil
}

// Info is what token list shows of a stored token: everything but the
// secret.
type Info struct {
	ID          string     `json:"id"`
	Expires     *time.Time `json:"expires,omitempty"` // nil: never
	Usages      []string   `json:"usages"`
	Description string     `json:"description,omitempty"`
	Groups      []string   `json:"groups,omitempty"`
	// Node is the node a bound token is bound to.
	Node string `json:"node,omitempty"`
	// Problem says why the Secret is not a usable token (an unparsable
	// expiration, a bad group, a name that does not match token-id), or
	// is empty.
	Problem string `json:"problem,omitempty"`

	badExpiry bool // the expiration does not parse
}

// Expired reports whether the token has expired at now. A token with an
// unparsable expiration counts as expired, as the API server treats it.
func (i Info) Expired(now time.Time) bool {
	return i.badExpiry || i.Expires != nil && !now.Before(*i.Expires)
}

// InfoFromSecret reads a bootstrap token Secret. It does not fail: what is
// wrong with the Secret is reported in Info.Problem.
func InfoFromSecret(s *corev1.Secret) Info {
	get := func(k string) string { return string(s.Data[k]) }
	info := Info{ID: get(bootstrapapi.BootstrapTokenIDKey), Description: get(bootstrapapi.BootstrapTokenDescriptionKey)}
	var problems []string
	if id, ok := strings.CutPrefix(s.Name, bootstrapapi.BootstrapTokenSecretPrefix); !ok || id != info.ID || !tokenutil.IsValidBootstrapTokenID(id) {
		problems = append(problems, fmt.Sprintf("name %s does not match its token-id", s.Name))
		if info.ID == "" {
			info.ID = strings.TrimPrefix(s.Name, bootstrapapi.BootstrapTokenSecretPrefix)
		}
	}
	if e := get(bootstrapapi.BootstrapTokenExpirationKey); e != "" {
		if t, err := time.Parse(time.RFC3339, e); err != nil {
			problems = append(problems, "unparsable expiration (treated as expired)")
			info.badExpiry = true
		} else {
			info.Expires = &t
		}
	}
	for k, v := range s.Data {
		if u, ok := strings.CutPrefix(k, bootstrapapi.BootstrapTokenUsagePrefix); ok && string(v) == "true" {
			info.Usages = append(info.Usages, u)
		}
	}
	slices.Sort(info.Usages)
	if g := get(bootstrapapi.BootstrapTokenExtraGroupsKey); g != "" {
		info.Groups = strings.Split(g, ",")
		for _, group := range info.Groups {
			if tokenutil.ValidateBootstrapGroupName(group) != nil {
				problems = append(problems, fmt.Sprintf("invalid group %q (the API server rejects the token)", group))
			}
		}
		node, _, err := binding.Node(info.Groups)
		if err != nil {
			problems = append(problems, err.Error())
		}
		info.Node = node
	}
	info.Problem = strings.Join(problems, "; ")
	return info
}
