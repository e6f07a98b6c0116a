package main

import (
	"bytes"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestSetupApply checks the lines and idempotency on a fake clientset;
// test/e2e TestSetup runs setup against a real API server.
func TestSetupApply(t *testing.T) {
	ctx := t.Context()
	client := fake.NewClientset()
	caPEM := []byte("-----BEGIN CERTIFICATE-----\nMIIBVjCB/aADAgECAgEBMAoGCCqGSM49BAMCMA0xCzAJBgNVBAMTAmNhMB4XDTI2MTIwMTAwMDAwMFoXDTM2MTIwMTAwMDAwMFowDTELMAkGA1UEAxMCY2EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAR0\n-----END CERTIFICATE-----\n")
	var out bytes.Buffer
	s := &setup{client: client, out: &out}
	if err := s.apply(ctx, "https://10.0.0.1:6443", caPEM); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 6 {
		t.Fatalf("first run printed %d lines, want 6 (ConfigMap, Role, RoleBinding, 3 ClusterRoleBindings):\n%s", len(lines), out.String())
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "created ") {
			t.Errorf("line %q", l)
		}
	}

	out.Reset()
	if err := s.apply(ctx, "https://10.0.0.1:6443", caPEM); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Fatalf("second run printed:\n%s", out.String())
	}

	// A changed server, a binding that lost its subject and one bound to
	// another role: one line each.
	crb, _ := client.RbacV1().ClusterRoleBindings().Get(ctx, "kubeadm:kubelet-bootstrap", metav1.GetOptions{})
	crb.Subjects = []rbacv1.Subject{{Kind: "User", Name: "someone"}}
	client.RbacV1().ClusterRoleBindings().Update(ctx, crb, metav1.UpdateOptions{})
	client.RbacV1().ClusterRoleBindings().Delete(ctx, "kubeadm:node-autoapprove-bootstrap", metav1.DeleteOptions{})
	client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "kubeadm:node-autoapprove-bootstrap"}, RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "cluster-admin"}}, metav1.CreateOptions{})
	cm, _ := client.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	cm.Data["jws-kubeconfig-abcdef"] = "old signature"
	client.CoreV1().ConfigMaps("kube-public").Update(ctx, cm, metav1.UpdateOptions{})

	out.Reset()
	if err := s.apply(ctx, "https://10.0.0.2:6443", caPEM); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"updated ConfigMap kube-public/cluster-info (now server https://10.0.0.2:6443",
		"updated ClusterRoleBinding kubeadm:kubelet-bootstrap (added subject Group system:bootstrappers:kubeadm:default-node-token)",
		"replaced ClusterRoleBinding kubeadm:node-autoapprove-bootstrap (it bound ClusterRole cluster-admin;",
	}
	lines = strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("third run printed:\n%s", out.String())
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %q, want %q...", lines[i], w)
		}
	}
	cm, _ = client.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	if _, ok := cm.Data["jws-kubeconfig-abcdef"]; ok {
		t.Error("the signature over the old content was kept")
	}
	crb, _ = client.RbacV1().ClusterRoleBindings().Get(ctx, "kubeadm:kubelet-bootstrap", metav1.GetOptions{})
	if len(crb.Subjects) != 2 {
		t.Errorf("subjects %v: the other subject must be kept", crb.Subjects)
	}
}
