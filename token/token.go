// Package token handles kubeadm-format bootstrap tokens: the "ID.SECRET"
// string, the bootstrap-token-<id> Secret in kube-system that the API
// server's bootstrap token authenticator and kube-controller-manager's
// bootstrapsigner read, and tlsboot's bound tokens, which carry the one node
// name they may become in an auth-extra-group (encoded and decoded by package
// token/binding, which the approval policy shares).
//
// The format, constants and generator are k8s.io/cluster-bootstrap's, so a
// token made here is a kubeadm token and the other way round. What this
// package adds: the secret half never appears in an error or in String (use
// Value to get the whole token on purpose), every error is one line naming
// what to fix, and a Secret is checked field by field when it is read back.
package token

import (
	"errors"
	"fmt"
	"strings"

	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	tokenutil "k8s.io/cluster-bootstrap/token/util"
)

// Token is a bootstrap token. The zero value is not a valid token.
//
// String and GoString redact the secret, so a Token that reaches a log line
// or an error by mistake reveals only its public ID.
type Token struct {
	// ID is the public half: 6 characters of [a-z0-9]. It names the Secret
	// (bootstrap-token-<ID>), the user (system:bootstrap:<ID>) and the
	// signature key in cluster-info (jws-kubeconfig-<ID>).
	ID string
	// Secret is the private half: 16 characters of [a-z0-9].
	Secret string
}

// ErrMalformed is the kind of every error Parse and ParseID return.
var ErrMalformed = errors.New("malformed bootstrap token")

// Parse parses "ID.SECRET", which must match [a-z0-9]{6}\.[a-z0-9]{16}.
// The secret is checked in constant time (cluster-bootstrap's
// IsValidBootstrapToken), and the error, which wraps ErrMalformed, never
// repeats the input: a mistyped token is still mostly a secret.
func Parse(s string) (Token, error) {
	if !tokenutil.IsValidBootstrapToken(s) {
		return Token{}, fmt.Errorf("%w: it must be 6 and 16 characters of a-z and 0-9 joined by a dot (ID.SECRET), for example the output of 'tlsboot token create'", ErrMalformed)
	}
	id, secret, _ := strings.Cut(s, ".")
	return Token{ID: id, Secret: secret}, nil
}

// ParseID accepts a token ID ("abcdef") or a whole token ("abcdef.<secret>")
// and returns the ID, as kubeadm's token delete does. Errors wrap
// ErrMalformed and repeat the input only when it cannot hold a secret.
func ParseID(s string) (string, error) {
	if tokenutil.IsValidBootstrapTokenID(s) {
		return s, nil
	}
	if t, err := Parse(s); err == nil {
		return t.ID, nil
	}
	if len(s) <= bootstrapapi.BootstrapTokenIDBytes && !strings.Contains(s, ".") {
		return "", fmt.Errorf("%w: token ID %q must be 6 characters of a-z and 0-9", ErrMalformed, s)
	}
	return "", fmt.Errorf("%w: expected a token ID (6 characters of a-z and 0-9) or a whole token ID.SECRET", ErrMalformed)
}

// Generate returns a new random token from crypto/rand
// (cluster-bootstrap's generator).
func Generate() (Token, error) {
	s, err := tokenutil.GenerateBootstrapToken()
	if err != nil {
		return Token{}, fmt.Errorf("generating a bootstrap token: %w", err)
	}
	return Parse(s)
}

// Value returns the whole token "ID.SECRET". Call it only where the secret
// must be shown or sent: a kubeconfig, the output of token create, the
// join command.
func (t Token) Value() string { return t.ID + "." + t.Secret }

// String returns "ID.<redacted>".
func (t Token) String() string { return t.ID + ".<redacted>" }

// GoString keeps %#v from printing the secret.
func (t Token) GoString() string { return fmt.Sprintf("token.Token{ID: %q, Secret: <redacted>}", t.ID) }

// SecretName is the name of the token's Secret in kube-system.
func SecretName(id string) string { return tokenutil.BootstrapTokenSecretName(id) }
