package approver

import (
	"context"
	"strconv"
	"time"
	"unicode/utf8"

	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	certclient "k8s.io/client-go/kubernetes/typed/certificates/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/tlsboot/tlsboot/approval"
)

// The informers keep only what the controller reads (cache.TransformFunc),
// so that what a requester or a node writes cannot grow the approver's
// memory: a CSR's metadata is the requester's, a Node's status is the
// node's own. client-go may call a transform twice on the same object (the
// watch-list path transforms into a temporary store, then again on
// Replace), so each is idempotent.
//
// What the controller writes is never derived from these copies beyond the
// name and resourceVersion: the decision is a JSON patch that appends one
// condition (see apply), so nothing stripped here is ever written back.

const (
	// droppedRequestAnnotation carries, on the cached copy of a CSR only,
	// the size of the spec.request the transform dropped for being larger
	// than approval.MaxRequestBytes. The transform first removes every
	// annotation the object came with, so a requester cannot set it; the
	// API server never stores a CSR with an empty spec.request, so an
	// empty request with this annotation is always our own doing.
	droppedRequestAnnotation = "tlsboot.io/dropped-request-bytes"
	// maxNodeAddresses bounds the addresses kept per Node; addresses longer
	// than maxAddressLen (the longest DNS name) are neither IPs nor DNS
	// names and are not kept.
	maxNodeAddresses = 64
	maxAddressLen    = 253
)

// minimalMeta keeps the identity of an object and nothing a writer of it
// could grow: no labels, annotations, owners, finalizers, managedFields.
func minimalMeta(m *metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Generation: m.Generation, CreationTimestamp: m.CreationTimestamp, DeletionTimestamp: m.DeletionTimestamp,
	}
}

// transformCSR drops the metadata of a CSR, the request when it is over
// approval.MaxRequestBytes (remembering its size in
// droppedRequestAnnotation) or when the CSR is denied or failed (nothing
// reads it then: decided CSRs are not decided again, and the bound-token
// index skips them; so a requester's denied CSRs cost the cache no more
// than their names), and bounds the condition messages (only whether a
// condition exists is read).
func transformCSR(obj any) (any, error) {
	in, ok := obj.(*certificatesv1.CertificateSigningRequest)
	if !ok {
		return obj, nil
	}
	out := &certificatesv1.CertificateSigningRequest{
		TypeMeta:   in.TypeMeta,
		ObjectMeta: minimalMeta(&in.ObjectMeta),
		Spec:       in.Spec,
		Status:     certificatesv1.CertificateSigningRequestStatus{Certificate: in.Status.Certificate},
	}
	dropped := DroppedRequestBytes(in) // already transformed: keep the size
	if n := len(in.Spec.Request); n > approval.MaxRequestBytes {
		dropped = n
		out.Spec.Request = nil
	}
	if deniedOrFailed(in) {
		out.Spec.Request = nil
	}
	if dropped > 0 {
		out.Annotations = map[string]string{droppedRequestAnnotation: strconv.Itoa(dropped)}
	}
	if len(in.Status.Conditions) > 0 {
		out.Status.Conditions = make([]certificatesv1.CertificateSigningRequestCondition, len(in.Status.Conditions))
		for i, c := range in.Status.Conditions {
			c.Message = truncate(c.Message, approval.MaxEchoBytes)
			c.Reason = truncate(c.Reason, 128)
			out.Status.Conditions[i] = c
		}
	}
	return out, nil
}

// DroppedRequestBytes returns the size of the spec.request the cache
// dropped from csr, or 0 if it was kept.
func DroppedRequestBytes(csr *certificatesv1.CertificateSigningRequest) int {
	if len(csr.Spec.Request) > 0 {
		return 0
	}
	n, err := strconv.Atoi(csr.Annotations[droppedRequestAnnotation])
	if err != nil || n <= approval.MaxRequestBytes {
		return 0
	}
	return n
}

// transformNode keeps a Node's identity, its first maxNodeAddresses
// addresses, and its Ready condition (the heartbeat when there is no
// Lease). A node writes its own status: images, volumes, capacity and
// other conditions are not cached.
func transformNode(obj any) (any, error) {
	in, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	out := &corev1.Node{TypeMeta: in.TypeMeta, ObjectMeta: minimalMeta(&in.ObjectMeta)}
	for _, a := range in.Status.Addresses {
		if len(out.Status.Addresses) == maxNodeAddresses {
			break
		}
		if len(a.Address) <= maxAddressLen && len(a.Type) <= maxAddressLen {
			out.Status.Addresses = append(out.Status.Addresses, a)
		}
	}
	for _, c := range in.Status.Conditions {
		if c.Type == corev1.NodeReady {
			out.Status.Conditions = []corev1.NodeCondition{{Type: c.Type, Status: c.Status,
				LastHeartbeatTime: c.LastHeartbeatTime, LastTransitionTime: c.LastTransitionTime}}
			break
		}
	}
	return out, nil
}

// transformLease keeps a node Lease's identity and renew time.
func transformLease(obj any) (any, error) {
	in, ok := obj.(*coordinationv1.Lease)
	if !ok {
		return obj, nil
	}
	return &coordinationv1.Lease{TypeMeta: in.TypeMeta, ObjectMeta: minimalMeta(&in.ObjectMeta),
		Spec: coordinationv1.LeaseSpec{RenewTime: in.Spec.RenewTime, AcquireTime: in.Spec.AcquireTime, LeaseDurationSeconds: in.Spec.LeaseDurationSeconds}}, nil
}

// transformService keeps the ClusterIPs of a Service.
func transformService(obj any) (any, error) {
	in, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	return &corev1.Service{TypeMeta: in.TypeMeta, ObjectMeta: minimalMeta(&in.ObjectMeta),
		Spec: corev1.ServiceSpec{ClusterIP: in.Spec.ClusterIP, ClusterIPs: in.Spec.ClusterIPs}}, nil
}

// transformEndpointSlice keeps the service-name label and the endpoint
// addresses of an EndpointSlice.
func transformEndpointSlice(obj any) (any, error) {
	in, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	out := &discoveryv1.EndpointSlice{TypeMeta: in.TypeMeta, ObjectMeta: minimalMeta(&in.ObjectMeta), AddressType: in.AddressType}
	if svc, ok := in.Labels[discoveryv1.LabelServiceName]; ok {
		out.Labels = map[string]string{discoveryv1.LabelServiceName: svc}
	}
	for _, ep := range in.Endpoints {
		out.Endpoints = append(out.Endpoints, discoveryv1.Endpoint{Addresses: ep.Addresses})
	}
	return out, nil
}

// transformServiceCIDR keeps the prefixes of a ServiceCIDR.
func transformServiceCIDR(obj any) (any, error) {
	in, ok := obj.(*networkingv1.ServiceCIDR)
	if !ok {
		return obj, nil
	}
	return &networkingv1.ServiceCIDR{TypeMeta: in.TypeMeta, ObjectMeta: minimalMeta(&in.ObjectMeta),
		Spec: networkingv1.ServiceCIDRSpec{CIDRs: in.Spec.CIDRs}}, nil
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…(truncated)"
	cut := max(n-len(mark), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// listPageSize is how many CSRs a list reads at a time (see listCSRs).
const listPageSize = 10

// newCSRInformer is client-go's CSR informer for one signer, except that a
// list reads listPageSize CSRs at a time and transforms each page before
// reading the next (listCSRs).
func newCSRInformer(client kubernetes.Interface, selector string, resync time.Duration) cache.SharedIndexInformer {
	csrs := client.CertificatesV1().CertificateSigningRequests()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.FieldSelector = selector
			return listCSRs(ctx, csrs, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = selector
			return csrs.Watch(ctx, opts)
		},
	}
	return cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, client),
		&certificatesv1.CertificateSigningRequest{},
		cache.SharedIndexInformerOptions{ResyncPeriod: resync, Indexers: cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}})
}

// listCSRs lists CSRs in pages of listPageSize and transforms each page
// before reading the next, so that a list holds at most one page of full
// objects.
//
// Why: the informer transforms objects only once the whole list is in
// memory. client-go streams the initial state instead (watch-list) where
// the API server supports it, transforming object by object; but when it
// falls back to a list, 100 CSRs of 1 MiB cost the approver over 400 MiB.
// A list at resourceVersion "0" is served whole from the API server's watch
// cache whatever the limit, so a paged list reads the latest state instead.
func listCSRs(ctx context.Context, csrs certclient.CertificateSigningRequestInterface, opts metav1.ListOptions) (runtime.Object, error) {
	opts.Limit, opts.Continue = listPageSize, ""
	if opts.ResourceVersion == "0" {
		opts.ResourceVersion, opts.ResourceVersionMatch = "", ""
	}
	out := &certificatesv1.CertificateSigningRequestList{}
	for {
		page, err := csrs.List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for i := range page.Items {
			t, _ := transformCSR(&page.Items[i])
			out.Items = append(out.Items, *t.(*certificatesv1.CertificateSigningRequest))
		}
		out.ResourceVersion = page.ResourceVersion // the same on every page
		if page.Continue == "" {
			return out, nil
		}
		// Later pages come from the first page's snapshot.
		opts.Continue, opts.ResourceVersion, opts.ResourceVersionMatch = page.Continue, "", ""
	}
}
