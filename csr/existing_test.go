package csr

import (
	"crypto"
	"errors"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
)

// existingCSR builds the API object an earlier request of r with key
// would have left, with the given conditions.
func existingCSR(t *testing.T, name string, r Request, key crypto.Signer, conds ...certificatesv1.RequestConditionType) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	obj, err := r.Object(name, key)
	if err != nil {
		t.Fatal(err)
	}
	obj.UID = "uid-1"
	for _, c := range conds {
		obj.Status.Conditions = append(obj.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: c, Status: corev1.ConditionTrue, Reason: "Because", Message: "policy\nsays so",
		})
	}
	return obj
}

func TestObject(t *testing.T) {
	key := mustParseKey(t, fixtureRSAKey)
	r := NodeClient("node-a", key.Public())
	r.Expiration = time.Hour
	obj, err := r.Object("n", key)
	if err != nil {
		t.Fatal(err)
	}
	if obj.Name != "n" || obj.GenerateName != "" || obj.Spec.SignerName != r.SignerName || !sameSet(obj.Spec.Usages, r.Usages) {
		t.Errorf("Object() = name %q generateName %q signer %s usages %v", obj.Name, obj.GenerateName, obj.Spec.SignerName, obj.Spec.Usages)
	}
	if e := obj.Spec.ExpirationSeconds; e == nil || *e != 3600 {
		t.Errorf("expirationSeconds = %v, want 3600", e)
	}
	if diffs := compare(obj, r, key.Public()); len(diffs) > 0 {
		t.Errorf("object differs from its request: %v", diffs)
	}
	if obj, err := r.Object("", key); err != nil || obj.GenerateName != "csr-" {
		t.Errorf(`Object("") = %v, %v; want generateName "csr-"`, obj, err)
	}
	if _, err := (Request{}).Object("n", key); err == nil || err.Error() != "invalid certificate signing request: request has no signer name" {
		t.Errorf("Object() of an empty request: error %v", err)
	}
}

func TestReattach(t *testing.T) {
	key, other := mustParseKey(t, fixtureECKey), mustParseKey(t, fixtureRSAKey)
	r := NodeClient("node-a", key.Public())
	const name = "node-csr-test"
	serving := NodeServing("node-a", key.Public(), []string{"a"}, nil)
	tests := []struct {
		name     string
		existing *certificatesv1.CertificateSigningRequest
		wantErr  error  // errors.Is target, or a *ConflictError; nil for success
		wantText string // part of the error text
	}{
		{name: "same key", existing: existingCSR(t, name, r, key)},
		{name: "approved", existing: existingCSR(t, name, r, key, certificatesv1.CertificateApproved)},
		{name: "other key conflicts", existing: existingCSR(t, name, NodeClient("node-a", other.Public()), other),
			wantErr: &ConflictError{}, wantText: "made with a different private key"},
		{name: "other node conflicts", existing: existingCSR(t, name, NodeClient("node-b", key.Public()), key),
			wantErr: &ConflictError{}, wantText: `CN is "system:node:node-b", want "system:node:node-a"`},
		{name: "other signer and usages conflict", existing: existingCSR(t, name, serving, key),
			wantErr: &ConflictError{}, wantText: `signer is "kubernetes.io/kubelet-serving", want "kubernetes.io/kube-apiserver-client-kubelet", usages are`},
		{name: "denied", existing: existingCSR(t, name, r, key, certificatesv1.CertificateDenied),
			wantErr: ErrDenied, wantText: `certificate signing request node-csr-test was denied (reason "Because": policy says so); delete it with "kubectl delete csr node-csr-test" and run again`},
		{name: "failed after approval", existing: existingCSR(t, name, r, key, certificatesv1.CertificateApproved, certificatesv1.CertificateFailed),
			wantErr: ErrFailed, wantText: "node-csr-test failed (reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Reattach(tt.existing, r, key.Public())
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var conflict *ConflictError
			var outcome *OutcomeError
			switch want := tt.wantErr.(type) {
			case *ConflictError:
				if !errors.As(err, &conflict) || conflict.Name != name {
					t.Fatalf("Reattach() error = %v, want *ConflictError for %s", err, name)
				}
				if !strings.Contains(err.Error(), `delete it with "kubectl delete csr node-csr-test"`) {
					t.Errorf("error %q does not say how to delete the CSR", err)
				}
			default:
				if !errors.Is(err, want) || !errors.As(err, &outcome) || outcome.Kind != want || outcome.Name != name {
					t.Fatalf("Reattach() error = %v, want *OutcomeError of kind %v", err, want)
				}
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not contain %q", err, tt.wantText)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
		})
	}
}
