package e2e

import (
	"context"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tlsboot/tlsboot/approval"
	"github.com/tlsboot/tlsboot/internal/testcluster"
)

// TestApprover runs `tlsboot approver` out of cluster with the token of the
// ServiceAccount from deploy/approver/ (so the ClusterRole is proven
// sufficient) against a control plane whose kube-controller-manager signs
// but does not approve, and walks through every decision of issue 5.
func TestApprover(t *testing.T) {
	c := testcluster.StartT(t, approverClusterOptions)
	adminClient := admin(t, c)
	applyManifests(t, c)
	kubeconfig, token := serviceAccountKubeconfig(t, c)
	other := createCSR(t, adminClient, csrSpec{signer: certificatesv1.KubeAPIServerClientSignerName, cn: "someone",
		usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}})
	p := startApprover(t, kubeconfig, append([]string{"--leader-elect-namespace", approverNamespace}, approverScope...)...)
	waitOutput(t, p, `"Became the leader`)

	// A node bootstrapped by `tlsboot bootstrap` is approved (nodeclient).
	nodeA := bootstrapNode(t, c, "approver-a")
	csrA := waitCSR(t, adminClient, nodeA.name)
	if cond := csrA.Status.Conditions[0]; cond.Type != certificatesv1.CertificateApproved || cond.Reason != approval.ReasonAutoApproved || !strings.Contains(cond.Message, "nodeclient") {
		t.Errorf("bootstrap CSR condition %+v, want approved by the nodeclient rule", cond)
	}
	clientA := clientFor(t, nodeA.kubeconfig)
	bootstrapClient := clientFor(t, c.BootstrapKubeconfig)

	t.Run("renewal", func(t *testing.T) {
		cond := waitDecision(t, adminClient, createCSR(t, clientA, clientCSR(nodeA.name)))
		if cond.Type != certificatesv1.CertificateApproved || !strings.Contains(cond.Message, "selfnodeclient") {
			t.Errorf("renewal %+v, want approved by the selfnodeclient rule", cond)
		}
	})
	t.Run("token without the nodeclient binding", func(t *testing.T) {
		client := tokenWithoutNodeClient(t, c)
		name := createCSR(t, client, clientCSR("approver-c"))
		waitOutput(t, p, `"No decision yet" csr="`+name+`"`)
		if conds := conditions(t, adminClient, name); len(conds) != 0 {
			t.Errorf("CSR from a token without the nodeclient binding has conditions %+v, want none", conds)
		}
	})
	// NodeRestriction stops a node (in system:nodes) from creating a CSR
	// for another node; an identity that only carries a node's user name
	// gets through it, and the approver must deny it.
	namedLikeA := nodeNamedUser(t, c, nodeA.name)
	t.Run("node A for node B", func(t *testing.T) { testNodeForOtherNode(t, clientA, nodeA.name) })
	t.Run("client CSRs denied", func(t *testing.T) { testClientDenials(t, adminClient, bootstrapClient, namedLikeA) })
	t.Run("serving", func(t *testing.T) { testServing(t, c, p, clientA, namedLikeA, nodeA.name) })

	t.Run("other signer left alone", func(t *testing.T) {
		if conds := conditions(t, adminClient, other); len(conds) != 0 {
			t.Errorf("CSR of another signer has conditions %+v", conds)
		}
		if strings.Contains(p.stderr.String(), other) {
			t.Errorf("the approver logged about %s, a CSR of another signer", other)
		}
	})
	t.Run("metrics, health and events", func(t *testing.T) { testObservability(t, p, adminClient, csrA.Name) })
	// RBAC refusals read "... is forbidden: User ...": none may occur (a
	// reason such as SANForbiddenByPolicy is not one).
	for _, bad := range []string{"is forbidden", "forbidden:", token} {
		if strings.Contains(p.stderr.String(), bad) {
			t.Errorf("the approver's log contains %q:\n%s", bad[:min(len(bad), 20)], p.stderr)
		}
	}
	// Last: it replaces the approver with one that has no serving scope.
	t.Run("no serving scope", func(t *testing.T) { testNoServingScope(t, c, p, kubeconfig, clientA, nodeA.name) })
}

// approverScope is the serving scope of TestApprover: its nodes' names and
// addresses (the service range of the test clusters is 10.0.0.0/24).
var approverScope = []string{"--allowed-ip-cidrs", "10.1.0.0/16", "--allowed-dns-regex", "approver-[a-z0-9-]+"}

// testNoServingScope: without --allowed-ip-cidrs or --allowed-dns-regex a
// serving CSR that would otherwise be approved stays pending, with exactly
// one Event that names the flags, however often it is looked at again.
func testNoServingScope(t *testing.T, c *testcluster.Cluster, old *proc, kubeconfig string, clientA kubernetes.Interface, nodeA string) {
	adminClient := admin(t, c)
	old.signal(t, syscall.SIGTERM)
	if r := old.wait(t); r.code != 0 {
		t.Fatalf("approver did not exit cleanly on SIGTERM: %s", r)
	}
	p := startApprover(t, kubeconfig, "--leader-elect-namespace", approverNamespace, "-v", "3")
	waitOutput(t, p, `"Became the leader`)
	waitOutput(t, p, `"No serving scope: serving CSRs are left pending`)
	name := createCSR(t, clientA, servingCSR(nodeA, []string{nodeA}, "10.1.0.1"))
	waitOutput(t, p, `"Leaving certificate signing request pending" csr="`+name+`"`)
	ev := awaitOnlyEvent(t, p, adminClient, nodeA, name)
	if conds := conditions(t, adminClient, name); len(conds) != 0 {
		t.Errorf("serving CSR decided without a scope: %+v", conds)
	}
	if ev.Reason != approval.ReasonNoServingScope || !strings.Contains(ev.Message, "--allowed-ip-cidrs") || !strings.Contains(ev.Message, "--allowed-dns-regex") {
		t.Errorf("Event %s %q, want %s naming --allowed-ip-cidrs and --allowed-dns-regex", ev.Reason, ev.Message, approval.ReasonNoServingScope)
	}
	if strings.Contains(p.stderr.String(), "is forbidden") {
		t.Errorf("the approver's log mentions forbidden:\n%s", p.stderr)
	}
}

// tokenWithoutNodeClient returns a client authenticated by a bootstrap token
// whose group may create CSRs but holds no nodeclient binding.
func tokenWithoutNodeClient(t *testing.T, c *testcluster.Cluster) kubernetes.Interface {
	t.Helper()
	const group = "system:bootstrappers:e2e-no-autoapprove"
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e:no-autoapprove-bootstrap"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node-bootstrapper"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: group}},
	}
	if _, err := admin(t, c).RbacV1().ClusterRoleBindings().Create(t.Context(), crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tok, err := c.CreateToken(t.Context(), testcluster.TokenOptions{Groups: []string{group}})
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/bootstrap.kubeconfig"
	if err := c.WriteBootstrapKubeconfig(path, tok); err != nil {
		t.Fatal(err)
	}
	return clientFor(t, path)
}

// nodeNamedUser returns a client for user system:node:<node> outside the
// system:nodes group, allowed to create CSRs (impersonated by the admin).
func nodeNamedUser(t *testing.T, c *testcluster.Cluster, node string) kubernetes.Interface {
	t.Helper()
	user := "system:node:" + node
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e:node-named-user"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node-bootstrapper"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	if _, err := admin(t, c).RbacV1().ClusterRoleBindings().Create(t.Context(), crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := c.AdminConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
	return kubernetes.NewForConfigOrDie(cfg)
}

// testNodeForOtherNode: node A, with its own credentials, asks for node B's
// certificate. NodeRestriction (kube-apiserver v1.37) refuses the create
// for both signers, since the CN is not node A's: the approver never sees
// it. Were it to, C7 and S2 deny it (NodeMismatch; the user-name-only
// cases of testClientDenials and testServing show the approver's verdict).
func testNodeForOtherNode(t *testing.T, clientA kubernetes.Interface, nodeA string) {
	for _, tc := range []struct {
		name string
		spec csrSpec
	}{
		{"client", clientCSR("approver-b")},
		{"serving", servingCSR("approver-b", nil, "10.1.0.1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := clientA.CertificatesV1().CertificateSigningRequests().Create(t.Context(), rawCSR(t, tc.spec), metav1.CreateOptions{})
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "can only create a node CSR with CN=system:node:"+nodeA) {
				t.Errorf("node A creating a %s CSR for node B: %v, want forbidden by NodeRestriction", tc.spec.signer, err)
			}
		})
	}
}

func testClientDenials(t *testing.T, adminClient, bootstrapClient, namedLikeA kubernetes.Interface) {
	withSAN := clientCSR("approver-d")
	withSAN.dns = []string{"approver-d"}
	wrongO := clientCSR("approver-d")
	wrongO.org = []string{"system:masters"}
	extraUsage := clientCSR("approver-d")
	extraUsage.usages = append(extraUsage.usages, certificatesv1.UsageServerAuth)
	for _, tc := range []struct {
		name   string
		client kubernetes.Interface
		spec   csrSpec
		reason string
	}{
		{"SAN", bootstrapClient, withSAN, approval.ReasonSANNotAllowed},
		{"wrong O", bootstrapClient, wrongO, approval.ReasonBadOrganization},
		{"extra usage", bootstrapClient, extraUsage, approval.ReasonBadUsages},
		{"another node's CN in a renewal", namedLikeA, clientCSR("approver-b"), approval.ReasonNodeMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cond := waitDecision(t, adminClient, createCSR(t, tc.client, tc.spec))
			if cond.Type != certificatesv1.CertificateDenied || cond.Reason != tc.reason || cond.Message == "" {
				t.Errorf("condition %+v, want Denied %s with a message", cond, tc.reason)
			}
		})
	}
}

func testServing(t *testing.T, c *testcluster.Cluster, p *proc, clientA, namedLikeA kubernetes.Interface, nodeA string) {
	adminClient := admin(t, c)
	createNode(t, adminClient, nodeA, "10.1.0.1")
	// The scope pattern approver-[a-z0-9-]+ matches a substring of
	// approver-a.evil.example; the Node lists the name, so only the
	// anchoring of the pattern refuses it.
	t.Run("DNS pattern matched only as a whole name", func(t *testing.T) {
		const substring = "approver-a.evil.example"
		node, err := adminClient.CoreV1().Nodes().Get(t.Context(), nodeA, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: substring})
		if _, err := adminClient.CoreV1().Nodes().UpdateStatus(t.Context(), node, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		cond := waitDecision(t, adminClient, createCSR(t, clientA, servingCSR(nodeA, []string{nodeA, substring}, "10.1.0.1")))
		if cond.Type != certificatesv1.CertificateDenied || cond.Reason != approval.ReasonSANForbiddenByPolicy {
			t.Errorf("condition %+v, want Denied %s", cond, approval.ReasonSANForbiddenByPolicy)
		}
	})
	for _, tc := range []struct {
		name   string
		client kubernetes.Interface
		spec   csrSpec
		want   certificatesv1.RequestConditionType
		reason string
	}{
		{"SANs are the node's addresses", clientA, servingCSR(nodeA, []string{nodeA}, "10.1.0.1"), certificatesv1.CertificateApproved, approval.ReasonAutoApproved},
		{"foreign DNS name in scope", clientA, servingCSR(nodeA, []string{nodeA, "approver-zz"}, "10.1.0.1"), certificatesv1.CertificateDenied, approval.ReasonSANNotNodeAddress},
		{"foreign IP in scope", clientA, servingCSR(nodeA, []string{nodeA}, "10.1.0.1", "10.1.9.9"), certificatesv1.CertificateDenied, approval.ReasonSANNotNodeAddress},
		{"DNS name outside the scope", clientA, servingCSR(nodeA, []string{nodeA, "node.example.com"}, "10.1.0.1"), certificatesv1.CertificateDenied, approval.ReasonSANForbiddenByPolicy},
		{"IP outside the scope", clientA, servingCSR(nodeA, []string{nodeA}, "10.1.0.1", "10.9.9.9"), certificatesv1.CertificateDenied, approval.ReasonSANForbiddenByPolicy},
		{"the API server's Service name", clientA, servingCSR(nodeA, []string{nodeA, "kubernetes.default.svc"}, "10.1.0.1"), certificatesv1.CertificateDenied, approval.ReasonSANReserved},
		{"the API server's ClusterIP", clientA, servingCSR(nodeA, []string{nodeA}, "10.1.0.1", apiServerClusterIP(t, adminClient)), certificatesv1.CertificateDenied, approval.ReasonSANReserved},
		{"node A's name, outside system:nodes, for itself", namedLikeA, servingCSR(nodeA, nil, "10.1.0.1"), certificatesv1.CertificateDenied, approval.ReasonRequesterNotNode},
		{"node A's name, outside system:nodes, for node B", namedLikeA, servingCSR("approver-b", nil, "10.1.0.1"), certificatesv1.CertificateDenied, approval.ReasonRequesterNotNode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cond := waitDecision(t, adminClient, createCSR(t, tc.client, tc.spec))
			if cond.Type != tc.want || cond.Reason != tc.reason {
				t.Errorf("condition %+v, want %s %s", cond, tc.want, tc.reason)
			}
		})
	}
	t.Run("before the node exists", func(t *testing.T) {
		nodeE := bootstrapNode(t, c, "approver-e")
		name := createCSR(t, clientFor(t, nodeE.kubeconfig), servingCSR(nodeE.name, nil, "10.1.0.5"))
		waitOutput(t, p, `"No decision yet" csr="`+name+`"`)
		if conds := conditions(t, adminClient, name); len(conds) != 0 {
			t.Fatalf("CSR decided before its Node exists: %+v", conds)
		}
		createNode(t, adminClient, nodeE.name, "10.1.0.5")
		if cond := waitDecision(t, adminClient, name); cond.Type != certificatesv1.CertificateApproved {
			t.Errorf("after the Node appeared: %+v, want approved", cond)
		}
	})
}

// apiServerClusterIP returns the ClusterIP of default/kubernetes.
func apiServerClusterIP(t *testing.T, client kubernetes.Interface) string {
	t.Helper()
	svc, err := client.CoreV1().Services(metav1.NamespaceDefault).Get(t.Context(), "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc.Spec.ClusterIP
}

// createNode creates a Node with a hostname and an internal IP.
func createNode(t *testing.T, client kubernetes.Interface, name, ip string) {
	t.Helper()
	node, err := client.CoreV1().Nodes().Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}}
	if _, err := client.CoreV1().Nodes().UpdateStatus(t.Context(), node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func testObservability(t *testing.T, p *proc, adminClient kubernetes.Interface, approvedCSR string) {
	base := approverURL(t, p)
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := httpGet(t, base+path); code != http.StatusOK {
			t.Errorf("%s: %d %s", path, code, body)
		}
	}
	_, body := httpGet(t, base+"/metrics")
	for _, want := range []string{
		`tlsboot_approver_decisions_total{reason="AutoApproved",result="approve",signer="kubernetes.io/kube-apiserver-client-kubelet"}`,
		`tlsboot_approver_decisions_total{reason="SANNotNodeAddress",result="deny",signer="kubernetes.io/kubelet-serving"}`,
		`tlsboot_approver_decision_seconds_bucket{result="approve",signer="kubernetes.io/kubelet-serving"`,
		`tlsboot_approver_pending_csrs{signer="kubernetes.io/kube-apiserver-client-kubelet"} 1`, // the token without binding
		`tlsboot_approver_subject_access_reviews_total{source="api"}`,
		`tlsboot_approver_leader 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// A denial gets a Warning Event; an approval none (docs/approver.md,
	// "Events"). The wrong-O CSR was denied in "client CSRs denied".
	var events []corev1.Event
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := adminClient.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		events = list.Items
		for _, e := range events {
			if e.Source.Component == "tlsboot-approver" && e.Type == corev1.EventTypeWarning && e.Reason == approval.ReasonBadOrganization {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Errorf("no Warning %s Event for the denied CSR: %v", approval.ReasonBadOrganization, err)
	}
	for _, e := range events {
		if e.Source.Component == "tlsboot-approver" && (e.Reason == approval.ReasonAutoApproved || e.InvolvedObject.Name == approvedCSR) {
			t.Errorf("Event %s %q about approved CSR %s, want none for an approval", e.Reason, e.Message, e.InvolvedObject.Name)
		}
	}
}

// TestApproverLeaderElection runs two replicas: only the Lease holder
// decides; when it stops, the other takes over.
func TestApproverLeaderElection(t *testing.T) {
	c := testcluster.StartT(t, approverClusterOptions)
	adminClient := admin(t, c)
	le := []string{"--leader-elect-namespace", "kube-system", "--leader-elect-lease-duration", "4s",
		"--leader-elect-renew-deadline", "3s", "--leader-elect-retry-period", "500ms"}
	replicas := []*proc{startApprover(t, c.AdminKubeconfig, le...), startApprover(t, c.AdminKubeconfig, le...)}
	leader := waitLeader(t, replicas)
	standby := replicas[1-leader]
	waitOutput(t, standby, `"Another replica leads"`)

	bootstrapClient := clientFor(t, c.BootstrapKubeconfig)
	first := createDecided(t, adminClient, bootstrapClient, 5)
	if n := len(decisionLines(replicas[leader])); n != 5 {
		t.Errorf("the leader logged %d decisions, want 5", n)
	}
	if lines := decisionLines(standby); len(lines) != 0 {
		t.Fatalf("the standby acted while the other replica led:\n%s", strings.Join(lines, "\n"))
	}

	replicas[leader].signal(t, syscall.SIGTERM)
	if r := replicas[leader].wait(t); r.code != 0 {
		t.Errorf("leader did not exit cleanly on SIGTERM: %s", r)
	}
	waitOutput(t, standby, `"Became the leader`)
	second := createDecided(t, adminClient, bootstrapClient, 5)
	if n := len(decisionLines(standby)); n != 5 {
		t.Errorf("the new leader logged %d decisions, want 5", n)
	}
	for _, name := range append(first, second...) {
		if conds := conditions(t, adminClient, name); len(conds) != 1 || conds[0].Type != certificatesv1.CertificateApproved {
			t.Errorf("CSR %s has conditions %+v, want exactly one approval", name, conds)
		}
	}
}

// waitLeader returns the index of the replica that became the leader.
func waitLeader(t *testing.T, replicas []*proc) int {
	t.Helper()
	leader := -1
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		for i, p := range replicas {
			if strings.Contains(p.stderr.String(), `"Became the leader`) {
				leader = i
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no replica became the leader: %v", err)
	}
	return leader
}

// createDecided creates n bootstrap client CSRs and waits until each is decided.
func createDecided(t *testing.T, adminClient, client kubernetes.Interface, n int) []string {
	t.Helper()
	var names []string
	for i := range n {
		names = append(names, createCSR(t, client, clientCSR("le-"+string(rune('a'+i)))))
	}
	for _, name := range names {
		waitDecision(t, adminClient, name)
	}
	return names
}

// TestApproverDryRun: decisions are logged, nothing is written.
func TestApproverDryRun(t *testing.T) {
	c := testcluster.StartT(t, approverClusterOptions)
	adminClient := admin(t, c)
	p := startApprover(t, c.AdminKubeconfig, "--dry-run", "--leader-elect=false")
	bootstrapClient := clientFor(t, c.BootstrapKubeconfig)
	wrongO := clientCSR("dry-b")
	wrongO.org = []string{"system:masters"}
	good, bad := createCSR(t, bootstrapClient, clientCSR("dry-a")), createCSR(t, bootstrapClient, wrongO)
	waitOutput(t, p, `"Dry run: would decide certificate signing request" csr="`+good+`"`)
	waitOutput(t, p, `"Dry run: would decide certificate signing request" csr="`+bad+`"`)
	for name, verdict := range map[string]string{good: "approve", bad: "deny"} {
		if !strings.Contains(p.stderr.String(), `csr="`+name+`" signer="kubernetes.io/kube-apiserver-client-kubelet" requester="system:bootstrap:`) ||
			!regexpMatch(p.stderr.String(), `csr="`+name+`".*verdict="`+verdict+`"`) {
			t.Errorf("dry run did not log verdict %s for %s", verdict, name)
		}
		if conds := conditions(t, adminClient, name); len(conds) != 0 {
			t.Errorf("dry run wrote conditions on %s: %+v", name, conds)
		}
	}
	events, err := adminClient.CoreV1().Events(metav1.NamespaceDefault).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events.Items {
		if e.Source.Component == "tlsboot-approver" {
			t.Errorf("dry run recorded an Event: %s %s", e.Reason, e.Message)
		}
	}
}

// TestApproverLiveNodeLeave: with --live-node-action=leave, a bootstrap
// token's client CSR for a Node whose kubelet Lease is fresh is left
// pending for a human, with exactly one Event saying how to re-provision.
func TestApproverLiveNodeLeave(t *testing.T) {
	c := testcluster.StartT(t, approverClusterOptions)
	adminClient := admin(t, c)
	name := newNode(t, c).name
	createNode(t, adminClient, name, "10.1.0.1")
	now := metav1.NewMicroTime(time.Now())
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: corev1.NamespaceNodeLease},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &name, RenewTime: &now}}
	if _, err := adminClient.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(t.Context(), lease, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := startApprover(t, c.AdminKubeconfig, "--leader-elect=false", "--live-node-action=leave", "-v", "3")
	// A Lease listed at the approver's start proves nothing yet (issue 24,
	// finding 4): the kubelet renews it while the approver watches.
	keepRenewing(t, adminClient, name, 0)
	csrName := createCSR(t, clientFor(t, c.BootstrapKubeconfig), clientCSR(name))
	waitOutput(t, p, `"Leaving certificate signing request pending" csr="`+csrName+`"`)
	ev := awaitOnlyEvent(t, p, adminClient, name, csrName)
	if conds := conditions(t, adminClient, csrName); len(conds) != 0 {
		t.Errorf("CSR for a live node decided: %+v, want it left pending", conds)
	}
	if ev.Reason != approval.ReasonNodeAlive || !strings.Contains(ev.Message, "delete its Node object") {
		t.Errorf("Event %s %q, want %s saying to delete the Node object", ev.Reason, ev.Message, approval.ReasonNodeAlive)
	}
}
