package approver

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/tlsboot/tlsboot/approval"
	"github.com/tlsboot/tlsboot/csr"
)

func TestCanonicalAddress(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1":           "10.0.0.1",
		"::ffff:10.0.0.1":    "10.0.0.1",
		"::FFFF:0a00:0001":   "10.0.0.1",
		"fe80::1%eth0":       "fe80::1",
		"2001:DB8:0:0::1":    "2001:db8::1",
		"Node-1.Example.COM": "node-1.example.com",
		"node-1.example.":    "node-1.example",
		"010.0.0.1":          "010.0.0.1", // not an IP for netip: a (bad) name
	} {
		if got := CanonicalAddress(in); got != want {
			t.Errorf("CanonicalAddress(%q) = %q, want %q", in, got, want)
		}
	}
}

func node(name string, addrs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, a := range addrs {
		typ := corev1.NodeInternalIP
		if _, err := netip.ParseAddr(a); err != nil {
			typ = corev1.NodeHostName
		}
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: typ, Address: a})
	}
	return n
}

// servesServiceCIDRs makes the fake discovery list networking.k8s.io/v1
// servicecidrs, as a 1.33+ API server does.
func servesServiceCIDRs(client *fake.Clientset) {
	client.Discovery().(*fakediscovery.FakeDiscovery).Resources = []*metav1.APIResourceList{{
		GroupVersion: networkingv1.SchemeGroupVersion.String(),
		APIResources: []metav1.APIResource{{Name: "servicecidrs", Kind: "ServiceCIDR"}},
	}}
}

// startCaches builds a controller on client and starts only its informers.
func startCaches(t *testing.T, client *fake.Clientset, policy approval.Options) *Controller {
	t.Helper()
	p, err := approval.New(policy)
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := New(Options{Client: client, Policy: p, Recorder: record.NewFakeRecorder(100)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	if err := ctrl.watchServiceCIDRs(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range ctrl.starts {
		s(ctx.Done())
	}
	waitSynced(t, ctrl)
	markServingRead(ctrl) // apiserver_sans_test.go
	return ctrl
}

// The cluster view reads the ServiceCIDRs, the kubernetes Service's
// ClusterIPs, its EndpointSlices (not another Service's) and the Nodes by
// canonical address, IPv4-mapped forms included.
func TestClusterView(t *testing.T) {
	client := fake.NewClientset(
		&networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.96.0.0/12", "fd00:10:96::/112"}}},
		&networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "mapped"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"::ffff:10.200.0.0/112"}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.1", ClusterIPs: []string{"10.96.0.1", "fd00:10:96::1"}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "default"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.99"}},
		&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes"}},
			AddressType: discoveryv1.AddressTypeIPv4, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"192.168.1.10"}}, {Addresses: []string{"::ffff:192.168.1.11"}}}},
		&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "other-x", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "other"}},
			AddressType: discoveryv1.AddressTypeIPv4, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"192.168.1.99"}}}},
		node("a", "10.0.0.1", "A.Example.", "fd00::1"),
		node("b", "::ffff:10.0.0.1", "b.example"),
		node("c", "10.0.0.3"),
	)
	servesServiceCIDRs(client)
	view := startCaches(t, client, approval.Options{}).cluster

	gotCIDRs := view.ServiceCIDRs()
	wantCIDRs := []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("fd00:10:96::/112"), netip.MustParsePrefix("10.200.0.0/16")}
	for _, w := range wantCIDRs {
		if !slices.Contains(gotCIDRs, w) {
			t.Errorf("ServiceCIDRs() = %v, want %v among them", gotCIDRs, w)
		}
	}
	if len(gotCIDRs) != len(wantCIDRs) {
		t.Errorf("ServiceCIDRs() = %v, want %v", gotCIDRs, wantCIDRs)
	}

	var gotAPI []string
	for _, a := range view.APIServerAddresses() {
		gotAPI = append(gotAPI, a.String())
	}
	slices.Sort(gotAPI)
	gotAPI = slices.Compact(gotAPI)
	if want := []string{"10.96.0.1", "192.168.1.10", "192.168.1.11", "fd00:10:96::1"}; !slices.Equal(gotAPI, want) {
		t.Errorf("APIServerAddresses() = %v, want %v", gotAPI, want)
	}

	for addr, want := range map[string][]string{
		"10.0.0.1":    {"a", "b"},
		"a.example":   {"a"},
		"b.example":   {"b"},
		"fd00::1":     {"a"},
		"10.0.0.3":    {"c"},
		"10.0.0.4":    {},
		"A.Example.":  {}, // callers pass canonical addresses
		"not.a.node.": {},
	} {
		if got := view.NodesWithAddress(addr); !slices.Equal(got, want) {
			t.Errorf("NodesWithAddress(%q) = %v, want %v", addr, got, want)
		}
	}
}

// Without the ServiceCIDR API the controller still syncs and decides.
func TestNoServiceCIDRAPI(t *testing.T) {
	view := startCaches(t, fake.NewClientset(), approval.Options{}).cluster
	if got := view.ServiceCIDRs(); got != nil {
		t.Errorf("ServiceCIDRs() = %v without the API, want none", got)
	}
	if got := view.APIServerAddresses(); got != nil {
		t.Errorf("APIServerAddresses() = %v without a kubernetes Service, want none", got)
	}
}

// Every new informer is restricted as RBAC in deploy/approver/ expects:
// leases in kube-node-lease, the kubernetes Service by name, its
// EndpointSlices by label, in default.
func TestInformerScopes(t *testing.T) {
	client := fake.NewClientset()
	servesServiceCIDRs(client)
	startCaches(t, client, approval.Options{})
	seen := map[string][]string{}
	for _, a := range client.Actions() {
		l, ok := a.(k8stesting.ListAction)
		if !ok {
			continue
		}
		r := a.GetResource().Resource
		restr := l.GetListRestrictions()
		seen[r] = append(seen[r], a.GetNamespace()+"|"+restr.Fields.String()+"|"+restr.Labels.String())
	}
	for r, want := range map[string][]string{
		"leases": {"kube-node-lease||"},
		// The kubernetes Service, and every Service for the addresses it
		// reserves (reserved.go).
		"services":       {"default|metadata.name=kubernetes|", "||"},
		"endpointslices": {"default||kubernetes.io/service-name=kubernetes"},
		"servicecidrs":   {"||"},
		"nodes":          {"||"},
		"configmaps":     {"kube-public|metadata.name=cluster-info|"},
	} {
		got := slices.Sorted(slices.Values(seen[r]))
		if slices.Sort(want); !slices.Equal(got, want) {
			t.Errorf("lists of %s: namespace|fields|labels %q, want %q", r, got, want)
		}
	}
}

// The policy gets the Node and its Lease for client CSRs too (the
// live-node check), read from the caches.
func TestInputHasNodeAndLease(t *testing.T) {
	renewed := metav1.NewMicroTime(time.Now())
	client := fake.NewClientset(node("n1", "10.0.0.1"),
		&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "n1", Namespace: "kube-node-lease"}, Spec: coordinationv1.LeaseSpec{RenewTime: &renewed, HolderIdentity: ptrTo("n1")}})
	ctrl := startCaches(t, client, approval.Options{})
	obj := newCSR(t, "n1", csr.Request{}, "system:bootstrap:abcdef", bootstrapUser)
	in, err := ctrl.input(obj)
	if err != nil {
		t.Fatal(err)
	}
	if in.Node == nil || in.Node.Name != "n1" {
		t.Errorf("input Node = %v, want n1", in.Node)
	}
	if in.NodeLease == nil || in.NodeLease.Spec.RenewTime == nil || !in.NodeLease.Spec.RenewTime.Equal(&renewed) {
		t.Errorf("input NodeLease = %+v, want n1's with its renew time", in.NodeLease)
	}
	if in.NodeLease != nil && in.NodeLease.Spec.HolderIdentity != nil {
		t.Errorf("cached Lease keeps its holder identity, want only the renew time")
	}
	if in.Cluster == nil || in.DroppedRequestBytes != 0 {
		t.Errorf("input Cluster = %v, DroppedRequestBytes = %d; want a view and 0", in.Cluster, in.DroppedRequestBytes)
	}
}

func ptrTo[T any](v T) *T { return &v }

// transformCSR keeps what the policy reads, drops metadata and an oversized
// request (remembering its size), and is idempotent.
func TestTransformCSR(t *testing.T) {
	good := newCSR(t, "good", csr.Request{}, "system:bootstrap:abcdef", bootstrapUser)
	good.UID, good.ResourceVersion = "u1", "7"
	good.Annotations = map[string]string{"big": strings.Repeat("x", 100000), droppedRequestAnnotation: "999999"}
	good.Labels = map[string]string{"a": "b"}
	good.Finalizers = []string{"example.com/f"}
	good.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	good.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Message: strings.Repeat("é", 5000)}}
	out, err := transformCSR(good.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*certificatesv1.CertificateSigningRequest)
	if got.Name != "good" || got.UID != "u1" || got.ResourceVersion != "7" || !got.CreationTimestamp.Equal(&good.CreationTimestamp) {
		t.Errorf("identity lost: %+v", got.ObjectMeta)
	}
	if got.Annotations != nil || got.Labels != nil || got.Finalizers != nil || got.ManagedFields != nil {
		t.Errorf("metadata kept: %+v", got.ObjectMeta)
	}
	// Approved: the request is dropped (TestTransformDecidedCSR), the rest kept.
	if got.Spec.Request != nil || got.Spec.Username != good.Spec.Username || !slices.Equal(got.Spec.Groups, good.Spec.Groups) {
		t.Errorf("approved CSR: kept a request of %d bytes (want none), requester %q in %q (want %q in %q)", len(got.Spec.Request), got.Spec.Username, got.Spec.Groups, good.Spec.Username, good.Spec.Groups)
	}
	if DroppedRequestBytes(got) != 0 {
		t.Errorf("a requester's annotation counts as a dropped request: %d", DroppedRequestBytes(got))
	}
	if m := got.Status.Conditions[0].Message; len(m) > approval.MaxEchoBytes || !strings.HasSuffix(m, "(truncated)") || got.Status.Conditions[0].Type != certificatesv1.CertificateApproved {
		t.Errorf("condition %s with a message of %d bytes, want Approved, at most %d", got.Status.Conditions[0].Type, len(m), approval.MaxEchoBytes)
	}
	if len(good.Status.Conditions[0].Message) != 10000 || len(good.Annotations) != 2 {
		t.Error("the transform changed its input")
	}

	big := good.DeepCopy()
	big.Spec.Request = bytes.Repeat([]byte("A"), approval.MaxRequestBytes+1)
	out, _ = transformCSR(big)
	got = out.(*certificatesv1.CertificateSigningRequest)
	if got.Spec.Request != nil || DroppedRequestBytes(got) != approval.MaxRequestBytes+1 {
		t.Errorf("oversized request: kept %d bytes, DroppedRequestBytes %d; want dropped, %d", len(got.Spec.Request), DroppedRequestBytes(got), approval.MaxRequestBytes+1)
	}
	again, _ := transformCSR(got)
	if DroppedRequestBytes(again.(*certificatesv1.CertificateSigningRequest)) != approval.MaxRequestBytes+1 {
		t.Error("transforming twice forgot the dropped size")
	}

	// Denied and failed CSRs keep no request: nothing reads it again.
	for _, typ := range []certificatesv1.RequestConditionType{certificatesv1.CertificateDenied, certificatesv1.CertificateFailed} {
		done := good.DeepCopy()
		done.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: typ, Status: corev1.ConditionTrue}}
		out, _ = transformCSR(done)
		if got := out.(*certificatesv1.CertificateSigningRequest); got.Spec.Request != nil || got.Status.Conditions[0].Type != typ || got.Spec.Username != good.Spec.Username {
			t.Errorf("%s CSR: kept a request of %d bytes (or lost its condition or requester)", typ, len(got.Spec.Request))
		}
	}

	limit := good.DeepCopy()
	limit.Status.Conditions = nil // pending
	limit.Spec.Request = bytes.Repeat([]byte("A"), approval.MaxRequestBytes)
	out, _ = transformCSR(limit)
	if got := out.(*certificatesv1.CertificateSigningRequest); len(got.Spec.Request) != approval.MaxRequestBytes {
		t.Errorf("a request of exactly the limit was dropped")
	}
}

// transformNode keeps the identity, at most 64 sane addresses and the
// Ready condition; nothing else a node writes about itself.
func TestTransformNode(t *testing.T) {
	n := node("n1")
	n.UID, n.ResourceVersion = "u", "9"
	n.Labels = map[string]string{"a": "b"}
	for i := range 100 {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}).String()})
	}
	n.Status.Addresses = append([]corev1.NodeAddress{{Type: corev1.NodeHostName, Address: strings.Repeat("a", 300)}}, n.Status.Addresses...)
	hb := metav1.NewTime(time.Now())
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse}, {Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: hb, Message: strings.Repeat("m", 1000)}}
	n.Status.Images = []corev1.ContainerImage{{Names: []string{"x"}, SizeBytes: 1}}
	n.Status.VolumesInUse = []corev1.UniqueVolumeName{"v"}
	n.Spec.PodCIDR = "10.244.0.0/24"
	out, _ := transformNode(n)
	got := out.(*corev1.Node)
	if got.Name != "n1" || got.UID != "u" || got.ResourceVersion != "9" || got.Labels != nil {
		t.Errorf("metadata %+v, want the identity only", got.ObjectMeta)
	}
	if len(got.Status.Addresses) != maxNodeAddresses || got.Status.Addresses[0].Address != "10.0.0.0" {
		t.Errorf("%d addresses starting %v, want the first %d sane ones", len(got.Status.Addresses), got.Status.Addresses[0], maxNodeAddresses)
	}
	if len(got.Status.Conditions) != 1 || got.Status.Conditions[0].Type != corev1.NodeReady || !got.Status.Conditions[0].LastHeartbeatTime.Equal(&hb) || got.Status.Conditions[0].Message != "" {
		t.Errorf("conditions %+v, want Ready with its heartbeat only", got.Status.Conditions)
	}
	if got.Status.Images != nil || got.Status.VolumesInUse != nil || got.Spec.PodCIDR != "" {
		t.Errorf("kept what the approver does not read: %+v", got)
	}
}

// Services, EndpointSlices, Leases and ServiceCIDRs keep only what the
// view reads.
func TestTransformOthers(t *testing.T) {
	mf := []metav1.ManagedFieldsEntry{{Manager: "x"}}
	ann := map[string]string{"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 1000)}
	for _, tc := range []struct {
		in        runtime.Object
		transform func(any) (any, error)
	}{
		{&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default", ManagedFields: mf, Annotations: ann}, Spec: corev1.ServiceSpec{ClusterIPs: []string{"10.0.0.1"}}}, transformService},
		{&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default", ManagedFields: mf, Annotations: ann, Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes", "x": "y"}}}, transformEndpointSlice},
		{&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "n1", Namespace: "kube-node-lease", ManagedFields: mf, Annotations: ann}}, transformLease},
		{&networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", ManagedFields: mf, Annotations: ann}}, transformServiceCIDR},
	} {
		out, err := tc.transform(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		m := out.(metav1.Object)
		if m.GetManagedFields() != nil || m.GetAnnotations() != nil || m.GetName() == "" {
			t.Errorf("%T: metadata %v %v, want the identity only", out, m.GetManagedFields(), m.GetAnnotations())
		}
		if tc.in.(metav1.Object).GetNamespace() != m.GetNamespace() {
			t.Errorf("%T: namespace lost", out)
		}
	}
	// Not the type the informer holds (a tombstone): passed through.
	tomb := "not an object"
	if out, _ := transformNode(tomb); out != tomb {
		t.Error("transformNode changed a value of another type")
	}
}

// A decision that leaves a CSR pending with Notify records exactly one
// Event, with the hint, however often the CSR is looked at; the CSR is
// never written.
func TestNotifyOnce(t *testing.T) {
	priv, _ := csr.GenerateKey(csr.ECDSAP256)
	obj := newCSR(t, "serving", csr.NodeServing("n1", priv.Public(), nil, []net.IP{net.ParseIP("10.0.0.1")}), "system:node:n1", []string{"system:nodes"})
	obj.UID = "uid-1"
	client := fake.NewClientset(obj, node("n1", "10.0.0.1"))
	recorder := record.NewFakeRecorder(10)
	policy, _ := approval.New(approval.Options{}) // no serving scope
	ctrl, err := New(Options{Client: client, Policy: policy, Recorder: recorder,
		Hint: func(reason string) string {
			if reason == approval.ReasonNoServingScope {
				return "set --allowed-ip-cidrs"
			}
			return ""
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for _, s := range ctrl.starts {
		s(ctx.Done())
	}
	waitSynced(t, ctrl)
	markServingRead(ctrl) // apiserver_sans_test.go
	ctrl.recorder = recorder
	k := key{certificatesv1.KubeletServingSignerName, "serving"}
	for range 3 {
		if retry, err := ctrl.sync(ctx, k); retry || err != nil {
			t.Fatalf("sync = %v, %v; want done (left pending)", retry, err)
		}
	}
	if n := len(recorder.Events); n != 1 {
		t.Fatalf("%d Events, want exactly 1", n)
	}
	ev := <-recorder.Events
	if !strings.HasPrefix(ev, "Warning "+approval.ReasonNoServingScope+" ") || !strings.HasSuffix(ev, ". set --allowed-ip-cidrs") {
		t.Errorf("Event %q, want a warning %s ending with the hint", ev, approval.ReasonNoServingScope)
	}
	for _, a := range client.Actions() {
		if a.GetVerb() == "patch" || a.GetVerb() == "update" {
			t.Errorf("a pending CSR was written: %v", a)
		}
	}
	// Forgotten when the CSR is decided or deleted: the set stays bounded.
	if ctrl.notified.len() != 1 {
		t.Fatalf("notified set holds %d CSRs, want 1", ctrl.notified.len())
	}
	ctrl.notified.forget(types.UID("uid-1"))
	if ctrl.notified.len() != 0 {
		t.Error("forget left the CSR in the notified set")
	}
}

func TestNotifiedSetIsBounded(t *testing.T) {
	var s notifiedSet
	for i := range maxNotified {
		if !s.add(types.UID(strconv.Itoa(i))) {
			t.Fatalf("add %d refused before the bound", i)
		}
	}
	if s.add("one-more") {
		t.Error("the set grew past its bound")
	}
	if s.add(types.UID("0")) {
		t.Error("a CSR was notified twice")
	}
}

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		in string
		n  int
	}{{"short", 10}, {strings.Repeat("x", 100), 50}, {strings.Repeat("é", 100), 51}, {strings.Repeat("é", 100), 3}} {
		got := truncate(tc.in, tc.n)
		if (len(got) > tc.n && tc.n > 20) || (len(tc.in) > tc.n && !strings.HasSuffix(got, "(truncated)")) || !utf8.ValidString(got) {
			t.Errorf("truncate(%d bytes, %d) = %q", len(tc.in), tc.n, got)
		}
	}
}

// A list reads pages of listPageSize from the first page's snapshot (never
// at resourceVersion "0", which ignores the limit) and returns the CSRs
// transformed.
func TestListCSRsInPages(t *testing.T) {
	var objs []runtime.Object
	for i := range 2*listPageSize + 3 {
		o := newCSR(t, "c"+strconv.Itoa(i), csr.Request{}, "system:bootstrap:abcdef", bootstrapUser)
		o.Annotations = map[string]string{"a": "b"}
		if i%2 == 0 {
			o.Spec.Request = bytes.Repeat([]byte("A"), approval.MaxRequestBytes+1)
		}
		objs = append(objs, o)
	}
	client := fake.NewClientset()
	var calls []metav1.ListOptions
	client.PrependReactor("list", "certificatesigningrequests", func(a k8stesting.Action) (bool, runtime.Object, error) {
		opts := metav1.ListOptions{Limit: a.(k8stesting.ListActionImpl).ListOptions.Limit, Continue: a.(k8stesting.ListActionImpl).ListOptions.Continue,
			ResourceVersion: a.(k8stesting.ListActionImpl).ListOptions.ResourceVersion}
		calls = append(calls, opts)
		start, _ := strconv.Atoi(opts.Continue)
		end := min(start+int(opts.Limit), len(objs))
		page := &certificatesv1.CertificateSigningRequestList{ListMeta: metav1.ListMeta{ResourceVersion: "42"}}
		for _, o := range objs[start:end] {
			page.Items = append(page.Items, *o.(*certificatesv1.CertificateSigningRequest).DeepCopy())
		}
		if end < len(objs) {
			page.Continue = strconv.Itoa(end)
		}
		return true, page, nil
	})
	out, err := listCSRs(t.Context(), client.CertificatesV1().CertificateSigningRequests(), metav1.ListOptions{ResourceVersion: "0", Limit: 500}, transformCSR)
	if err != nil {
		t.Fatal(err)
	}
	list := out.(*certificatesv1.CertificateSigningRequestList)
	if len(list.Items) != len(objs) || list.ResourceVersion != "42" {
		t.Fatalf("%d CSRs at resourceVersion %q, want %d at 42", len(list.Items), list.ResourceVersion, len(objs))
	}
	for i, item := range list.Items {
		if item.Annotations[droppedRequestAnnotation] == "" && item.Annotations != nil || (i%2 == 0) != (DroppedRequestBytes(&item) > 0) {
			t.Errorf("CSR %s not transformed: annotations %v, dropped %d", item.Name, item.Annotations, DroppedRequestBytes(&item))
		}
	}
	if len(calls) != 3 {
		t.Fatalf("%d list calls, want 3 pages", len(calls))
	}
	for i, c := range calls {
		if c.Limit != listPageSize || c.ResourceVersion != "" || (i > 0) != (c.Continue != "") {
			t.Errorf("list call %d: %+v, want limit %d, no resourceVersion, a continue token after the first", i, c, listPageSize)
		}
	}
}

// An oversized CSR is cached without its request and denied by name with a
// short message giving its size; the decision write is a JSON patch of the
// approval subresource that carries only the resourceVersion and the new
// condition, never the trimmed cached copy.
func TestOversizedRequestDeniedByPatch(t *testing.T) {
	obj := newCSR(t, "big", csr.Request{}, "system:bootstrap:abcdef", bootstrapUser)
	obj.Spec.Request = append(obj.Spec.Request, bytes.Repeat([]byte("\n"), approval.MaxRequestBytes)...)
	obj.Annotations = map[string]string{"keep": "me"}
	size := len(obj.Spec.Request)
	client := fake.NewClientset()
	allowSARs(client, true, nil)
	h := start(t, client, nil)
	h.create(t, obj)
	cond := h.waitCondition(t, "big", certificatesv1.CertificateDenied)
	if cond.Reason != approval.ReasonRequestTooLarge || !strings.Contains(cond.Message, strconv.Itoa(size)) || len(cond.Message) > 2*approval.MaxEchoBytes {
		t.Errorf("condition %s %q, want %s with a short message giving the size %d", cond.Reason, cond.Message, approval.ReasonRequestTooLarge, size)
	}
	got, _ := client.CertificatesV1().CertificateSigningRequests().Get(t.Context(), "big", metav1.GetOptions{})
	if len(got.Spec.Request) != size || got.Annotations["keep"] != "me" || got.Annotations[droppedRequestAnnotation] != "" {
		t.Errorf("the decision wrote back the cached copy: request %d bytes, annotations %v", len(got.Spec.Request), got.Annotations)
	}
	for _, a := range client.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok {
			if a.GetSubresource() != "approval" || p.GetPatchType() != types.JSONPatchType || bytes.Contains(p.GetPatch(), []byte(`/spec`)) || bytes.Contains(p.GetPatch(), []byte(`/metadata/annotations`)) || bytes.Count(p.GetPatch(), []byte(`"op"`)) != 2 {
				t.Errorf("decision write %s/%s %s %s, want a JSON patch of approval with the condition only", a.GetResource().Resource, a.GetSubresource(), p.GetPatchType(), p.GetPatch())
			}
		}
		if a.GetVerb() == "update" {
			t.Errorf("the approver updated %s/%s, want a patch", a.GetResource().Resource, a.GetSubresource())
		}
	}
}

func TestApprovalPatch(t *testing.T) {
	cond := certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "R"}
	obj := &certificatesv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{Name: "x", ResourceVersion: "12"}}
	p, _ := approvalPatch(obj, cond)
	if want := `[{"op":"replace","path":"/metadata/resourceVersion","value":"12"},{"op":"add","path":"/status/conditions","value":[{"type":"Approved","status":"True","reason":"R","lastUpdateTime":null,"lastTransitionTime":null}]}]`; string(p) != want {
		t.Errorf("patch without conditions:\n%s\nwant\n%s", p, want)
	}
	obj.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: "Failed"}}
	p, _ = approvalPatch(obj, cond)
	if !strings.Contains(string(p), `{"op":"add","path":"/status/conditions/-","value":{"type":"Approved"`) {
		t.Errorf("patch with a condition: %s, want an append", p)
	}
}
