package discovery

import "errors"

// The kinds of *Error, for errors.Is.
var (
	// ErrUnreachable: no answer from the server, or an unexpected one.
	ErrUnreachable = errors.New("server unreachable")
	// ErrNotSetUp: the server has no readable cluster-info ConfigMap.
	ErrNotSetUp = errors.New("cluster not set up for token discovery")
	// ErrNoSignature: cluster-info has no signature for the token's ID
	// within Options.Timeout.
	ErrNoSignature = errors.New("no signature for the token")
	// ErrBadSignature: the signature for the token's ID was not made with
	// the token's secret.
	ErrBadSignature = errors.New("signature mismatch")
	// ErrMalformed: the signed content is not a kubeconfig with one
	// cluster, an https server and a CA.
	ErrMalformed = errors.New("malformed cluster-info")
	// ErrPinMismatch: no CA in cluster-info matches a pin.
	ErrPinMismatch = errors.New("CA pin mismatch")
	// ErrNotVerified: the second fetch, verifying TLS with the pinned CA,
	// failed verification or returned other content: someone may be in
	// the middle.
	ErrNotVerified = errors.New("server not verified by the pinned CA")
)

// Error is every error of Discover after Options.Validate. Its message is
// one line saying what was found, where, and what to do; it never contains
// the token's secret.
type Error struct {
	// Kind is one of the Err* values of this package.
	Kind error
	// Server is the address that was asked.
	Server string
	// Presented are the pins of the CAs in cluster-info, for
	// ErrPinMismatch: compare them with the cluster's.
	Presented []Pin
	// Err is the underlying error, if any.
	Err error

	msg string
}

func (e *Error) Error() string { return e.msg }
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}
