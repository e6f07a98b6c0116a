package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	watchtools "k8s.io/client-go/tools/watch"
	certutil "k8s.io/client-go/util/cert"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/tlsboot/tlsboot/discovery"
	"github.com/tlsboot/tlsboot/token"
)

// The names kubeadm gives the objects of TLS bootstrapping, so that setup
// and 'kubeadm init phase bootstrap-token' recognise each other's work.
const clusterInfoRBACName = "kubeadm:bootstrap-signer-clusterinfo"

var setupBindings = []struct{ name, role, group string }{
	{"kubeadm:kubelet-bootstrap", "system:node-bootstrapper", token.DefaultGroup},
	{"kubeadm:node-autoapprove-bootstrap", "system:certificates.k8s.io:certificatesigningrequests:nodeclient", token.DefaultGroup},
	{"kubeadm:node-autoapprove-certificate-rotation", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "system:nodes"},
}

type setupFlags struct {
	kubeconfig, server string
	dryRun             bool
	signerWait         time.Duration
}

func newSetupCommand() *cobra.Command {
	var f setupFlags
	cmd := &cobra.Command{
		Use:   "setup [--kubeconfig ADMIN] [--server URL] [--dry-run]",
		Short: "Prepare a cluster for TLS bootstrapping and token discovery (idempotent)",
		Long: `Prepare a cluster for 'tlsboot join', as 'kubeadm init phase bootstrap-token' does:
  - the ConfigMap kube-public/cluster-info: a kubeconfig with the API server (--server, or the
    admin kubeconfig's) and the CA of the admin kubeconfig;
  - the Role and RoleBinding ` + clusterInfoRBACName + ` that let system:anonymous get that one ConfigMap;
  - kubeadm's three ClusterRoleBindings: system:bootstrappers:kubeadm:default-node-token may create
    node CSRs (node-bootstrapper) and have them auto-approved (nodeclient); nodes may renew
    (selfnodeclient).
It prints one line per object it creates or changes and nothing for what is already right, so
running it again is safe. Existing bindings keep their other subjects.

Then it checks that kube-controller-manager runs the bootstrapsigner and tokencleaner controllers
(kubeadm runs it with --controllers=*,bootstrapsigner,tokencleaner): it creates a short-lived test
token that can only sign, and an expired one, and waits up to --signer-wait for cluster-info to be
signed with the first and for the second to be deleted. Without bootstrapsigner no token is ever
signed and join cannot discover the cluster. --dry-run changes nothing (the API server checks the
changes with a server-side dry run) and skips that check.`,
		Example: `  tlsboot setup --kubeconfig /etc/kubernetes/admin.conf --server https://10.0.0.1:6443
  tlsboot setup --dry-run`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.signerWait <= 0 {
				return usageError{fmt.Errorf("--signer-wait %s must be positive", f.signerWait)}
			}
			a, err := loadAdmin(f.kubeconfig)
			if err != nil {
				return err
			}
			server := f.server
			if server == "" {
				server = a.config.Host
			}
			if server, err = discovery.ServerURL(server); err != nil {
				return usageError{fmt.Errorf("--server: %w", err)}
			}
			caPEM, err := a.caPEM()
			if err != nil {
				return err
			}
			s := &setup{client: a.client, out: cmd.OutOrStdout(), dryRun: f.dryRun}
			if err := s.apply(cmd.Context(), server, caPEM); err != nil {
				return err
			}
			if f.dryRun {
				return nil
			}
			return checkTokenControllers(cmd.Context(), a.client, f.signerWait)
		},
	}
	fs := cmd.Flags()
	addAdminKubeconfigFlag(fs, &f.kubeconfig)
	fs.StringVar(&f.server, "server", "", "API server URL that joining nodes use (default: the admin kubeconfig's)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "print what would be created or changed, change nothing")
	fs.DurationVar(&f.signerWait, "signer-wait", 30*time.Second, "how long to wait for kube-controller-manager to sign and clean up test tokens")
	return cmd
}

// setup applies the objects, printing one line per change.
type setup struct {
	client kubernetes.Interface
	out    io.Writer
	dryRun bool
}

func (s *setup) apply(ctx context.Context, server string, caPEM []byte) error {
	if err := s.clusterInfo(ctx, server, caPEM); err != nil {
		return err
	}
	if err := s.role(ctx); err != nil {
		return err
	}
	if err := s.roleBinding(ctx, metav1.NamespacePublic, clusterInfoRBACName,
		rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: clusterInfoRBACName},
		rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "system:anonymous"}); err != nil {
		return err
	}
	for _, b := range setupBindings {
		if err := s.roleBinding(ctx, "", b.name,
			rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: b.role},
			rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: b.group}); err != nil {
			return err
		}
	}
	return nil
}

func (s *setup) report(verb, kind, name, detail string) {
	if s.dryRun {
		verb = "would " + strings.TrimSuffix(verb, "d")
	}
	if detail != "" {
		detail = " (" + detail + ")"
	}
	fmt.Fprintf(s.out, "%s %s %s%s\n", verb, kind, name, detail)
}

func (s *setup) createOpts() metav1.CreateOptions {
	if s.dryRun {
		return metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	}
	return metav1.CreateOptions{}
}

func (s *setup) updateOpts() metav1.UpdateOptions {
	if s.dryRun {
		return metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}}
	}
	return metav1.UpdateOptions{}
}

// clusterInfoKubeconfig is the content of cluster-info as kubeadm writes
// it: one cluster named "" with the server and the CA embedded.
func clusterInfoKubeconfig(server string, caPEM []byte) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[""] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	return clientcmd.Write(*cfg)
}

// clusterInfoIsRight reports whether content names exactly server and CA.
func clusterInfoIsRight(content string, server string, caPEM []byte) bool {
	cfg, err := clientcmd.Load([]byte(content))
	if err != nil || len(cfg.Clusters) != 1 {
		return false
	}
	for _, c := range cfg.Clusters {
		return c.Server == server && bytes.Equal(bytes.TrimSpace(c.CertificateAuthorityData), bytes.TrimSpace(caPEM))
	}
	return false
}

func (s *setup) clusterInfo(ctx context.Context, server string, caPEM []byte) error {
	content, err := clusterInfoKubeconfig(server, caPEM)
	if err != nil {
		return err
	}
	pins := pinsOf(caPEM)
	detail := fmt.Sprintf("server %s, CA %s", server, strings.Join(pins, ", "))
	cms := s.client.CoreV1().ConfigMaps(metav1.NamespacePublic)
	cm, err := cms.Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: bootstrapapi.ConfigMapClusterInfo, Namespace: metav1.NamespacePublic},
			Data: map[string]string{bootstrapapi.KubeConfigKey: string(content)}}
		if _, err := cms.Create(ctx, cm, s.createOpts()); err != nil {
			return fmt.Errorf("creating ConfigMap kube-public/cluster-info: %v", oneLine(err))
		}
		s.report("created", "ConfigMap", "kube-public/cluster-info", detail)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading ConfigMap kube-public/cluster-info: %v", oneLine(err))
	}
	if clusterInfoIsRight(cm.Data[bootstrapapi.KubeConfigKey], server, caPEM) {
		return nil
	}
	// The signatures were made over the old content: drop them, so that
	// a joining node waits for bootstrapsigner's new ones instead of
	// finding a mismatch that would look like a wrong secret.
	data := map[string]string{bootstrapapi.KubeConfigKey: string(content)}
	for k, v := range cm.Data {
		if k != bootstrapapi.KubeConfigKey && !strings.HasPrefix(k, bootstrapapi.JWSSignatureKeyPrefix) {
			data[k] = v
		}
	}
	cm.Data = data
	if _, err := cms.Update(ctx, cm, s.updateOpts()); err != nil {
		return fmt.Errorf("updating ConfigMap kube-public/cluster-info: %v", oneLine(err))
	}
	s.report("updated", "ConfigMap", "kube-public/cluster-info", "now "+detail)
	return nil
}

func pinsOf(caPEM []byte) []string {
	certs, _ := certutil.ParseCertsPEM(caPEM) // checked by admin.caPEM
	var pins []string
	for _, c := range certs {
		pins = append(pins, string(discovery.PinOf(c)))
	}
	return pins
}

func (s *setup) role(ctx context.Context) error {
	want := []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{bootstrapapi.ConfigMapClusterInfo}}}
	roles := s.client.RbacV1().Roles(metav1.NamespacePublic)
	name := metav1.NamespacePublic + "/" + clusterInfoRBACName
	role, err := roles.Get(ctx, clusterInfoRBACName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		role = &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: clusterInfoRBACName, Namespace: metav1.NamespacePublic}, Rules: want}
		if _, err := roles.Create(ctx, role, s.createOpts()); err != nil {
			return fmt.Errorf("creating Role %s: %v", name, oneLine(err))
		}
		s.report("created", "Role", name, "system:anonymous may get ConfigMap cluster-info")
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading Role %s: %v", name, oneLine(err))
	}
	if equality.Semantic.DeepEqual(role.Rules, want) {
		return nil
	}
	role.Rules = want
	if _, err := roles.Update(ctx, role, s.updateOpts()); err != nil {
		return fmt.Errorf("updating Role %s: %v", name, oneLine(err))
	}
	s.report("updated", "Role", name, "rules: get ConfigMap cluster-info only")
	return nil
}

// roleBinding makes sure a RoleBinding (namespace set) or ClusterRoleBinding
// (namespace "") binds ref to subject, keeping its other subjects. A
// binding to another role is replaced: roleRef cannot be updated.
func (s *setup) roleBinding(ctx context.Context, namespace, name string, ref rbacv1.RoleRef, subject rbacv1.Subject) error {
	kind, full := "ClusterRoleBinding", name
	if namespace != "" {
		kind, full = "RoleBinding", namespace+"/"+name
	}
	b := bindingClient{s.client, namespace}
	cur, err := b.get(ctx, name)
	if apierrors.IsNotFound(err) {
		if err := b.create(ctx, name, ref, []rbacv1.Subject{subject}, s.createOpts()); err != nil {
			return fmt.Errorf("creating %s %s: %v", kind, full, oneLine(err))
		}
		s.report("created", kind, full, fmt.Sprintf("%s %s -> %s %s", subject.Kind, subject.Name, ref.Kind, ref.Name))
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s %s: %v", kind, full, oneLine(err))
	}
	if cur.ref == ref && slices.ContainsFunc(cur.subjects, func(s rbacv1.Subject) bool { return s.Kind == subject.Kind && s.Name == subject.Name }) {
		return nil
	}
	if cur.ref != ref {
		if !s.dryRun {
			if err := b.delete(ctx, name); err != nil {
				return fmt.Errorf("replacing %s %s (it binds %s %s): %v", kind, full, cur.ref.Kind, cur.ref.Name, oneLine(err))
			}
		}
		if err := b.create(ctx, name, ref, []rbacv1.Subject{subject}, s.createOpts()); err != nil && !(s.dryRun && apierrors.IsAlreadyExists(err)) {
			return fmt.Errorf("re-creating %s %s: %v", kind, full, oneLine(err))
		}
		s.report("replaced", kind, full, fmt.Sprintf("it bound %s %s; now %s %s -> %s %s", cur.ref.Kind, cur.ref.Name, subject.Kind, subject.Name, ref.Kind, ref.Name))
		return nil
	}
	if err := b.addSubject(ctx, name, subject, s.updateOpts()); err != nil {
		return fmt.Errorf("updating %s %s: %v", kind, full, oneLine(err))
	}
	s.report("updated", kind, full, fmt.Sprintf("added subject %s %s", subject.Kind, subject.Name))
	return nil
}

// checkTokenControllers creates two test tokens and waits for
// kube-controller-manager to sign cluster-info with the first and to
// delete the second (expired), both within wait. The tokens cannot
// authenticate (no authentication usage) and are deleted afterwards.
func checkTokenControllers(ctx context.Context, client kubernetes.Interface, wait time.Duration) error {
	signing, err := createTestToken(ctx, client, []string{"signing"}, time.Now().Add(10*time.Minute), "tlsboot setup: checks that bootstrapsigner signs cluster-info; deleted at once")
	if err != nil {
		return err
	}
	defer deleteTestToken(client, signing)
	expired, err := createTestToken(ctx, client, nil, time.Now().Add(-time.Hour), "tlsboot setup: checks that tokencleaner deletes expired tokens")
	if err != nil {
		return err
	}
	defer deleteTestToken(client, expired)

	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var wg sync.WaitGroup
	var signedErr, cleanedErr error
	wg.Go(func() {
		signedErr = await(ctx, client, "configmaps", metav1.NamespacePublic, bootstrapapi.ConfigMapClusterInfo, &corev1.ConfigMap{}, func(o runtime.Object) bool {
			cm, ok := o.(*corev1.ConfigMap)
			return ok && cm.Data[bootstrapapi.JWSSignatureKeyPrefix+signing.ID] != ""
		})
	})
	wg.Go(func() {
		cleanedErr = await(ctx, client, "secrets", metav1.NamespaceSystem, token.SecretName(expired.ID), &corev1.Secret{}, func(o runtime.Object) bool { return o == nil })
	})
	wg.Wait()
	var missing []string
	if signedErr != nil {
		missing = append(missing, "bootstrapsigner (it did not sign cluster-info for a test token: without it no token is ever signed and 'tlsboot join' cannot discover the cluster)")
	}
	if cleanedErr != nil {
		missing = append(missing, "tokencleaner (it did not delete an expired test token: without it expired tokens stay in kube-system)")
	}
	if len(missing) > 0 {
		if errors.Is(ctx.Err(), context.Canceled) {
			return fmt.Errorf("interrupted while checking kube-controller-manager's token controllers; the objects above are in place")
		}
		return fmt.Errorf("kube-controller-manager does not seem to run %s within %s: run it with --controllers=*,bootstrapsigner,tokencleaner (as kubeadm does), then run setup again", strings.Join(missing, " nor "), wait)
	}
	return nil
}

func createTestToken(ctx context.Context, client kubernetes.Interface, usages []string, expires time.Time, description string) (token.Token, error) {
	tok, err := token.Generate()
	if err != nil {
		return token.Token{}, err
	}
	spec := token.Spec{Token: tok, Expires: expires, Description: description, Usages: usages}
	if err := token.Create(ctx, client, spec); err != nil {
		return token.Token{}, fmt.Errorf("creating a test token to check kube-controller-manager: %w", err)
	}
	return tok, nil
}

// deleteTestToken deletes a test token even when the command was
// interrupted: it must not outlive setup.
func deleteTestToken(client kubernetes.Interface, tok token.Token) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := client.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, token.SecretName(tok.ID), metav1.DeleteOptions{})
	_ = err // NotFound is the tokencleaner's work; anything else expires on its own
}

// await watches one object (a list, then a watch: client-go's
// UntilWithSync) until cond holds for it; cond(nil) asks about its absence.
func await(ctx context.Context, client kubernetes.Interface, resource, namespace, name string, obj runtime.Object, cond func(runtime.Object) bool) error {
	lw := cache.NewListWatchFromClient(client.CoreV1().RESTClient(), resource, namespace, fields.OneTermEqualSelector("metadata.name", name))
	pre := func(store cache.Store) (bool, error) {
		items := store.List()
		if len(items) == 0 {
			return cond(nil), nil
		}
		return cond(items[0].(runtime.Object)), nil
	}
	_, err := watchtools.UntilWithSync(ctx, lw, obj, pre, func(ev watch.Event) (bool, error) {
		if ev.Type == watch.Deleted {
			return cond(nil), nil
		}
		return cond(ev.Object), nil
	})
	return err
}

// bindingClient reads and writes a RoleBinding (namespace set) or a
// ClusterRoleBinding (namespace "") through one small interface.
type bindingClient struct {
	client    kubernetes.Interface
	namespace string
}

type binding struct {
	ref      rbacv1.RoleRef
	subjects []rbacv1.Subject
}

func (b bindingClient) get(ctx context.Context, name string) (binding, error) {
	if b.namespace == "" {
		crb, err := b.client.RbacV1().ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return binding{}, err
		}
		return binding{crb.RoleRef, crb.Subjects}, nil
	}
	rb, err := b.client.RbacV1().RoleBindings(b.namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return binding{}, err
	}
	return binding{rb.RoleRef, rb.Subjects}, nil
}

func (b bindingClient) create(ctx context.Context, name string, ref rbacv1.RoleRef, subjects []rbacv1.Subject, opts metav1.CreateOptions) error {
	meta := metav1.ObjectMeta{Name: name, Namespace: b.namespace}
	if b.namespace == "" {
		_, err := b.client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: meta, RoleRef: ref, Subjects: subjects}, opts)
		return err
	}
	_, err := b.client.RbacV1().RoleBindings(b.namespace).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta, RoleRef: ref, Subjects: subjects}, opts)
	return err
}

func (b bindingClient) delete(ctx context.Context, name string) error {
	if b.namespace == "" {
		return b.client.RbacV1().ClusterRoleBindings().Delete(ctx, name, metav1.DeleteOptions{})
	}
	return b.client.RbacV1().RoleBindings(b.namespace).Delete(ctx, name, metav1.DeleteOptions{})
}

func (b bindingClient) addSubject(ctx context.Context, name string, subject rbacv1.Subject, opts metav1.UpdateOptions) error {
	if b.namespace == "" {
		crb, err := b.client.RbacV1().ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		crb.Subjects = append(crb.Subjects, subject)
		_, err = b.client.RbacV1().ClusterRoleBindings().Update(ctx, crb, opts)
		return err
	}
	rb, err := b.client.RbacV1().RoleBindings(b.namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	rb.Subjects = append(rb.Subjects, subject)
	_, err = b.client.RbacV1().RoleBindings(b.namespace).Update(ctx, rb, opts)
	return err
}
