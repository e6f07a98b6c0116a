package csr

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// secret stands for a bootstrap token or key material that must never
// reach an error message; tests put it wherever a careless Error() could
// pick it up.
const secret = "abcdef.0123456789abcdef"

// checkOneLine fails when msg spans lines, lacks one of want, or leaks
// the secret.
func checkOneLine(t *testing.T, msg string, want ...string) {
	t.Helper()
	if strings.ContainsAny(msg, "\n\r") {
		t.Errorf("error %q spans lines", msg)
	}
	if strings.Contains(msg, secret) {
		t.Errorf("error %q contains a secret", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not contain %q", msg, w)
		}
	}
}

func TestOutcomeError(t *testing.T) {
	tests := []struct {
		kind       error
		reason     string
		message    string
		want       string
		wantDelete bool // the message tells to delete the CSR
	}{
		{ErrDenied, "NotMine", "policy\nsays no", `certificate signing request n was denied (reason "NotMine": policy says no); delete it with "kubectl delete csr n" and run again`, true},
		{ErrDenied, "TokenBoundToOtherNode", "requester x is a token bound to node a", `certificate signing request n was denied (reason "TokenBoundToOtherNode": requester x is a token bound to node a); running again with the same bootstrap token is denied again`, false},
		{ErrFailed, "SignerError", "", `certificate signing request n failed (reason "SignerError"); delete it with "kubectl delete csr n"`, true},
		{ErrDeleted, "", "", "certificate signing request n was deleted; run again to request a new certificate", false},
		{ErrReplaced, "", "uid b took the place of uid a", "certificate signing request n was replaced (uid b took the place of uid a); run again", false},
	}
	for _, tt := range tests {
		t.Run(tt.kind.Error(), func(t *testing.T) {
			var err error = fmt.Errorf("wrapped: %w", &OutcomeError{Name: "n", Reason: tt.reason, Message: tt.message, Kind: tt.kind})
			var oe *OutcomeError
			if !errors.As(err, &oe) || oe.Name != "n" || oe.Reason != tt.reason || oe.Kind != tt.kind {
				t.Fatalf("errors.As(%v) = %+v", err, oe)
			}
			for _, k := range []error{ErrDenied, ErrFailed, ErrDeleted, ErrReplaced} {
				if got := errors.Is(err, k); got != (k == tt.kind) {
					t.Errorf("errors.Is(err, %v) = %v", k, got)
				}
			}
			checkOneLine(t, oe.Error(), tt.want)
			if got := strings.Contains(oe.Error(), "kubectl delete csr"); got != tt.wantDelete {
				t.Errorf("error %q: tells to delete the CSR = %v, want %v", oe, got, tt.wantDelete)
			}
		})
	}
}

func TestConflictError(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &ConflictError{Name: "n", Diffs: []string{`signer is "a", want "b"`, "it was made with a\ndifferent private key"}})
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Name != "n" || len(ce.Diffs) != 2 {
		t.Fatalf("errors.As(%v) = %+v", err, ce)
	}
	checkOneLine(t, ce.Error(), `certificate signing request n already exists and does not match this request: signer is "a", want "b", it was made with a different private key; delete it with "kubectl delete csr n" and run again`)
}

func TestCertificateError(t *testing.T) {
	for _, p := range []Problem{ProblemParse, ProblemKey, ProblemNames, ProblemValidity, ProblemCA, ProblemUsages, ProblemChain} {
		t.Run(string(p), func(t *testing.T) {
			err := fmt.Errorf("wrapped: %w", &CertificateError{CSR: "n", Problem: p, Detail: "what\nexactly"})
			var ce *CertificateError
			if !errors.As(err, &ce) || ce.CSR != "n" || ce.Problem != p || ce.Detail != "what\nexactly" {
				t.Fatalf("errors.As(%v) = %+v", err, ce)
			}
			checkOneLine(t, ce.Error(), "certificate signing request n: the signer returned "+string(p)+" (what exactly), not stored: check the signer, then delete the CSR with 'kubectl delete csr n' and run again")
		})
	}
	t.Run("no CSR", func(t *testing.T) {
		checkOneLine(t, (&CertificateError{Problem: ProblemCA}).Error(), "the signer returned a CA certificate")
	})
}

func TestTimeoutError(t *testing.T) {
	tests := []struct {
		e    TimeoutError
		want string
	}{
		{TimeoutError{CSR: "n", Signer: certificatesv1.KubeAPIServerClientKubeletSignerName, Waited: time.Hour},
			"certificate signing request n was not issued within 1h0m0s: approve it with 'kubectl certificate approve n' or check that a signer issues kubernetes.io/kube-apiserver-client-kubelet"},
		{TimeoutError{CSR: "n", Waited: 90 * time.Second}, "within 1m30s: approve it with 'kubectl certificate approve n' or check that a signer issues its signer"},
		{TimeoutError{CSR: "n", Signer: "example.com/s", Waited: time.Minute, Approved: true},
			"certificate signing request n was approved but not signed within 1m0s: check that a signer issues example.com/s"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			e := tt.e
			err := fmt.Errorf("wrapped: %w", &e)
			var te *TimeoutError
			if !errors.As(err, &te) || *te != tt.e {
				t.Fatalf("errors.As(%v) = %+v", err, te)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%v is not context.DeadlineExceeded", err)
			}
			checkOneLine(t, te.Error(), tt.want)
		})
	}
}

func TestClassifyServerError(t *testing.T) {
	gr := certificatesv1.Resource("certificatesigningrequests")
	urlErr := func(err error) error {
		return &url.Error{Op: "Post", URL: "https://10.0.0.1:6443/apis/certificates.k8s.io/v1/certificatesigningrequests", Err: err}
	}
	unknownCA := x509.UnknownAuthorityError{}
	tests := []struct {
		name     string
		err      error
		wantKind error // nil: returned unchanged
		wantText []string
	}{
		{"401", apierrors.NewUnauthorized("Unauthorized"), ErrUnauthorized,
			[]string{"creating certificate signing request n: the API server at https://10.0.0.1:6443 rejected the credentials (401 Unauthorized): they are invalid or expired; replace them"}},
		{"403", apierrors.NewForbidden(gr, "", errors.New(`User "system:bootstrap:abcdef" cannot create`)), ErrForbidden,
			[]string{"the credentials may not do this (403 Forbidden: ", `User "system:bootstrap:abcdef" cannot create`, "grant them the permission"}},
		{"unknown authority", urlErr(&tls.CertificateVerificationError{Err: unknownCA}), ErrTLS,
			[]string{"TLS verification of the API server at https://10.0.0.1:6443 failed (its certificate is signed by an unknown authority): check the certificate-authority of the cluster"}},
		{"hostname", urlErr(x509.HostnameError{Host: "10.0.0.1", Certificate: &x509.Certificate{}}), ErrTLS,
			[]string{"TLS verification", "10.0.0.1"}},
		{"expired server certificate", urlErr(x509.CertificateInvalidError{Reason: x509.Expired, Cert: &x509.Certificate{}}), ErrTLS,
			[]string{"TLS verification", "expired"}},
		{"connection refused", urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), ErrUnreachable,
			[]string{"the API server at https://10.0.0.1:6443 did not answer (Post ", "connection refused): check that the API server is running and reachable from here"}},
		{"503", apierrors.NewServiceUnavailable("starting"), ErrUnreachable, []string{"did not answer"}},
		{"429", apierrors.NewTooManyRequests("slow down", 1), ErrUnreachable, []string{"did not answer"}},
		{"500", apierrors.NewInternalError(errors.New("etcd")), ErrUnreachable, []string{"did not answer"}},
		{"422 is about the request", apierrors.NewInvalid(certificatesv1.Kind("CertificateSigningRequest"), "n", field.ErrorList{}), nil, nil},
		{"400 is about the request", apierrors.NewBadRequest("bad"), nil, nil},
		{"404 is about the request", apierrors.NewNotFound(gr, "n"), nil, nil},
		{"409 is about the request", apierrors.NewAlreadyExists(gr, "n"), nil, nil},
		{"cancelled is the caller's", urlErr(context.Canceled), nil, nil},
		{"deadline is the caller's", urlErr(context.DeadlineExceeded), nil, nil},
		{"nil", nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ClassifyServerError(tt.err, "https://10.0.0.1:6443", "creating certificate signing request", "n")
			var se *ServerError
			if tt.wantKind == nil {
				if err != tt.err {
					t.Fatalf("ClassifyServerError(%v) = %v, want it unchanged", tt.err, err)
				}
				return
			}
			if !errors.As(err, &se) || se.Kind != tt.wantKind || se.Server != "https://10.0.0.1:6443" ||
				se.Op != "creating certificate signing request" || se.CSR != "n" || se.Err != tt.err {
				t.Fatalf("ClassifyServerError(%v) = %#v, want a *ServerError of kind %v", tt.err, err, tt.wantKind)
			}
			for _, k := range []error{ErrUnauthorized, ErrForbidden, ErrTLS, ErrUnreachable} {
				if got := errors.Is(err, k); got != (k == tt.wantKind) {
					t.Errorf("errors.Is(err, %v) = %v", k, got)
				}
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("%v does not unwrap to the client-go error", err)
			}
			if again := ClassifyServerError(fmt.Errorf("wrapped: %w", err), "other", "other", "other"); !errors.As(again, &se) || se.Server != "https://10.0.0.1:6443" {
				t.Errorf("classifying a *ServerError again changed it: %v", again)
			}
			checkOneLine(t, err.Error(), tt.wantText...)
		})
	}
}

// TestServerErrorStillAPIStatus: callers that ask apimachinery keep
// getting their answer through the *ServerError.
func TestServerErrorStillAPIStatus(t *testing.T) {
	err := ClassifyServerError(apierrors.NewUnauthorized("Unauthorized"), "", "", "")
	if !apierrors.IsUnauthorized(err) || !errors.Is(err, ErrUnauthorized) {
		t.Errorf("%v: IsUnauthorized %v, Is(ErrUnauthorized) %v", err, apierrors.IsUnauthorized(err), errors.Is(err, ErrUnauthorized))
	}
	err = ClassifyServerError(apierrors.NewForbidden(certificatesv1.Resource("certificatesigningrequests"), "", errors.New("no")), "", "", "")
	if !apierrors.IsForbidden(err) {
		t.Errorf("%v: IsForbidden false", err)
	}
}

// TestServerErrorCallerContext: the fields a caller fills are used, and
// the default hints name the kubeconfig.
func TestServerErrorCallerContext(t *testing.T) {
	tests := []struct {
		e    ServerError
		want string
	}{
		{ServerError{Kind: ErrUnauthorized, Server: "https://s", Err: apierrors.NewUnauthorized(secret), Kubeconfig: "/etc/kubernetes/bootstrap.conf",
			Hint: "the bootstrap token is invalid or expired; create a new one (for example 'kubeadm token create') and put it in that file"},
			"the API server at https://s rejected the credentials in /etc/kubernetes/bootstrap.conf (401 Unauthorized): the bootstrap token is invalid or expired; create a new one (for example 'kubeadm token create') and put it in that file"},
		{ServerError{Kind: ErrTLS, Server: "https://s", Err: x509.UnknownAuthorityError{}, Kubeconfig: "/k"},
			"TLS verification of the API server at https://s failed (its certificate is signed by an unknown authority): check the certificate-authority of the cluster in /k"},
		{ServerError{Kind: ErrUnreachable, CSR: "n", Err: errors.New("EOF")},
			"certificate signing request n: the API server did not answer (EOF): check that the API server is running and reachable from here"},
		{ServerError{Kind: ErrUnauthorized, Err: errors.New("x"), Kubeconfig: "/k"},
			"the API server rejected the credentials in /k (401 Unauthorized): they are invalid or expired; replace them in /k"},
		{ServerError{Kind: ErrForbidden, Op: "watching certificate signing request", CSR: "n", Err: apierrors.NewForbidden(certificatesv1.Resource("certificatesigningrequests"), "n", errors.New("no")), Kubeconfig: "/k",
			Hint: "bind the token's group to the system:node-bootstrapper ClusterRole"},
			"watching certificate signing request n: the credentials in /k may not do this (403 Forbidden: "},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			checkOneLine(t, tt.e.Error(), tt.want)
		})
	}
}

// TestIdentityErrorBounds: what the API server says of an issued
// certificate is kept bounded and valid UTF-8, on one line.
func TestIdentityErrorBounds(t *testing.T) {
	groups := make([]string, 20)
	for i := range groups {
		groups[i] = strings.Repeat("é", 200) // 400 bytes, cut inside a character
	}
	e := NewIdentityError("node-csr-x", "https://api", "system:node:a", "system:nodes", strings.Repeat("ü", 300)+"\nx", groups)
	if len(e.Groups) != maxIdentityGroups+1 || e.Groups[maxIdentityGroups] != "(12 more)" {
		t.Errorf("groups %d, last %q: want %d and a count of the rest", len(e.Groups), e.Groups[len(e.Groups)-1], maxIdentityGroups+1)
	}
	for _, s := range append([]string{e.User}, e.Groups...) {
		if len(s) > maxIdentityName+len("…") || !utf8.ValidString(s) {
			t.Errorf("kept %d bytes (valid UTF-8 %v)", len(s), utf8.ValidString(s))
		}
	}
	if msg := e.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "node-csr-x") {
		t.Errorf("Error() = %q: want one line naming the CSR", msg)
	}
}
