package csr

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// This file is the one error vocabulary of tlsboot. Every way a node fails
// to get a certificate is one of the types below, created where the failure
// is seen (here, in csrwait, or by ClassifyServerError). Callers branch on
// them with errors.Is (the sentinels) and errors.As (the fields); messages,
// metric labels and retry decisions all read these same types. Each Error()
// is one line that names the CSR when there is one and says what to do, and
// never contains keys, tokens or certificates.

// Kinds of *OutcomeError: the ways a CSR ends without a certificate. Match
// them with errors.Is.
var (
	ErrDenied   = errors.New("certificate signing request denied")
	ErrFailed   = errors.New("certificate signing request failed")
	ErrDeleted  = errors.New("certificate signing request deleted")
	ErrReplaced = errors.New("certificate signing request replaced")
)

// OutcomeError reports a CSR that will never yield a certificate. Kind is
// ErrDenied or ErrFailed (a condition on the CSR; Reason and Message are
// the condition's), ErrDeleted (it was deleted while awaited, or did not
// exist when the wait started), or ErrReplaced (it was deleted and another
// CSR of the same name, with another UID, took its place; Message names
// both UIDs). Deleted and replaced CSRs are gone: running again asks anew.
// Denied and failed ones stay, and must be deleted before the same key can
// ask again under the same name.
type OutcomeError struct {
	Name    string
	Reason  string
	Message string
	Kind    error // ErrDenied, ErrFailed, ErrDeleted or ErrReplaced
}

func (e *OutcomeError) Error() string {
	var b strings.Builder
	b.WriteString("certificate signing request ")
	b.WriteString(e.Name)
	switch {
	case errors.Is(e.Kind, ErrDenied):
		b.WriteString(" was denied")
	case errors.Is(e.Kind, ErrFailed):
		b.WriteString(" failed")
	case errors.Is(e.Kind, ErrReplaced):
		b.WriteString(" was replaced")
	case errors.Is(e.Kind, ErrDeleted):
		b.WriteString(" was deleted")
	default:
		fmt.Fprintf(&b, ": %v", e.Kind)
	}
	switch reason, msg := oneLine(e.Reason), oneLine(e.Message); {
	case reason != "" && msg != "":
		fmt.Fprintf(&b, " (reason %q: %s)", reason, msg)
	case reason != "":
		fmt.Fprintf(&b, " (reason %q)", reason)
	case msg != "":
		fmt.Fprintf(&b, " (%s)", msg)
	}
	switch {
	case e.gone():
		b.WriteString("; run again to request a new certificate")
	case errors.Is(e.Kind, ErrDenied) && tokenDenials[e.Reason]:
		b.WriteString("; running again with the same bootstrap token is denied again")
	default:
		fmt.Fprintf(&b, "; delete it with %q and run again to request a new certificate", "kubectl delete csr "+e.Name)
	}
	return b.String()
}

// Reasons of the denials that follow the bootstrap token rather than the
// request, as tlsboot approver gives them (approval.ReasonToken* and
// approval.ReasonInvalidTokenBinding are these): a new CSR made with the
// same token is denied again, so OutcomeError does not advise deleting the
// CSR and running again; the approver's message says what to do instead.
const (
	// ReasonTokenBoundToOtherNode: the token is bound to another node.
	ReasonTokenBoundToOtherNode = "TokenBoundToOtherNode"
	// ReasonInvalidTokenBinding: the token's binding group is malformed.
	ReasonInvalidTokenBinding = "InvalidTokenBinding"
	// ReasonTokenAlreadyUsed: the bound token already asked for another
	// key, or more often than allowed.
	ReasonTokenAlreadyUsed = "TokenAlreadyUsed"
)

var tokenDenials = map[string]bool{
	ReasonTokenBoundToOtherNode: true,
	ReasonInvalidTokenBinding:   true,
	ReasonTokenAlreadyUsed:      true,
}

func (e *OutcomeError) gone() bool {
	return errors.Is(e.Kind, ErrDeleted) || errors.Is(e.Kind, ErrReplaced)
}

// Unwrap returns Kind.
func (e *OutcomeError) Unwrap() error { return e.Kind }

// ConflictError reports that a CSR of the name we wanted already exists but
// asks for something else (another signer, key, subject, usages or SANs),
// so it cannot be waited on. Deleting it lets the next run create ours.
type ConflictError struct {
	Name  string
	Diffs []string // what differs, e.g. `signer is "a", want "b"`; never key material
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("certificate signing request %s already exists and does not match this request: %s; delete it with %q and run again",
		e.Name, oneLine(strings.Join(e.Diffs, ", ")), "kubectl delete csr "+e.Name)
}

// Problem says what is wrong with an issued certificate. The values read
// after "the signer returned" and are stable.
type Problem string

// The problems of a *CertificateError.
const (
	// ProblemParse: what the signer returned is not a PEM chain of
	// certificates that parse.
	ProblemParse Problem = "a certificate that does not parse"
	// ProblemKey: the leaf is for another public key than the request's.
	ProblemKey Problem = "a certificate for a different public key"
	// ProblemNames: the leaf's subject (CN, O) or SANs (DNS names, IP
	// addresses) are not the requested ones.
	ProblemNames Problem = "a certificate for other names"
	// ProblemValidity: the leaf is not valid at the time of the check
	// (not yet, or no longer).
	ProblemValidity Problem = "a certificate that is not valid now"
	// ProblemCA: the signer returned a CA certificate (basicConstraints
	// CA:TRUE, or the keyCertSign or cRLSign key usage). A node holding
	// it could issue certificates.
	ProblemCA Problem = "a CA certificate"
	// ProblemUsages: its extended key usages are not the ones requested
	// (for example server auth on a client certificate, any usage, or
	// none, which means any).
	ProblemUsages Problem = "a certificate for other usages"
	// ProblemChain: it does not chain, for the requested usages, to the
	// CA the caller asked for (tlsboot's --client-ca-file or
	// --serving-ca-file).
	ProblemChain Problem = "a certificate that does not chain to the required CA"
)

// CertificateError reports an issued certificate that must not be stored or
// used: Check and CheckIssued return it for every failure. CSR is the CSR
// that issued it, empty when the caller did not say (Check); Error() then
// leaves naming the CSR and what to do to the caller. Retrying the
// same CSR returns the same certificate: the way out is to fix the signer,
// delete the CSR and ask again, with a new key.
type CertificateError struct {
	CSR     string
	Problem Problem
	Detail  string // what exactly, one line; empty if nothing to add
}

func (e *CertificateError) Error() string {
	what := string(e.Problem)
	if d := oneLine(e.Detail); d != "" {
		what += " (" + d + ")"
	}
	if e.CSR == "" {
		return "the signer returned " + what
	}
	return fmt.Sprintf("certificate signing request %s: the signer returned %s, not stored: check the signer, then delete the CSR with 'kubectl delete csr %s' and run again",
		e.CSR, what, e.CSR)
}

// IdentityError reports an issued client certificate that the API server
// does not accept as the identity it was requested for, so it must not be
// stored: the API server answered 401 to a request authenticated with it
// (Unauthorized: it does not trust the signer's CA for client
// certificates), or authenticated it as another user (User), or without
// the group (Groups). The certificate may pass every check of Check: only
// the API server knows which CAs it trusts for client certificates, and
// clusters often keep that CA apart from the one that serves the API.
//
// User and Groups are what the API server said, bounded before they are
// kept (at most 8 groups of at most 253 bytes each). Retrying the same CSR
// returns the same certificate: the way out is to make the signer of
// kubernetes.io/kube-apiserver-client-kubelet use a CA in the API server's
// --client-ca-file, then ask again with a new key, under a new CSR.
type IdentityError struct {
	CSR          string   // the CSR that issued the certificate; empty if not known
	Server       string   // the API server's URL; empty if unknown
	Want         string   // the user the certificate was requested for, e.g. system:node:<name>
	WantGroup    string   // the group it must be in, e.g. system:nodes
	Unauthorized bool     // the API server answered 401
	User         string   // the user the API server authenticated it as (not Unauthorized)
	Groups       []string // the groups it put that user in (not Unauthorized)
}

// Bounds of the user and groups that NewIdentityError keeps.
const (
	maxIdentityGroups = 8
	maxIdentityName   = 253
)

// NewIdentityError returns an *IdentityError for an issued certificate
// that the API server authenticated as user in groups instead of want in
// wantGroup, bounding user and groups (they come from the server, which may
// be echoing what a signer wrote into the certificate).
func NewIdentityError(csrName, server, want, wantGroup, user string, groups []string) *IdentityError {
	e := &IdentityError{CSR: csrName, Server: server, Want: want, WantGroup: wantGroup, User: bound(user, maxIdentityName)}
	for i, g := range groups {
		if i == maxIdentityGroups {
			e.Groups = append(e.Groups, fmt.Sprintf("(%d more)", len(groups)-i))
			break
		}
		e.Groups = append(e.Groups, bound(g, maxIdentityName))
	}
	return e
}

func (e *IdentityError) Error() string {
	var b strings.Builder
	if e.CSR != "" {
		fmt.Fprintf(&b, "certificate signing request %s: ", e.CSR)
	}
	server := "the API server"
	if e.Server != "" {
		server += " at " + e.Server
	}
	want := e.Want
	if e.WantGroup != "" {
		want += " in " + e.WantGroup
	}
	if e.Unauthorized {
		fmt.Fprintf(&b, "%s rejected the issued certificate (401 Unauthorized: it does not trust the signer's CA for client certificates)", server)
	} else {
		groups := "no group"
		if len(e.Groups) > 0 {
			groups = "groups " + strings.Join(e.Groups, ", ")
		}
		fmt.Fprintf(&b, "%s authenticates the issued certificate as %q (%s), not as %s", server, oneLine(e.User), oneLine(groups), want)
	}
	if e.CSR == "" {
		return b.String()
	}
	b.WriteString(", not stored: make the kubelet client signer (kubernetes.io/kube-apiserver-client-kubelet) use a CA in the API server's --client-ca-file, then run again (a new key and CSR are used)")
	return b.String()
}

// bound cuts s to at most n bytes, marking the cut; a character split by
// the cut is dropped, so that the result stays valid UTF-8.
func bound(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// Kinds of *ServerError: how a request to the API server failed. Match
// them with errors.Is.
var (
	// ErrUnauthorized: the server rejected the credentials (401).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: the credentials may not do this (403).
	ErrForbidden = errors.New("forbidden")
	// ErrTLS: TLS verification of the server's certificate failed.
	ErrTLS = errors.New("TLS verification of the API server failed")
	// ErrUnreachable: no answer, or one that says "try later" (5xx, 429).
	ErrUnreachable = errors.New("API server unreachable")
)

// ServerError reports a request to the API server that failed for a reason
// other than the request itself: Kind is ErrUnauthorized, ErrForbidden,
// ErrTLS or ErrUnreachable. ClassifyServerError makes it from a client-go
// error; Submit, csrwait.Wait and csrwait.ForCSR return it.
//
// Unwrap returns both Kind and Err, so errors.Is(err, csr.ErrForbidden) and
// apierrors.IsForbidden(err) both hold.
//
// Server, Op and CSR say where; Kubeconfig and Hint are for the caller that
// knows more than this package does, and are optional: set Kubeconfig to
// the file the server, CA and credentials came from, and Hint to replace
// the default advice of Kind. For example, bootstrap sets the bootstrap
// kubeconfig and, for ErrUnauthorized, "the bootstrap token is invalid or
// expired; create a new one (for example 'kubeadm token create') and put it
// in that file". DefaultHint returns the advice used when Hint is empty.
// Set them on the value errors.As found before the error is printed.
type ServerError struct {
	Kind   error  // ErrUnauthorized, ErrForbidden, ErrTLS or ErrUnreachable
	Server string // the API server's URL; empty if unknown
	Op     string // what was being done, e.g. "creating certificate signing request"
	CSR    string // the CSR concerned, if any
	Err    error  // the client-go error

	Kubeconfig string // optional: where the server, CA and credentials came from
	Hint       string // optional: what to do, instead of DefaultHint
}

func (e *ServerError) Error() string {
	var b strings.Builder
	switch {
	case e.Op != "" && e.CSR != "":
		fmt.Fprintf(&b, "%s %s: ", e.Op, e.CSR)
	case e.Op != "":
		b.WriteString(e.Op + ": ")
	case e.CSR != "":
		fmt.Fprintf(&b, "certificate signing request %s: ", e.CSR)
	}
	server := "the API server"
	if e.Server != "" {
		server += " at " + e.Server
	}
	creds := "the credentials"
	if e.Kubeconfig != "" {
		creds += " in " + e.Kubeconfig
	}
	switch {
	case errors.Is(e.Kind, ErrUnauthorized):
		fmt.Fprintf(&b, "%s rejected %s (401 Unauthorized)", server, creds)
	case errors.Is(e.Kind, ErrForbidden):
		fmt.Fprintf(&b, "%s may not do this (403 Forbidden: %s)", creds, oneLine(apiMessage(e.Err)))
	case errors.Is(e.Kind, ErrTLS):
		fmt.Fprintf(&b, "TLS verification of %s failed (%s)", server, oneLine(tlsCause(e.Err)))
	default:
		fmt.Fprintf(&b, "%s did not answer (%s)", server, oneLine(errString(e.Err)))
	}
	hint := e.Hint
	if hint == "" {
		hint = e.DefaultHint()
	}
	b.WriteString(": " + oneLine(hint))
	return b.String()
}

// DefaultHint is the advice Error gives for Kind when Hint is empty.
func (e *ServerError) DefaultHint() string {
	in := ""
	if e.Kubeconfig != "" {
		in = " in " + e.Kubeconfig
	}
	switch {
	case errors.Is(e.Kind, ErrUnauthorized):
		return "they are invalid or expired; replace them" + in
	case errors.Is(e.Kind, ErrForbidden):
		return "grant them the permission (RBAC) to do this"
	case errors.Is(e.Kind, ErrTLS):
		return "check the certificate-authority of the cluster" + in
	}
	return "check that the API server is running and reachable from here"
}

// Unwrap returns Kind and Err.
func (e *ServerError) Unwrap() []error { return []error{e.Kind, e.Err} }

// ClassifyServerError returns err as a *ServerError when it is a failure of
// the server or of the connection to it: 401, 403, a failed TLS verification
// of the server (x509.UnknownAuthorityError, x509.HostnameError,
// x509.CertificateInvalidError, *tls.CertificateVerificationError), a 5xx or
// 429 status, or no answer at all (any other error that is not an API
// status). It returns err unchanged when it is nil, already a *ServerError,
// an API status about the request itself (400, 404, 409, 422, …), or a
// context error: the caller's context ended, which is the caller's to
// report. server is the API server's URL, op says what was being done, and
// csrName the CSR concerned (may be empty).
func ClassifyServerError(err error, server, op, csrName string) error {
	var se *ServerError
	if err == nil || errors.As(err, &se) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	kind := serverKind(err)
	if kind == nil {
		return err
	}
	return &ServerError{Kind: kind, Server: server, Op: op, CSR: csrName, Err: err}
}

// serverKind returns the Kind of err, nil when it is not a server failure.
func serverKind(err error) error {
	var status apierrors.APIStatus
	switch {
	case apierrors.IsUnauthorized(err):
		return ErrUnauthorized
	case apierrors.IsForbidden(err):
		return ErrForbidden
	case tlsVerification(err):
		return ErrTLS
	case errors.As(err, &status):
		if c := status.Status().Code; c >= 500 || c == 429 {
			return ErrUnreachable
		}
		return nil
	}
	return ErrUnreachable
}

func tlsVerification(err error) bool {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	return errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verify)
}

// tlsCause says why TLS verification failed, without the URL client-go
// puts around it.
func tlsCause(err error) string {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknownCA):
		return "its certificate is signed by an unknown authority"
	case errors.As(err, &hostname):
		return hostname.Error()
	case errors.As(err, &invalid):
		return invalid.Error()
	case errors.As(err, &verify):
		return verify.Err.Error()
	}
	return errString(err)
}

func apiMessage(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return status.Status().Message
	}
	return errString(err)
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// TimeoutError reports a CSR that was not issued before the wait's
// deadline: csrwait.Wait and csrwait.ForCSR return it when their context's
// deadline passes. It unwraps to context.DeadlineExceeded. The CSR is still
// there: approving it, or getting its signer to sign it, and then running
// again picks its certificate up.
type TimeoutError struct {
	CSR      string
	Signer   string        // the CSR's signer; empty if the CSR was never seen
	Waited   time.Duration // how long the wait lasted
	Approved bool          // it was approved, but no certificate came
}

func (e *TimeoutError) Error() string {
	signer := "its signer"
	if e.Signer != "" {
		signer = e.Signer
	}
	if e.Approved {
		return fmt.Sprintf("certificate signing request %s was approved but not signed within %v: check that a signer issues %s", e.CSR, e.Waited, signer)
	}
	return fmt.Sprintf("certificate signing request %s was not issued within %v: approve it with 'kubectl certificate approve %s' or check that a signer issues %s",
		e.CSR, e.Waited, e.CSR, signer)
}

// Unwrap returns context.DeadlineExceeded.
func (e *TimeoutError) Unwrap() error { return context.DeadlineExceeded }

// oneLine keeps text written by others (approvers, servers) from breaking
// our one-line errors.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
