package approver

import (
	"context"
	"strconv"
	"sync"
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

// overBudgetAnnotation marks, on the cached copy of a pending CSR only, a
// spec.request the transform dropped because its requester's pending
// requests already held approval.MaxPendingBytesPerRequester (see
// pendingBudget). Like droppedRequestAnnotation it is ours: the transform
// removes every annotation the CSR came with.
const overBudgetAnnotation = "tlsboot.io/dropped-over-pending-budget"

// transformCSR is the CSR transform without a pending budget (each
// pending request up to approval.MaxRequestBytes is kept).
func transformCSR(obj any) (any, error) { return (*pendingBudget)(nil).transformCSR(obj) }

// transformCSR drops the metadata of a CSR; its request when it is over
// approval.MaxRequestBytes (remembering its size in
// droppedRequestAnnotation) or over the requester's pending budget b
// (overBudgetAnnotation); and, once the CSR is decided, its request and
// certificate. Nothing reads them then: decided CSRs are not decided
// again, and the one-key check of a bound requester (approval's
// checkOneKeyPerToken) reads the PublicKeyHashAnnotation kept instead, set
// here for an approved CSR of a bound requester. So a flood of CSRs, approved
// or denied, costs the cache no more than their names, requesters and
// conditions. Condition messages are bounded (only whether a condition
// exists is read).
func (b *pendingBudget) transformCSR(obj any) (any, error) {
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
	annotations := map[string]string{}
	dropped := DroppedRequestBytes(in) // already transformed: keep the size
	if n := len(in.Spec.Request); n > approval.MaxRequestBytes {
		dropped = n
		out.Spec.Request = nil
	}
	if dropped > 0 {
		annotations[droppedRequestAnnotation] = strconv.Itoa(dropped)
	}
	switch {
	case decidedByCondition(in):
		b.release(in)
		// Kept only by a cache that saw the request (or by our own copy).
		if h := keyHash(in); h != "" && hasBindingGroup(in.Spec.Groups) && !deniedOrFailed(in) {
			annotations[approval.PublicKeyHashAnnotation] = h
		}
		out.Spec.Request, out.Status.Certificate = nil, nil
	case len(in.Status.Certificate) > 0:
		// A certificate without a decision condition: the API server
		// lets only a signer write it, after approval. Kept, so that the
		// CSR stays decided (approval.Decided reads it).
		b.release(in)
		out.Spec.Request = nil
	case len(out.Spec.Request) > 0 && !b.keep(in):
		out.Spec.Request = nil
		annotations[overBudgetAnnotation] = "true"
	case len(in.Spec.Request) == 0 && in.Annotations[overBudgetAnnotation] == "true":
		annotations[overBudgetAnnotation] = "true" // already transformed
	}
	if len(annotations) > 0 {
		out.Annotations = annotations
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

// keyHash is the hash of in's public key: computed from its request, or,
// for a copy already transformed (no request), the one kept.
func keyHash(in *certificatesv1.CertificateSigningRequest) string {
	if len(in.Spec.Request) == 0 {
		return in.Annotations[approval.PublicKeyHashAnnotation]
	}
	return approval.PublicKeyHash(in.Spec.Request)
}

// decidedByCondition: csr carries an Approved, Denied or Failed condition.
func decidedByCondition(csr *certificatesv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		switch c.Type {
		case certificatesv1.CertificateApproved, certificatesv1.CertificateDenied, certificatesv1.CertificateFailed:
			return true
		}
	}
	return false
}

// DroppedRequestBytes returns the size of the spec.request the cache
// dropped from csr for being over approval.MaxRequestBytes, or 0 if it
// was not dropped for that.
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

// OverPendingBudget reports whether the cache dropped csr's pending
// request for its requester's pending budget (see pendingBudget).
func OverPendingBudget(csr *certificatesv1.CertificateSigningRequest) bool {
	return len(csr.Spec.Request) == 0 && csr.Annotations[overBudgetAnnotation] == "true"
}

// pendingBudget bounds the spec.request bytes the CSR cache keeps for the
// pending CSRs of each requester (spec.username) to limit bytes
// (approval.MaxPendingBytesPerRequester): past it, the transform drops the
// request of a new pending CSR, which is then denied unread
// (PendingBytesExceeded). A nil *pendingBudget keeps every request.
//
// It counts by UID what the cache keeps: a CSR is counted once however
// often it is transformed (client-go transforms again on a relist), and
// released when it is decided (transformCSR) or deleted (the informer's
// delete handler, attach). Decided CSRs keep no request, so only pending
// ones count: a burst that is decided as it comes never nears the limit.
// Both signers' informers share one budget, so a requester's budget is for
// all its pending CSRs. Safe for concurrent use.
type pendingBudget struct {
	limit int

	mu     sync.Mutex                // guards kept and byUser
	kept   map[types.UID]keptRequest // by budgetKey
	byUser map[string]int            // bytes kept, by spec.username
}

type keptRequest struct {
	user  string
	bytes int
}

func newPendingBudget(limit int) *pendingBudget {
	return &pendingBudget{limit: limit, kept: map[types.UID]keptRequest{}, byUser: map[string]int{}}
}

// keep reports whether the pending request of csr may be kept, counting it
// if it is new.
func (b *pendingBudget) keep(csr *certificatesv1.CertificateSigningRequest) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.kept[budgetKey(csr)]; ok {
		return true
	}
	user, n := csr.Spec.Username, len(csr.Spec.Request)
	if b.byUser[user]+n > b.limit {
		return false
	}
	b.kept[budgetKey(csr)] = keptRequest{user: user, bytes: n}
	b.byUser[user] += n
	return true
}

// budgetKey identifies a CSR in the budget: its UID (a name is reused
// by a CSR created again after a deletion), or, for an object without one
// (the API server always sets it), its name.
func budgetKey(csr *certificatesv1.CertificateSigningRequest) types.UID {
	if csr.UID != "" {
		return csr.UID
	}
	return types.UID("name:" + csr.Name)
}

// release forgets the request of csr, if it was counted.
func (b *pendingBudget) release(csr *certificatesv1.CertificateSigningRequest) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	k, ok := b.kept[budgetKey(csr)]
	if !ok {
		return
	}
	delete(b.kept, budgetKey(csr))
	if b.byUser[k.user] -= k.bytes; b.byUser[k.user] <= 0 {
		delete(b.byUser, k.user)
	}
}

// pendingBytes is what the budget holds for user.
func (b *pendingBudget) pendingBytes(user string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.byUser[user]
}

// attach makes inf cache the transformCSR form of each CSR, counted
// against b, and release a CSR's count when it is deleted.
func (b *pendingBudget) attach(inf cache.SharedIndexInformer) error {
	if err := inf.SetTransform(b.transformCSR); err != nil {
		return err
	}
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if csr, ok := obj.(*certificatesv1.CertificateSigningRequest); ok {
			b.release(csr)
		}
	}})
	return err
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
	// The port numbers: the API server's certificate is read there (apiserver_sans.go).
	for _, p := range in.Ports {
		out.Ports = append(out.Ports, discoveryv1.EndpointPort{Port: p.Port})
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
// list reads listPageSize CSRs at a time and transforms each page (with
// transform, the informer's own) before reading the next (listCSRs).
func newCSRInformer(client kubernetes.Interface, selector string, resync time.Duration, transform cache.TransformFunc) cache.SharedIndexInformer {
	csrs := client.CertificatesV1().CertificateSigningRequests()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.FieldSelector = selector
			return listCSRs(ctx, csrs, opts, transform)
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
func listCSRs(ctx context.Context, csrs certclient.CertificateSigningRequestInterface, opts metav1.ListOptions, transform cache.TransformFunc) (runtime.Object, error) {
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
			t, _ := transform(&page.Items[i])
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
