package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/tlsboot/tlsboot/certstore"
	"github.com/tlsboot/tlsboot/internal/testcluster"
	"github.com/tlsboot/tlsboot/internal/testpki"
	"github.com/tlsboot/tlsboot/kubeconfig"
)

// agentProc is a running `tlsboot run`.
type agentProc struct {
	*proc
	url string // http://host:port of metrics, healthz, readyz
}

// startAgent runs `tlsboot run` for n with a free metrics port and waits
// until it serves its endpoints.
func startAgent(t *testing.T, n *node, extra ...string) *agentProc {
	t.Helper()
	args := n.args(append([]string{"--metrics-bind-address", "127.0.0.1:0"}, extra...)...)
	args[0] = "run"
	p := start(t, tlsbootBin, args...)
	const marker = `"Serving metrics and health endpoints" address="`
	waitOutput(t, p, marker)
	out := p.stderr.String()
	addr := out[strings.Index(out, marker)+len(marker):]
	addr = addr[:strings.Index(addr, `"`)]
	return &agentProc{proc: p, url: "http://" + addr}
}

// stop sends SIGTERM and checks the agent exits 0.
func (a *agentProc) stop(t *testing.T) result {
	t.Helper()
	a.signal(t, syscall.SIGTERM)
	r := a.wait(t)
	if r.code != 0 {
		t.Fatalf("agent exited %d after SIGTERM, want 0\n%s", r.code, r)
	}
	return r
}

func (a *agentProc) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(a.url + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metric returns the value of one series, e.g.
// `tlsboot_certificate_rotations_total{certificate="client",reason="due"}`,
// and 0 when absent.
func (a *agentProc) metric(t *testing.T, series string) float64 {
	t.Helper()
	_, body := a.get(t, "/metrics")
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", series, err)
			}
			return f
		}
	}
	return 0
}

// await polls cond until it holds, for at most timeout.
func await(t *testing.T, a *agentProc, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		select {
		case <-a.done:
			return false, errExited
		default:
		}
		return cond(), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v\nagent stderr:\n%s", what, err, a.stderr)
	}
}

// awaitMetric waits until series is at least min.
func (a *agentProc) awaitMetric(t *testing.T, series string, min float64, timeout time.Duration) {
	t.Helper()
	await(t, a, timeout, fmt.Sprintf("%s >= %v", series, min), func() bool { return a.metric(t, series) >= min })
}

// awaitReady waits until /readyz answers code.
func (a *agentProc) awaitReady(t *testing.T, code int) string {
	t.Helper()
	var body string
	await(t, a, 2*time.Minute, fmt.Sprintf("/readyz %d", code), func() bool {
		var got int
		got, body = a.get(t, "/readyz")
		return got == code
	})
	return body
}

func rotations(cert, reason string) string {
	return fmt.Sprintf(`tlsboot_certificate_rotations_total{certificate=%q,reason=%q}`, cert, reason)
}

func failures(cert, reason string) string {
	return fmt.Sprintf(`tlsboot_certificate_rotation_failures_total{certificate=%q,reason=%q}`, cert, reason)
}

// forgeOptions describes a certificate to put in a node's store.
type forgeOptions struct {
	prefix              string // default kubelet-client
	notBefore, notAfter time.Time
	foreignCA           bool // sign with a CA the cluster does not trust
	dns                 []string
	ips                 []net.IP
}

// forge stores a certificate for n signed by the cluster CA (or a foreign
// one) and, for the client prefix, writes n's kubeconfig to use it, the
// way a node that was bootstrapped earlier looks.
func forge(t *testing.T, c *testcluster.Cluster, n *node, o forgeOptions) {
	t.Helper()
	if o.prefix == "" {
		o.prefix = "kubelet-client"
	}
	signer := certificatesv1.KubeAPIServerClientKubeletSignerName
	if o.prefix != "kubelet-client" {
		signer = certificatesv1.KubeletServingSignerName
	}
	ca := signerCA(t, c, signer)
	if o.foreignCA {
		ca = testpki.NewCA(t)
	}
	is := ca.Issue(t, testpki.Spec{Subject: testpki.Node(n.name), NotBefore: o.notBefore, NotAfter: o.notAfter, DNSNames: o.dns, IPs: o.ips})
	store, err := certstore.Open(certstore.Options{Dir: n.certDir, Prefix: o.prefix})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Update(is.CertPEM, is.KeyPEM); err != nil {
		t.Fatal(err)
	}
	if o.prefix != "kubelet-client" {
		return
	}
	cluster, err := kubeconfig.Load(c.BootstrapKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := kubeconfig.Write(n.kubeconfig, kubeconfig.Node(cluster, store.CurrentPath())); err != nil {
		t.Fatal(err)
	}
}

// forgery says how a test signer departs from the request it signs.
type forgery int

const (
	faithful     forgery = iota
	dropSANs             // a signer that drops the requested SANs
	otherKey             // a certificate for a key the requester does not hold
	otherSubject         // a certificate for another node
)

// signerCA is the CA with which c's kube-controller-manager signs for
// signer: the kubelet-serving CA for kubernetes.io/kubelet-serving, the
// client CA for the others (the same CA in the single layout).
func signerCA(t *testing.T, c *testcluster.Cluster, signer string) *testpki.CA {
	t.Helper()
	if signer == certificatesv1.KubeletServingSignerName {
		return testpki.LoadCA(t, c.KubeletServingCAFile(), c.KubeletServingCAKeyFile())
	}
	return testpki.LoadCA(t, c.ClientCAFile(), c.ClientCAKeyFile())
}

// signCSR signs CSR name with its signer's CA as a signer would, or as a
// broken one would (see forgery).
func signCSR(t *testing.T, c *testcluster.Cluster, client kubernetes.Interface, name string, how forgery) {
	t.Helper()
	csrs := client.CertificatesV1().CertificateSigningRequests()
	// The approver may write the CSR between the read and the update (the
	// approval is a write too), so a conflict means read again and sign again.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj, err := csrs.Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		block, _ := pem.Decode(obj.Spec.Request)
		if block == nil {
			return fmt.Errorf("CSR %s has no PEM request", name)
		}
		req, err := x509.ParseCertificateRequest(block.Bytes)
		if err != nil {
			return err
		}
		spec := testpki.Spec{Key: req.PublicKey, Subject: req.Subject, NotBefore: time.Now().Add(-5 * time.Minute), Lifetime: time.Hour,
			DNSNames: req.DNSNames, IPs: req.IPAddresses}
		switch how {
		case dropSANs:
			spec.DNSNames, spec.IPs = nil, nil
		case otherKey:
			spec.Key = testpki.Key(t, "ecdsa").Public()
		case otherSubject:
			spec.Subject = testpki.Node("someone-else")
		}
		obj.Status.Certificate = signerCA(t, c, obj.Spec.SignerName).Issue(t, spec).CertPEM
		_, err = csrs.UpdateStatus(t.Context(), obj, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("signing CSR %s: %v", name, err)
	}
}

// awaitCSR waits for a CSR of node with the given signer that is not in
// skip, and returns it.
func awaitCSR(t *testing.T, a *agentProc, client kubernetes.Interface, node, signer string, skip ...string) certificatesv1.CertificateSigningRequest {
	t.Helper()
	var got certificatesv1.CertificateSigningRequest
	await(t, a, 2*time.Minute, "a "+signer+" CSR for "+node, func() bool {
		for _, c := range nodeCSRs(t, client, node) {
			if c.Spec.SignerName == signer && !contains(skip, c.Name) {
				got = c
				return true
			}
		}
		return false
	})
	return got
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// leafOf reads the certificate of a store's -current.pem.
func leafOf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(path, path)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

var retryInRE = regexp.MustCompile(`failure="([a-z_]+)".*retry_in="([^"]+)"`)

// retryDelays returns the backoff the agent logged for each failure kind.
func retryDelays(out, failure string) []time.Duration {
	var ds []time.Duration
	for _, m := range retryInRE.FindAllStringSubmatch(out, -1) {
		if m[1] == failure {
			d, _ := time.ParseDuration(m[2])
			ds = append(ds, d)
		}
	}
	return ds
}
