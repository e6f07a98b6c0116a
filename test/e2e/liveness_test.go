package e2e

import (
	"context"
	"crypto/x509/pkix"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tlsboot/tlsboot/approval"
	"github.com/tlsboot/tlsboot/internal/testcluster"
	"github.com/tlsboot/tlsboot/internal/testpki"
)

// TestLiveness: issue 24, findings 4 and 6, against the real control plane
// and the approver with its default flags (a grace of 5 minutes).
//
//   - A node whose kubelet clock is 6 minutes slow renews its Lease every
//     few seconds with a renewTime 6 minutes in the past: the approver saw
//     it change, so the node is alive and a bootstrap token may not take it
//     over (before: its renewTime looked stale, and the token got the
//     node's identity).
//   - An identity named system:node:<live node> without the system:nodes
//     group (a client certificate with that CN and no O, from the cluster's
//     client CA, allowed to create CSRs and nodeclient) is not the node:
//     its request for that node's client certificate meets the live-node
//     check (before: "self-renewal", approved under kubelet-client-self).
func TestLiveness(t *testing.T) {
	c := testcluster.StartT(t, approverClusterOptions)
	adminClient := admin(t, c)
	startApprover(t, c.AdminKubeconfig, "--leader-elect=false")
	bootstrapClient := clientFor(t, c.BootstrapKubeconfig)

	for _, tc := range []struct {
		name   string
		prefix string
		skew   time.Duration // of the kubelet's clock
		client func(t *testing.T, node string) kubernetes.Interface
	}{
		{"a live node whose clock is 6 minutes slow, taken over by a bootstrap token", "slow-clock", -6 * time.Minute,
			func(*testing.T, string) kubernetes.Interface { return bootstrapClient }},
		{"a live node's name without system:nodes, asking for that node", "named-only", 0,
			func(t *testing.T, node string) kubernetes.Interface {
				return namedOnlyClient(t, c, "system:node:"+node)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name := uniqueNodeName(tc.prefix)
			createNode(t, adminClient, name, "10.1.0.31")
			keepRenewing(t, adminClient, name, tc.skew)
			csrName := createCSR(t, tc.client(t, name), clientCSR(name))
			cond := waitDecision(t, adminClient, csrName)
			if cond.Type != certificatesv1.CertificateDenied || cond.Reason != approval.ReasonNodeAlive {
				t.Fatalf("client CSR %s for the live node %s: %s %s (%s), want Denied %s", csrName, name, cond.Type, cond.Reason, cond.Message, approval.ReasonNodeAlive)
			}
			assertNoCertificate(t, adminClient, csrName)
		})
	}
}

// keepRenewing renews node's Lease now and then every 2 seconds, as a
// kubelet does (every 10), with a renewTime skew off the real time, until
// the returned stop is called or the test ends.
func keepRenewing(t *testing.T, client kubernetes.Interface, node string, skew time.Duration) (stop func()) {
	t.Helper()
	renewLease(t, client, node, time.Now().Add(skew))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if err := renewOnce(ctx, client, node, time.Now().Add(skew)); err != nil && ctx.Err() == nil {
				t.Errorf("renewing the Lease of %s: %v", node, err)
				return
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// renewOnce sets node's Lease's renewTime to at.
func renewOnce(ctx context.Context, client kubernetes.Interface, node string, at time.Time) error {
	leases := client.CoordinationV1().Leases("kube-node-lease")
	lease, err := leases.Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return err
	}
	renew := metav1.NewMicroTime(at)
	lease.Spec.RenewTime = &renew
	_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	return err
}

// namedOnlyClient authenticates as user with a client certificate of the
// cluster's client CA whose subject has that CN and no O, so no group but
// system:authenticated; it may create CSRs and holds nodeclient, as a
// bootstrap token does.
func namedOnlyClient(t *testing.T, c *testcluster.Cluster, user string) kubernetes.Interface {
	t.Helper()
	for _, role := range []string{"system:node-bootstrapper", "system:certificates.k8s.io:certificatesigningrequests:nodeclient"} {
		crb := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-named-only-"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
		}
		if _, err := admin(t, c).RbacV1().ClusterRoleBindings().Create(t.Context(), crb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	issued := testpki.LoadCA(t, c.ClientCAFile(), c.ClientCAKeyFile()).Issue(t, testpki.Spec{Subject: pkix.Name{CommonName: user}})
	cfg := &rest.Config{Host: c.URL(), TLSClientConfig: rest.TLSClientConfig{CAFile: c.CAFile(), CertData: issued.CertPEM, KeyData: issued.KeyPEM}}
	client := kubernetes.NewForConfigOrDie(cfg)
	r, err := client.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("whoami with the certificate for %s: %v", user, err)
	}
	u := r.Status.UserInfo
	if u.Username != user || len(u.Groups) != 1 || u.Groups[0] != "system:authenticated" {
		t.Fatalf("the certificate authenticates as %q in %q, want %q in [system:authenticated] only", u.Username, u.Groups, user)
	}
	return client
}
