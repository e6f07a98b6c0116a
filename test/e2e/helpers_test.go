package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	"github.com/tlsboot/tlsboot/internal/testcluster"
)

func admin(t *testing.T, c *testcluster.Cluster) kubernetes.Interface {
	t.Helper()
	client, err := c.AdminClient()
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func whoami(t *testing.T, kubeconfig string) authenticationv1.UserInfo {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := client.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("whoami with %s: %v", kubeconfig, err)
	}
	return r.Status.UserInfo
}

// nodeCSRs lists the CSRs that ask for system:node:<node>.
func nodeCSRs(t *testing.T, client kubernetes.Interface, node string) []certificatesv1.CertificateSigningRequest {
	t.Helper()
	list, err := client.CertificatesV1().CertificateSigningRequests().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []certificatesv1.CertificateSigningRequest
	for _, c := range list.Items {
		block, _ := pem.Decode(c.Spec.Request)
		if block == nil {
			continue
		}
		req, err := x509.ParseCertificateRequest(block.Bytes)
		if err == nil && req.Subject.CommonName == "system:node:"+node {
			out = append(out, c)
		}
	}
	return out
}

// waitCSR waits until exactly one CSR for node exists and returns it.
func waitCSR(t *testing.T, client kubernetes.Interface, node string) certificatesv1.CertificateSigningRequest {
	t.Helper()
	var got []certificatesv1.CertificateSigningRequest
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		got = nodeCSRs(t, client, node)
		return len(got) > 0, nil
	})
	if err != nil {
		t.Fatalf("no CSR for node %s appeared: %v", node, err)
	}
	if len(got) != 1 {
		t.Fatalf("%d CSRs for node %s, want 1", len(got), node)
	}
	return got[0]
}

func decide(t *testing.T, client kubernetes.Interface, name string, condition certificatesv1.RequestConditionType) {
	t.Helper()
	csrs := client.CertificatesV1().CertificateSigningRequests()
	// Another writer (an approver, a signer) may update the CSR between the
	// read and the write: on a conflict, read again.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		csr, err := csrs.Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range csr.Status.Conditions {
			if c.Type == condition && c.Status == corev1.ConditionTrue {
				return nil // another approver was quicker; the decision stands
			}
		}
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type:    condition,
			Status:  corev1.ConditionTrue,
			Reason:  "E2ETest",
			Message: "decided by the e2e test",
		})
		_, err = csrs.UpdateApproval(t.Context(), name, csr, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("%s CSR %s: %v", condition, name, err)
	}
}

// waitOutput waits until the process has written want to stderr.
func waitOutput(t *testing.T, p *proc, want string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		select {
		case <-p.done:
			return false, errExited
		default:
		}
		return strings.Contains(p.stderr.String(), want), nil
	})
	if err != nil {
		t.Fatalf("waiting for %q in the output: %v\nstderr:\n%s", want, err, p.stderr)
	}
}

var errExited = &exitedError{}

type exitedError struct{}

func (*exitedError) Error() string { return "process exited" }

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

var metaDelete = metav1.DeleteOptions{}
