package approver

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tlsboot/tlsboot/approval"
)

// cluster-info keeps only its servers' hosts, idempotently; a ConfigMap
// without a kubeconfig, or one that does not parse, names none.
func TestTransformClusterInfo(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   *corev1.ConfigMap
		want string
	}{
		{"kubeadm's", clusterInfo("https://join.example.internal:6443"), "join.example.internal:6443"},
		{"no kubeconfig", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cluster-info"}, Data: map[string]string{"other": "x"}}, ""},
		{"not a kubeconfig", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cluster-info"}, Data: map[string]string{"kubeconfig": "{{{"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			once, _ := transformClusterInfo(tc.in)
			twice, _ := transformClusterInfo(once)
			for i, obj := range []any{once, twice} {
				cm := obj.(*corev1.ConfigMap)
				if got := cm.Data[clusterInfoServersKey]; got != tc.want {
					t.Errorf("pass %d: hosts %q, want %q", i+1, got, tc.want)
				}
				if len(cm.Data) > 1 || cm.Annotations != nil {
					t.Errorf("pass %d: kept %v and annotations %v, want only the hosts", i+1, cm.Data, cm.Annotations)
				}
			}
		})
	}
}

// A Service keeps only its external IPs and load-balancer ingress, bounded.
func TestTransformReservingService(t *testing.T) {
	in := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "lb", Namespace: "ns", Labels: map[string]string{"a": "b"}},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.9", Selector: map[string]string{"app": "x"}}}
	for range 2 * maxServiceReserved {
		in.Spec.ExternalIPs = append(in.Spec.ExternalIPs, "10.0.8.8")
		in.Status.LoadBalancer.Ingress = append(in.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: "10.0.8.9", Hostname: "lb.example", Ports: []corev1.PortStatus{{Port: 1}}})
	}
	obj, _ := transformReservingService(in)
	obj, _ = transformReservingService(obj)
	out := obj.(*corev1.Service)
	if len(out.Spec.ExternalIPs) != maxServiceReserved || len(out.Status.LoadBalancer.Ingress) != maxServiceReserved {
		t.Errorf("kept %d external IPs and %d ingresses, want %d of each", len(out.Spec.ExternalIPs), len(out.Status.LoadBalancer.Ingress), maxServiceReserved)
	}
	if out.Labels != nil || out.Spec.ClusterIP != "" || out.Spec.Selector != nil || out.Status.LoadBalancer.Ingress[0].Ports != nil {
		t.Errorf("kept more than the reserved addresses: %+v", out)
	}
}

// ReservedBy names the source of each reserved address; with
// IgnoreServiceIPs, Services reserve nothing (and are not watched).
func TestReservedBy(t *testing.T) {
	objs := func() *fake.Clientset {
		return fake.NewClientset(clusterInfo("https://Join.Example.Internal:6443"),
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "lb", Namespace: "ns"}, Spec: corev1.ServiceSpec{ExternalIPs: []string{"10.0.8.8"}},
				Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "10.0.8.9"}, {Hostname: "LB.example.internal"}}}}})
	}
	c := startCachesWith(t, objs(), nil)
	if _, known := c.cluster.ReservedBy("10.0.5.5"); known {
		t.Error("known before a serving certificate was read")
	}
	c.cluster.serving.store(dialTarget{addr: "x:443"}, []string{"api.example.internal", "10.0.0.100"})
	for addr, want := range map[string]string{
		"api.example.internal":  approval.ReservedByServingCertificate,
		"10.0.0.100":            approval.ReservedByServingCertificate,
		"join.example.internal": approval.ReservedByClusterInfo,
		"10.0.8.8":              "Service ns/lb externalIPs",
		"10.0.8.9":              "Service ns/lb load-balancer ingress",
		"lb.example.internal":   "Service ns/lb load-balancer ingress",
		"10.0.5.5":              "",
	} {
		if got, known := c.cluster.ReservedBy(addr); got != want || !known {
			t.Errorf("ReservedBy(%s) = %q, %v; want %q, true", addr, got, known, want)
		}
	}
	ignoring := startCachesWith(t, objs(), func(o *Options) { o.IgnoreServiceIPs = true })
	markServingRead(ignoring)
	if got, _ := ignoring.cluster.ReservedBy("10.0.8.8"); got != "" {
		t.Errorf("with IgnoreServiceIPs, ReservedBy(10.0.8.8) = %q, want none", got)
	}
	if got, _ := ignoring.cluster.ReservedBy("join.example.internal"); got != approval.ReservedByClusterInfo {
		t.Errorf("with IgnoreServiceIPs, cluster-info's server is still reserved: got %q", got)
	}
}
