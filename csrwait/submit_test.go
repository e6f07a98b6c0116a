package csrwait

import (
	"context"
	"errors"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tlsboot/tlsboot/csr"
)

func TestSubmitCreatesThenReattaches(t *testing.T) {
	key, err := csr.GenerateKey(csr.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	r := csr.NodeClient("node-a", key.Public())
	name, err := r.Name(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset()
	ctx := context.Background()
	made, created, err := Submit(ctx, client, name, r, key)
	if err != nil || !created || made.Name != name {
		t.Fatalf("first Submit() = %v, created %v, error %v; want %s created", made, created, err, name)
	}
	stored, err := client.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.Reattach(stored, r, key.Public()); err != nil {
		t.Errorf("the stored CSR is not the request: %v", err)
	}
	again, created, err := Submit(ctx, client, name, r, key)
	if err != nil || created || again.Name != name {
		t.Fatalf("second Submit() = %v, created %v, error %v; want %s re-attached", again, created, err, name)
	}

	other, err := csr.GenerateKey(csr.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	var conflict *csr.ConflictError
	if _, _, err := Submit(ctx, client, name, csr.NodeClient("node-a", other.Public()), other); !errors.As(err, &conflict) || conflict.Name != name {
		t.Errorf("Submit() with another key under the same name: error %v, want *csr.ConflictError", err)
	}
}

func TestSubmitErrors(t *testing.T) {
	key, err := csr.GenerateKey(csr.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	r := csr.NodeClient("node-a", key.Public())
	gr := certificatesv1.Resource("certificatesigningrequests")
	fail := func(err error) k8stesting.ReactionFunc {
		return func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, err }
	}
	tests := []struct {
		name     string
		r        csr.Request
		verb     string // the verb that fails
		err      error  // what the server answers
		wantKind error  // the *csr.ServerError's Kind; nil when not one
		wantIs   func(error) bool
		wantText string
	}{
		{name: "invalid request", r: csr.Request{}, wantText: "invalid certificate signing request: request has no signer name"},
		{name: "create forbidden", r: r, verb: "create", err: apierrors.NewForbidden(gr, "n", errors.New("no")),
			wantKind: csr.ErrForbidden, wantIs: apierrors.IsForbidden,
			wantText: "creating certificate signing request n: the credentials may not do this (403 Forbidden: "},
		{name: "create unauthorized", r: r, verb: "create", err: apierrors.NewUnauthorized("token expired"),
			wantKind: csr.ErrUnauthorized, wantIs: apierrors.IsUnauthorized,
			wantText: "creating certificate signing request n: the API server rejected the credentials (401 Unauthorized): "},
		{name: "create unavailable", r: r, verb: "create", err: apierrors.NewServiceUnavailable("starting"),
			wantKind: csr.ErrUnreachable, wantIs: apierrors.IsServiceUnavailable, wantText: "the API server did not answer"},
		{name: "create invalid", r: r, verb: "create", err: apierrors.NewInvalid(certificatesv1.Kind("CertificateSigningRequest"), "n", field.ErrorList{field.Invalid(field.NewPath("spec"), "x", "bad")}),
			wantIs: apierrors.IsInvalid, wantText: "creating certificate signing request n: CertificateSigningRequest.certificates.k8s.io \"n\" is invalid"},
		{name: "get unreachable", r: r, verb: "get", err: errors.New("connection refused"),
			wantKind: csr.ErrUnreachable, wantText: "reading existing certificate signing request n: the API server did not answer (connection refused)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := fake.NewClientset()
			switch tt.verb {
			case "create":
				client.PrependReactor("create", "certificatesigningrequests", fail(tt.err))
			case "get":
				client.PrependReactor("create", "certificatesigningrequests", fail(apierrors.NewAlreadyExists(gr, "n")))
				client.PrependReactor("get", "certificatesigningrequests", fail(tt.err))
			}
			_, _, err := Submit(context.Background(), client, "n", tt.r, key)
			if err == nil || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("Submit() error = %v, want it to contain %q", err, tt.wantText)
			}
			var se *csr.ServerError
			switch {
			case tt.wantKind == nil && errors.As(err, &se):
				t.Errorf("Submit() error %v is a *csr.ServerError, want none", err)
			case tt.wantKind != nil && (!errors.As(err, &se) || se.Kind != tt.wantKind || se.CSR != "n" || !errors.Is(err, tt.wantKind)):
				t.Errorf("Submit() error %v, want a *csr.ServerError of kind %v for CSR n", err, tt.wantKind)
			}
			if tt.wantIs != nil && !tt.wantIs(err) {
				t.Errorf("error %v does not wrap the API error", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
		})
	}
}

func TestSubmitCancelled(t *testing.T) {
	key, err := csr.GenerateKey(csr.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	client := fake.NewClientset()
	client.PrependReactor("create", "certificatesigningrequests", func(k8stesting.Action) (bool, runtime.Object, error) {
		cancel()
		return true, nil, context.Canceled
	})
	_, _, err = Submit(ctx, client, "n", csr.NodeClient("node-a", key.Public()), key)
	var se *csr.ServerError
	if !errors.Is(err, context.Canceled) || errors.As(err, &se) {
		t.Errorf("Submit() with a cancelled ctx: error %v, want context.Canceled and no *csr.ServerError", err)
	}
}
