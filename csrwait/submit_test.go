package csr

import (
	"context"
	"crypto"
	"errors"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// existingCSR builds the API object an earlier Submit of r with key would
// have left, with the given conditions.
func existingCSR(t *testing.T, name string, r Request, key crypto.Signer, conds ...certificatesv1.RequestConditionType) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	data, err := r.PEM(key)
	if err != nil {
		t.Fatal(err)
	}
	obj := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: "uid-1"},
		Spec:       certificatesv1.CertificateSigningRequestSpec{Request: data, SignerName: r.SignerName, Usages: r.Usages},
	}
	for _, c := range conds {
		obj.Status.Conditions = append(obj.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: c, Status: corev1.ConditionTrue, Reason: "Because", Message: "policy\nsays so",
		})
	}
	return obj
}

func TestSubmitCreates(t *testing.T) {
	key := mustParseKey(t, fixtureRSAKey)
	r := NodeClient("node-a", key.Public())
	r.Expiration = time.Hour
	name, _ := r.Name(key.Public())
	client := fake.NewClientset()
	got, _, err := Submit(context.Background(), client, name, r, key)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := client.CertificatesV1().CertificateSigningRequests().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range []*certificatesv1.CertificateSigningRequest{got, stored} {
		if obj.Name != name || obj.Spec.SignerName != r.SignerName || !sameSet(obj.Spec.Usages, r.Usages) {
			t.Errorf("created %s signer %s usages %v", obj.Name, obj.Spec.SignerName, obj.Spec.Usages)
		}
		if e := obj.Spec.ExpirationSeconds; e == nil || *e != 3600 {
			t.Errorf("expirationSeconds = %v, want 3600", e)
		}
		if diffs := compare(obj, r, key.Public()); len(diffs) > 0 {
			t.Errorf("created request differs: %v", diffs)
		}
	}
}

func TestSubmitExisting(t *testing.T) {
	key, other := mustParseKey(t, fixtureECKey), mustParseKey(t, fixtureRSAKey)
	r := NodeClient("node-a", key.Public())
	const name = "node-csr-test"
	serving := NodeServing("node-a", key.Public(), []string{"a"}, nil)
	tests := []struct {
		name     string
		existing *certificatesv1.CertificateSigningRequest
		wantErr  error  // errors.Is target; nil for success
		wantText string // part of the error text
	}{
		{name: "same key re-attaches", existing: existingCSR(t, name, r, key)},
		{name: "approved re-attaches", existing: existingCSR(t, name, r, key, certificatesv1.CertificateApproved)},
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
			client := fake.NewClientset(tt.existing)
			got, _, err := Submit(context.Background(), client, name, r, key)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if got.UID != tt.existing.UID {
					t.Errorf("re-attached to UID %q, want %q", got.UID, tt.existing.UID)
				}
				return
			}
			var conflict *ConflictError
			var outcome *OutcomeError
			switch want := tt.wantErr.(type) {
			case *ConflictError:
				if !errors.As(err, &conflict) || conflict.Name != name {
					t.Fatalf("Submit() error = %v, want *ConflictError for %s", err, name)
				}
				if !strings.Contains(err.Error(), `delete it with "kubectl delete csr node-csr-test"`) {
					t.Errorf("error %q does not say how to delete the CSR", err)
				}
			default:
				if !errors.Is(err, want) || !errors.As(err, &outcome) || outcome.Kind != want {
					t.Fatalf("Submit() error = %v, want *OutcomeError of kind %v", err, want)
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

func TestSubmitErrors(t *testing.T) {
	key := mustParseKey(t, fixtureECKey)
	r := NodeClient("node-a", key.Public())
	forbidden := apierrors.NewForbidden(certificatesv1.Resource("certificatesigningrequests"), "x", errors.New("no"))
	tests := []struct {
		name    string
		r       Request
		react   k8stesting.ReactionFunc
		wantErr string
	}{
		{"invalid request", Request{}, nil, "invalid certificate signing request: request has no signer name"},
		{"create forbidden", r, func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, forbidden }, `creating certificate signing request "n":`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := fake.NewClientset()
			if tt.react != nil {
				client.PrependReactor("create", "certificatesigningrequests", tt.react)
			}
			_, _, err := Submit(context.Background(), client, "n", tt.r, key)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Submit() error = %v, want it to contain %q", err, tt.wantErr)
			}
			if tt.react != nil && !apierrors.IsForbidden(err) {
				t.Errorf("error %v does not wrap the API error", err)
			}
		})
	}
}
