package approval

import (
	"context"
	"slices"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FuzzDecide feeds arbitrary CSR content (the request, signer, usages and
// requester are all chosen by whoever creates the CSR) to the policy with
// an authorizer that grants everything. It must never panic, and whatever
// it approves must be a well-formed node request from an acceptable
// requester: the checks, not RBAC, are what this exercises.
func FuzzDecide(f *testing.F) {
	key := testKey(f, "ecdsa")
	good := clientSpec(key).build(f)
	f.Add(good.Spec.Request, good.Spec.SignerName, "digital signature,client auth", good.Spec.Username)
	f.Add(good.Spec.Request, certificatesv1.KubeletServingSignerName, "digital signature,server auth", "system:node:n1")
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"), good.Spec.SignerName, "client auth", "x")
	f.Add([]byte{}, "", "", "")
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}, {Type: corev1.NodeHostName, Address: "n1"}}}}
	p, err := New(Options{})
	if err != nil {
		f.Fatal(err)
	}
	grantAll := AuthorizerFunc(func(context.Context, Requester, string) (bool, error) { return true, nil })
	f.Fuzz(func(t *testing.T, request []byte, signer, usages, user string) {
		csr := &certificatesv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{Name: "fuzz", CreationTimestamp: metav1.NewTime(t0)},
			Spec: certificatesv1.CertificateSigningRequestSpec{
				Request: request, SignerName: signer, Username: user,
				Groups: []string{"system:nodes", "system:authenticated"},
			},
		}
		for _, u := range strings.Split(usages, ",") {
			csr.Spec.Usages = append(csr.Spec.Usages, certificatesv1.KeyUsage(u))
		}
		d, err := p.Decide(context.Background(), Input{CSR: csr, Node: node, Now: t0}, grantAll)
		if err != nil || d.Verdict != Approve {
			return
		}
		req, perr := ParseRequest(request)
		if perr != nil {
			t.Fatalf("approved a request that does not parse: %v", perr)
		}
		if !strings.HasPrefix(req.Subject.CommonName, "system:node:") || !slices.Equal(req.Subject.Organization, []string{"system:nodes"}) {
			t.Fatalf("approved subject %v", req.Subject)
		}
		if len(req.EmailAddresses) > 0 || len(req.URIs) > 0 {
			t.Fatalf("approved email or URI SANs")
		}
		if signer == certificatesv1.KubeletServingSignerName && user != req.Subject.CommonName {
			t.Fatalf("approved a serving request for %s from %s", req.Subject.CommonName, user)
		}
	})
}
