package e2e

import (
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tlsboot/tlsboot/approval"
	"github.com/tlsboot/tlsboot/internal/testcluster"
)

// The control-plane endpoint of issue 24's review: the load-balancer name
// and VIP that clients dial, carried by the API server's serving
// certificate (signed by the cluster CA, as kubeadm does) and nowhere else
// in the cluster. The review's VIP was 10.0.0.100; in the test cluster
// that is inside the service range (10.0.0.0/24), which was already
// reserved, so the VIP here is outside it and inside the serving scope
// (10.0.0.0/16, the scope deploy/approver suggests).
const (
	endpointName   = "api.example.internal"
	endpointIP     = "10.0.7.100"
	joinName       = "join.example.internal" // the server of kube-public/cluster-info
	externalIP     = "10.0.8.8"              // a Service's spec.externalIPs
	ingressIP      = "10.0.8.9"              // its status.loadBalancer.ingress
	ingressName    = "lb.example.internal"
	reservedCIDR   = "10.0.9.0/24" // --reserved-cidrs
	reservedCIDRIP = "10.0.9.9"
	reservedName   = "vip.example.internal" // --reserved-dns, given as VIP.Example.Internal.
	servingScope   = "10.0.0.0/16"
)

// TestReservedControlPlaneEndpoint reproduces issue 24's first finding: a
// node lists the API server's load-balancer name and VIP in its own Node
// status and asks for a serving certificate under a scope that contains
// them. The approver, run with deploy/approver's RBAC, reads them from the
// API server's serving certificate and denies the request (SANReserved,
// naming the source), as it denies cluster-info's server, a Service's
// external IP and load-balancer ingress, and what the operator reserved;
// the same node's own unique address is still approved.
func TestReservedControlPlaneEndpoint(t *testing.T) {
	opts := approverClusterOptions
	opts.ExtraServingSANs = []string{endpointName, endpointIP}
	c := testcluster.StartT(t, opts)
	adminClient := admin(t, c)
	applyManifests(t, c)
	kubeconfig, _ := serviceAccountKubeconfig(t, c)
	setClusterInfoServer(t, adminClient, "https://"+joinName+":6443")
	createLoadBalancer(t, adminClient, "lb", externalIP, ingressIP, ingressName)
	p := startApprover(t, kubeconfig, "--leader-elect-namespace", approverNamespace,
		"--allowed-ip-cidrs", servingScope, "--allowed-dns-regex", `[a-z0-9.-]+`,
		"--reserved-cidrs", reservedCIDR, "--reserved-dns", "VIP.Example.Internal.")
	waitOutput(t, p, `"Read the API server's serving certificate`)
	waitOutput(t, p, `"Became the leader`)

	evil := bootstrapNode(t, c, uniqueNodeName("evil"))
	evilClient := clientFor(t, evil.kubeconfig)
	const evilIP = "10.0.5.5"
	claimAddresses(t, evilClient, evil.name, []corev1.NodeAddress{
		{Type: corev1.NodeHostName, Address: evil.name},
		{Type: corev1.NodeInternalIP, Address: evilIP},
		{Type: corev1.NodeExternalIP, Address: endpointIP},
		{Type: corev1.NodeExternalIP, Address: externalIP},
		{Type: corev1.NodeExternalIP, Address: ingressIP},
		{Type: corev1.NodeExternalIP, Address: reservedCIDRIP},
		{Type: corev1.NodeExternalDNS, Address: endpointName},
		{Type: corev1.NodeExternalDNS, Address: joinName},
		{Type: corev1.NodeExternalDNS, Address: ingressName},
		{Type: corev1.NodeExternalDNS, Address: reservedName},
	})
	for _, tc := range []struct {
		name, source string
		dns, ips     []string
	}{
		{"the load-balancer name in the API server's certificate", approval.ReservedByServingCertificate, []string{endpointName}, nil},
		{"the VIP in the API server's certificate", approval.ReservedByServingCertificate, nil, []string{endpointIP}},
		{"the load-balancer name, upper case, trailing dot", approval.ReservedByServingCertificate, []string{"API.Example.Internal."}, nil},
		{"the server of cluster-info", "kube-public/cluster-info", []string{joinName}, nil},
		{"a Service's external IP", "Service default/lb externalIPs", nil, []string{externalIP}},
		{"a Service's load-balancer ingress IP", "Service default/lb load-balancer ingress", nil, []string{ingressIP}},
		{"a Service's load-balancer ingress host name", "Service default/lb load-balancer ingress", []string{ingressName}, nil},
		{"an IP of --reserved-cidrs", "reserved names and ranges", nil, []string{reservedCIDRIP}},
		{"a name of --reserved-dns", "reserved names and ranges", []string{reservedName}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := createCSR(t, evilClient, servingCSR(evil.name, append([]string{evil.name}, tc.dns...), append([]string{evilIP}, tc.ips...)...))
			cond := waitDecision(t, adminClient, name)
			if cond.Type != certificatesv1.CertificateDenied || cond.Reason != approval.ReasonSANReserved {
				t.Fatalf("serving CSR for %s: %s %s %q, want Denied %s", tc.name, cond.Type, cond.Reason, cond.Message, approval.ReasonSANReserved)
			}
			if !strings.Contains(cond.Message, tc.source) {
				t.Errorf("message %q does not name the source %q", cond.Message, tc.source)
			}
			assertNoCertificate(t, adminClient, name)
		})
	}
	t.Run("its own unique addresses", func(t *testing.T) {
		name := createCSR(t, evilClient, servingCSR(evil.name, []string{evil.name}, evilIP))
		if cond := waitDecision(t, adminClient, name); cond.Type != certificatesv1.CertificateApproved {
			t.Fatalf("serving CSR for the node's own addresses: %+v, want approved", cond)
		}
		awaitCertificate(t, adminClient, name)
	})
}

// setClusterInfoServer writes kube-public/cluster-info naming server, as
// kubeadm does with the control-plane endpoint.
func setClusterInfoServer(t *testing.T, client kubernetes.Interface, server string) {
	t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cluster-info", Namespace: metav1.NamespacePublic},
		Data: map[string]string{"kubeconfig": "apiVersion: v1\nkind: Config\nclusters:\n- name: \"\"\n  cluster:\n    server: " + server + "\n"}}
	cms := client.CoreV1().ConfigMaps(metav1.NamespacePublic)
	if _, err := cms.Create(t.Context(), cm, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		_, err = cms.Update(t.Context(), cm, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
}

// createLoadBalancer creates a LoadBalancer Service in default with an
// external IP, and gives it a load-balancer ingress IP and host name, as a
// cloud controller would.
func createLoadBalancer(t *testing.T, client kubernetes.Interface, name, externalIP, ingressIP, ingressName string) {
	t.Helper()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceDefault},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ExternalIPs: []string{externalIP},
			Ports: []corev1.ServicePort{{Port: 443, Protocol: corev1.ProtocolTCP}}}}
	made, err := client.CoreV1().Services(metav1.NamespaceDefault).Create(t.Context(), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	made.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ingressIP}, {Hostname: ingressName}}
	if _, err := client.CoreV1().Services(metav1.NamespaceDefault).UpdateStatus(t.Context(), made, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
