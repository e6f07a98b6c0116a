package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tlsboot/tlsboot/approval"
	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/internal/testcluster"
)

const (
	// memOversized is how many oversized CSRs are created, half before the
	// approver starts (its initial list) and half while it runs (its watch).
	memOversized = 200
	// memHonest is how many honest node client CSRs are created alongside.
	memHonest = 20
	// memRequestBytes is the size of each oversized request: about 1 MiB
	// of PEM, within what the API server and etcd accept for one object.
	memRequestBytes = 1000 * 1000
	// memMaxRSS is the approver's allowed peak resident set size.
	memMaxRSS = 128 << 20
	// memLabel marks the CSRs of this test, for cleaning up.
	memLabel = "e2e.tlsboot.io/bounded-memory"
)

// TestApproverBoundedMemory: 200 CSRs of about 1 MiB each (a valid request
// with thousands of DNS names), created by a bootstrap token alongside honest
// node CSRs, half before the approver starts and half while it runs. Every
// honest CSR is approved, every oversized one is denied with a short message
// that gives its size, the oversized CSRs keep their request and metadata
// (the decision write sends nothing of the approver's trimmed cache), and the
// approver's peak RSS stays under 128 MiB.
func TestApproverBoundedMemory(t *testing.T) {
	c := testcluster.StartT(t, approverClusterOptions)
	adminClient := admin(t, c)
	attacker := fastClient(t, c.BootstrapKubeconfig)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	t.Cleanup(func() {
		// 200 MiB in etcd: delete it in one call.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := adminClient.CertificatesV1().CertificateSigningRequests().DeleteCollection(ctx, metav1.DeleteOptions{},
			metav1.ListOptions{LabelSelector: memLabel + "=" + run})
		if err != nil {
			t.Errorf("deleting the test's CSRs: %v", err)
		}
	})
	big := oversizedRequest(t)
	t.Logf("oversized request: %d bytes of PEM", len(big))

	created := time.Now()
	oversized := createOversized(t, attacker, big, run, 0, memOversized/2)
	honest := createHonest(t, attacker, run, 0, memHonest/2)
	t.Logf("created %d oversized and %d honest CSRs before the approver started, in %s", len(oversized), len(honest), time.Since(created).Round(time.Millisecond))

	// A second approver, in dry-run mode, that may not stream its initial
	// state (watch-list) and must list it, as against an API server that
	// does not stream: the list is read in pages, transformed page by page.
	listing := startApproverEnv(t, []string{"KUBE_FEATURE_WatchListClient=false"}, c.AdminKubeconfig, "--leader-elect=false", "--dry-run")
	t.Logf("peak RSS of the approver that listed %d oversized CSRs: %.1f MiB", len(oversized), float64(peakRSS(t, listing))/(1<<20))
	p := startApprover(t, c.AdminKubeconfig, "--leader-elect=false")
	waitDecided(t, p, append(slices.Clone(oversized), honest...))
	peakList := peakRSS(t, p)
	t.Logf("peak RSS after deciding the CSRs of the initial state (streamed): %.1f MiB", float64(peakList)/(1<<20))

	created = time.Now()
	moreOversized := createOversized(t, attacker, big, run, memOversized/2, memOversized)
	moreHonest := createHonest(t, attacker, run, memHonest/2, memHonest)
	t.Logf("created %d oversized and %d honest CSRs while the approver ran, in %s", len(moreOversized), len(moreHonest), time.Since(created).Round(time.Millisecond))
	oversized, honest = append(oversized, moreOversized...), append(honest, moreHonest...)
	waitDecided(t, p, append(slices.Clone(moreOversized), moreHonest...))
	peak := peakRSS(t, p)
	t.Logf("peak RSS after deciding every CSR: %.1f MiB", float64(peak)/(1<<20))
	peakListing := peakRSS(t, listing)
	t.Logf("peak RSS of the listing approver, at the end: %.1f MiB", float64(peakListing)/(1<<20))

	for _, name := range honest {
		if conds := conditions(t, adminClient, name); len(conds) != 1 || conds[0].Type != certificatesv1.CertificateApproved {
			t.Errorf("honest CSR %s: conditions %+v, want approved", name, conds)
		}
	}
	checkOversized(t, c, oversized, len(big), run)
	if peak > memMaxRSS {
		t.Errorf("the approver's peak RSS was %.1f MiB, want under %d MiB", float64(peak)/(1<<20), memMaxRSS>>20)
	}
	if peakListing > memMaxRSS {
		t.Errorf("the peak RSS of the approver that listed was %.1f MiB, want under %d MiB", float64(peakListing)/(1<<20), memMaxRSS>>20)
	}
	for _, line := range strings.Split(p.stderr.String(), "\n") {
		if len(line) > 4096 {
			t.Errorf("the approver logged a line of %d bytes: %.200s…", len(line), line)
		}
	}
}

// startApproverEnv is startApprover with extra environment variables.
func startApproverEnv(t *testing.T, env []string, kubeconfig string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"approver", "--kubeconfig", kubeconfig, "--metrics-bind-address", "127.0.0.1:0", "-v", "2"}, extra...)
	p := startEnv(t, env, tlsbootBin, args...)
	waitOutput(t, p, `"Caches synced"`)
	return p
}

// fastClient is a client for kubeconfig without client-side throttling to
// speak of, so that creating hundreds of CSRs takes seconds.
func fastClient(t *testing.T, kubeconfig string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	return kubernetes.NewForConfigOrDie(cfg)
}

// oversizedRequest is a valid node client CSR in PEM, padded with DNS names
// to about memRequestBytes.
func oversizedRequest(t *testing.T) []byte {
	t.Helper()
	key, err := csr.GenerateKey(csr.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	const name = "san-000000.oversized.attacker.example" // each costs len+2 bytes of DER
	n := memRequestBytes * 3 / 4 / (len(name) + 2)
	dns := make([]string, n)
	for i := range dns {
		dns[i] = fmt.Sprintf("san-%06d.oversized.attacker.example", i)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:oversized", Organization: []string{"system:nodes"}}, DNSNames: dns}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// createOversized creates the oversized CSRs numbered [from, to), a few at
// a time, and returns their names.
func createOversized(t *testing.T, client kubernetes.Interface, request []byte, run string, from, to int) []string {
	t.Helper()
	names := make([]string, to-from)
	errs := make(chan error, to-from)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := from; i < to; i++ {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			obj := &certificatesv1.CertificateSigningRequest{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("e2e-oversized-%s-%03d", run, i), Labels: map[string]string{memLabel: run}},
				Spec: certificatesv1.CertificateSigningRequestSpec{Request: request, SignerName: certificatesv1.KubeAPIServerClientKubeletSignerName,
					Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}},
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			made, err := client.CertificatesV1().CertificateSigningRequests().Create(ctx, obj, metav1.CreateOptions{})
			if err != nil {
				errs <- fmt.Errorf("creating oversized CSR %d: %w", i, err)
				return
			}
			names[i-from] = made.Name
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return names
}

// createHonest creates valid node client CSRs numbered [from, to) for new
// nodes, as a bootstrap token does, and returns their names.
func createHonest(t *testing.T, client kubernetes.Interface, run string, from, to int) []string {
	t.Helper()
	var names []string
	for i := from; i < to; i++ {
		obj := rawCSR(t, clientCSR(fmt.Sprintf("mem-%s-%02d", run, i)))
		obj.Labels = map[string]string{memLabel: run}
		made, err := client.CertificatesV1().CertificateSigningRequests().Create(t.Context(), obj, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating honest CSR %d: %v", i, err)
		}
		names = append(names, made.Name)
	}
	return names
}

// waitDecided waits until the approver logged a decision for every CSR.
func waitDecided(t *testing.T, p *proc, names []string) {
	t.Helper()
	var missing []string
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 3*time.Minute, true, func(context.Context) (bool, error) {
		select {
		case <-p.done:
			return false, errExited
		default:
		}
		decided := map[string]bool{}
		for _, l := range decisionLines(p) {
			if i := strings.Index(l, ` csr="`); i >= 0 {
				rest := l[i+6:]
				decided[rest[:strings.IndexByte(rest, '"')]] = true
			}
		}
		missing = missing[:0]
		for _, n := range names {
			if !decided[n] {
				missing = append(missing, n)
			}
		}
		return len(missing) == 0, nil
	})
	if err != nil {
		t.Fatalf("%d of %d CSRs were never decided (first %q): %v\n%s", len(missing), len(names), missing[0], err, tail(p.stderr.String(), 40))
	}
}

// checkOversized: every oversized CSR is denied with a short message giving
// its size, and still holds its request and labels as created.
func checkOversized(t *testing.T, c *testcluster.Cluster, names []string, size int, run string) {
	t.Helper()
	client := fastClient(t, c.AdminKubeconfigPath())
	for _, name := range names {
		obj, err := client.CertificatesV1().CertificateSigningRequests().Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(obj.Status.Conditions) != 1 {
			t.Errorf("oversized CSR %s: conditions %+v, want one denial", name, obj.Status.Conditions)
			continue
		}
		cond := obj.Status.Conditions[0]
		if cond.Type != certificatesv1.CertificateDenied || cond.Reason != approval.ReasonRequestTooLarge ||
			!strings.Contains(cond.Message, strconv.Itoa(size)) || len(cond.Message) > 2048 {
			t.Errorf("oversized CSR %s: %s %s %q (%d bytes), want Denied %s with a message of at most 2 KiB giving the size %d",
				name, cond.Type, cond.Reason, cond.Message[:min(len(cond.Message), 300)], len(cond.Message), approval.ReasonRequestTooLarge, size)
		}
		if len(obj.Spec.Request) != size || obj.Labels[memLabel] != run {
			t.Errorf("oversized CSR %s lost data in the decision write: request %d bytes (want %d), labels %v", name, len(obj.Spec.Request), size, obj.Labels)
		}
	}
}

// peakRSS is the process's peak resident set size (VmHWM).
func peakRSS(t *testing.T, p *proc) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/<pid>/status")
	return 0
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

const (
	// floodCSRs approvable CSRs of about floodRequestBytes each, as in the
	// review of issue 24 (1,500 of 62 KB took the approver from 33 to 386
	// MB of RSS: its cache kept every approved request and certificate).
	floodCSRs         = 1500
	floodRequestBytes = 62 * 1000
	// floodMaxRSS bounds the approver's peak RSS under the flood: the
	// cache keeps no decided request, so what remains is transient.
	floodMaxRSS = 128 << 20
)

// TestApproverFloodBoundedMemory: a bootstrap token floods the approver with
// 1,500 approvable client CSRs of about 62 KB — a node request after 61 KB of
// explanatory text, which RFC 7468 allows before a PEM block and which
// pem.Decode, the API server, the signer and the policy all skip. (The
// review padded with subject OUs, which SubjectNotAllowed now denies; a
// large subjectKeyIdentifier would pad as well as text.) The cache drops
// each request and certificate once decided, so the approver's peak RSS
// stays under 128 MiB (59 MiB here; 208 MiB before the fix); each CSR is
// approved and signed, or, when the flood outpaces the decisions, denied
// unread for its requester's pending budget.
func TestApproverFloodBoundedMemory(t *testing.T) {
	c := testcluster.StartT(t, approverClusterOptions)
	adminClient := fastClient(t, c.AdminKubeconfigPath())
	attacker := fastClient(t, c.BootstrapKubeconfig)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := adminClient.CertificatesV1().CertificateSigningRequests().DeleteCollection(ctx, metav1.DeleteOptions{},
			metav1.ListOptions{LabelSelector: memLabel + "=" + run})
		if err != nil {
			t.Errorf("deleting the test's CSRs: %v", err)
		}
	})
	padded := paddedRequest(t, "flood", floodRequestBytes)
	p := startApprover(t, c.AdminKubeconfig, "--leader-elect=false")
	start := peakRSS(t, p)
	created := time.Now()
	names := createOversized(t, attacker, padded, run, 0, floodCSRs)
	t.Logf("created %d CSRs of %d bytes in %s", len(names), len(padded), time.Since(created).Round(time.Millisecond))
	waitDecided(t, p, names)
	peak := peakRSS(t, p)
	t.Logf("the approver's peak RSS: %.1f MiB at the start, %.1f MiB after the flood", float64(start)/(1<<20), float64(peak)/(1<<20))

	list, err := adminClient.CertificatesV1().CertificateSigningRequests().List(t.Context(), metav1.ListOptions{LabelSelector: memLabel + "=" + run})
	if err != nil {
		t.Fatal(err)
	}
	approved, overBudget := 0, 0
	for _, obj := range list.Items {
		switch conds := obj.Status.Conditions; {
		case len(conds) >= 1 && conds[0].Type == certificatesv1.CertificateApproved:
			approved++
		case len(conds) == 1 && conds[0].Type == certificatesv1.CertificateDenied && conds[0].Reason == approval.ReasonPendingBytesExceeded:
			overBudget++
		default:
			t.Errorf("CSR %s: conditions %+v, want approved, or denied %s", obj.Name, conds, approval.ReasonPendingBytesExceeded)
		}
	}
	t.Logf("%d approved, %d denied for the pending budget", approved, overBudget)
	if approved == 0 {
		t.Error("no CSR of the flood was approved: the flood tests nothing")
	}
	if peak > floodMaxRSS {
		t.Errorf("the approver's peak RSS under the flood was %.1f MiB, want under %d MiB", float64(peak)/(1<<20), floodMaxRSS>>20)
	}
}

// paddedRequest is a valid client CSR for node in PEM, preceded by
// explanatory text up to size bytes in all.
func paddedRequest(t *testing.T, node string, size int) []byte {
	t.Helper()
	key, err := csr.GenerateKey(csr.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}}, key)
	if err != nil {
		t.Fatal(err)
	}
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	const line = "explanatory text that pem.Decode skips before the block......\n"
	text := strings.Repeat(line, (size-len(block))/len(line))
	return append([]byte(text), block...)
}

// The Deployment sets GOMEMLIMIT to 80-90% of its memory limit, so that
// the garbage collector works harder before the OOM killer acts.
func TestApproverManifestMemoryLimit(t *testing.T) {
	for _, m := range readManifests(t, "../../deploy/approver") {
		if m.obj.GetKind() != "Deployment" {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(m.obj.Object, "spec", "template", "spec", "containers")
		for _, c := range containers {
			c := c.(map[string]any)
			limit, _, _ := unstructured.NestedString(c, "resources", "limits", "memory")
			env, _, _ := unstructured.NestedSlice(c, "env")
			soft := ""
			for _, e := range env {
				if e := e.(map[string]any); e["name"] == "GOMEMLIMIT" {
					soft, _ = e["value"].(string)
				}
			}
			if limit == "" || soft == "" {
				t.Fatalf("%s: container %v has memory limit %q and GOMEMLIMIT %q: want both", m.file, c["name"], limit, soft)
			}
			l := resource.MustParse(limit)
			s, err := resource.ParseQuantity(strings.TrimSuffix(soft, "B")) // Go writes MiB, Kubernetes Mi
			if err != nil {
				t.Fatalf("%s: GOMEMLIMIT %q: %v", m.file, soft, err)
			}
			if r := float64(s.Value()) / float64(l.Value()); r < 0.8 || r > 0.9 {
				t.Errorf("%s: GOMEMLIMIT %s is %.0f%% of the memory limit %s, want 80-90%%", m.file, soft, 100*r, limit)
			}
		}
	}
}
