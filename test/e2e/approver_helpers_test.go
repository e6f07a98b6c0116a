package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/internal/testcluster"
)

// approverClusterOptions: kube-controller-manager signs but does not approve.
var approverClusterOptions = testcluster.Options{Controllers: []string{"csrsigning", "csrcleaner"}, SigningDuration: time.Hour}

const (
	approverNamespace = "tlsboot-system"
	approverSA        = "tlsboot-approver"
)

// warnings collects the API server's warning headers (PodSecurity, deprecations).
type warnings struct {
	mu   sync.Mutex // guards list
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

// manifest is one object of deploy/approver/, with the file it came from.
type manifest struct {
	file string
	obj  *unstructured.Unstructured
}

// readManifests reads every document of the YAML files in dir, in the order
// namespace, service account, RBAC, deployment (the order to apply them in).
func readManifests(t *testing.T, dir string) []manifest {
	t.Helper()
	var out []manifest
	for _, name := range []string{"namespace.yaml", "serviceaccount.yaml", "rbac.yaml", "deployment.yaml"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			obj := &unstructured.Unstructured{}
			if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if len(obj.Object) > 0 {
				out = append(out, manifest{name, obj})
			}
		}
	}
	return out
}

// applyManifests validates every object of deploy/approver/ with a
// server-side dry-run apply (no PodSecurity or other warning allowed), then
// applies everything but the Deployment for real: there is no kubelet here
// to run it, so the test runs the binary out of cluster instead.
func applyManifests(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	cfg, err := c.AdminConfig()
	if err != nil {
		t.Fatal(err)
	}
	warn := &warnings{}
	cfg.WarningHandler = warn
	dyn := dynamic.NewForConfigOrDie(cfg)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(cfg)))
	for _, m := range readManifests(t, filepath.Join("..", "..", "deploy", "approver")) {
		gvk := m.obj.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s: %s: %v", m.file, gvk, err)
		}
		res := dyn.Resource(mapping.Resource).Namespace(m.obj.GetNamespace())
		for _, dryRun := range [][]string{{metav1.DryRunAll}, nil} {
			if dryRun == nil && (gvk.Kind == "Deployment") {
				continue
			}
			opts := metav1.ApplyOptions{FieldManager: "tlsboot-e2e", Force: true, DryRun: dryRun}
			if _, err := res.Apply(t.Context(), m.obj.GetName(), m.obj, opts); err != nil {
				t.Fatalf("%s: applying %s %s (dry run %v): %v", m.file, gvk.Kind, m.obj.GetName(), dryRun != nil, err)
			}
		}
	}
	if len(warn.list) > 0 {
		t.Errorf("the API server warned about the manifests: %q", warn.list)
	}
}

// serviceAccountKubeconfig writes a kubeconfig with a token of the
// approver's ServiceAccount, made with the TokenRequest API.
func serviceAccountKubeconfig(t *testing.T, c *testcluster.Cluster) (path, token string) {
	t.Helper()
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}
	tr, err := admin(t, c).CoreV1().ServiceAccounts(approverNamespace).CreateToken(t.Context(), approverSA, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting a token for the approver's service account: %v", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = &clientcmdapi.Cluster{Server: c.URL(), CertificateAuthority: c.CAFile()}
	cfg.AuthInfos["approver"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["default"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "approver"}
	cfg.CurrentContext = "default"
	path = filepath.Join(t.TempDir(), "approver.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path, tr.Status.Token
}

func ptr[T any](v T) *T { return &v }

// startApprover runs `tlsboot approver` with kubeconfig and waits until it
// has synced its caches.
func startApprover(t *testing.T, kubeconfig string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"approver", "--kubeconfig", kubeconfig, "--metrics-bind-address", "127.0.0.1:0", "-v", "2"}, extra...)
	p := start(t, tlsbootBin, args...)
	waitOutput(t, p, `"Caches synced"`)
	return p
}

var metricsAddr = regexp.MustCompile(`"Serving metrics and health" address="([^"]+)"`)

// approverURL returns the base URL of the approver's metrics server.
func approverURL(t *testing.T, p *proc) string {
	t.Helper()
	m := metricsAddr.FindStringSubmatch(p.stderr.String())
	if m == nil {
		t.Fatalf("the approver did not log its metrics address:\n%s", p.stderr)
	}
	return "http://" + m[1]
}

func clientFor(t *testing.T, kubeconfig string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

// csrSpec is a CSR to create as some user, including malformed ones that
// the csr package refuses to build.
type csrSpec struct {
	signer string
	cn     string
	org    []string
	dns    []string
	ips    []net.IP
	usages []certificatesv1.KeyUsage
}

func clientCSR(node string) csrSpec {
	return csrSpec{signer: certificatesv1.KubeAPIServerClientKubeletSignerName, cn: "system:node:" + node, org: []string{"system:nodes"},
		usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}}
}

func servingCSR(node string, dns []string, ips ...string) csrSpec {
	s := csrSpec{signer: certificatesv1.KubeletServingSignerName, cn: "system:node:" + node, org: []string{"system:nodes"}, dns: dns,
		usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}}
	for _, ip := range ips {
		s.ips = append(s.ips, net.ParseIP(ip))
	}
	return s
}

// createCSR creates s with client (whose user becomes the requester) and
// returns the CSR's name.
func createCSR(t *testing.T, client kubernetes.Interface, s csrSpec) string {
	t.Helper()
	made, err := client.CertificatesV1().CertificateSigningRequests().Create(t.Context(), rawCSR(t, s), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating CSR %+v: %v", s, err)
	}
	return made.Name
}

// rawCSR builds the CSR object for s with a new key.
func rawCSR(t *testing.T, s csrSpec) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	key, err := csr.GenerateKey(csr.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: s.cn, Organization: s.org}, DNSNames: s.dns, IPAddresses: s.ips}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	obj := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: s.signer, Usages: s.usages,
		},
	}
	return obj
}

// waitDecision waits until the CSR has an Approved or Denied condition and
// returns it.
func waitDecision(t *testing.T, client kubernetes.Interface, name string) certificatesv1.CertificateSigningRequestCondition {
	t.Helper()
	var got certificatesv1.CertificateSigningRequestCondition
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		obj, err := client.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range obj.Status.Conditions {
			if c.Type == certificatesv1.CertificateApproved || c.Type == certificatesv1.CertificateDenied {
				got = c
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("CSR %s was never decided: %v", name, err)
	}
	return got
}

func conditions(t *testing.T, client kubernetes.Interface, name string) []certificatesv1.CertificateSigningRequestCondition {
	t.Helper()
	obj, err := client.CertificatesV1().CertificateSigningRequests().Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return obj.Status.Conditions
}

// bootstrapNode runs `tlsboot bootstrap` for a new node and returns it; the
// approver under test must approve its CSR.
func bootstrapNode(t *testing.T, c *testcluster.Cluster, name string) *node {
	t.Helper()
	n := newNode(t, c)
	n.name = name
	if r := run(t, tlsbootBin, n.args()...); r.code != 0 {
		t.Fatalf("bootstrapping node %s: %s", name, r)
	}
	return n
}

// httpGet fetches url and returns the status code and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// decisionLines returns the approver's log lines that report a written
// decision.
func decisionLines(p *proc) []string {
	var out []string
	for _, l := range strings.Split(p.stderr.String(), "\n") {
		if strings.Contains(l, `"Decided certificate signing request"`) {
			out = append(out, l)
		}
	}
	return out
}

func regexpMatch(s, pattern string) bool {
	return regexp.MustCompile(pattern).MatchString(s)
}

// approverEvents returns the Events the approver recorded about CSR name.
func approverEvents(ctx context.Context, client kubernetes.Interface, name string) ([]corev1.Event, error) {
	list, err := client.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []corev1.Event
	for _, e := range list.Items {
		if e.InvolvedObject.Name == name && e.Source.Component == "tlsboot-approver" {
			out = append(out, e)
		}
	}
	return out, nil
}

// awaitEvents waits until the approver has recorded an Event about CSR
// name and returns every such Event.
func awaitEvents(t *testing.T, client kubernetes.Interface, name string) []corev1.Event {
	t.Helper()
	var events []corev1.Event
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		events, err = approverEvents(ctx, client, name)
		return len(events) > 0, err
	})
	if err != nil {
		t.Fatalf("no Event about CSR %s: %v", name, err)
	}
	return events
}

// awaitOnlyEvent returns the one Event the approver recorded about CSR
// name, which it leaves pending (Notify), after making it look at the CSR
// again: it adds an address to the status of node (the Node the CSR names),
// which requeues the CSR, and waits until the approver, run with -v 3, has
// logged leaving it alone a second time. A second Event would be queued by
// that second look after a second "Leaving certificate signing request
// pending" line, logged before the Event is queued: the log lines are
// counted as well as the Events, so a duplicate still being written is
// caught too.
func awaitOnlyEvent(t *testing.T, p *proc, client kubernetes.Interface, node, name string) corev1.Event {
	t.Helper()
	first := awaitEvents(t, client, name)
	n, err := client.CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "10.1.0.99"})
	if _, err := client.CoreV1().Nodes().UpdateStatus(t.Context(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	again := `"Leaving certificate signing request alone" csr="` + name + `"`
	err = wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return strings.Count(p.stderr.String(), again) >= 2, nil
	})
	if err != nil {
		t.Fatalf("the approver did not look at CSR %s again after its Node's addresses changed (is it run with -v 3?): %v", name, err)
	}
	if n := strings.Count(p.stderr.String(), `"Leaving certificate signing request pending" csr="`+name+`"`); n != 1 {
		t.Errorf("the approver logged leaving CSR %s pending %d times, want once (one Event)", name, n)
	}
	events, err := approverEvents(t.Context(), client, name)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 {
		t.Errorf("%d Events about CSR %s, want exactly 1: %+v", len(events), name, events)
	}
	if len(events) == 0 {
		return first[0]
	}
	return events[0]
}
