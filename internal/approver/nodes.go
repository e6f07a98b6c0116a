package approver

import (
	"context"
	"fmt"
	"slices"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/approval"
)

// nodeIndex indexes CSRs by the node their common name names, so that a
// Node appearing (or reporting new addresses) requeues the CSRs waiting for it.
const nodeIndex = "node"

func indexByNode(obj any) ([]string, error) {
	csr, ok := obj.(*certificatesv1.CertificateSigningRequest)
	if !ok || approval.Decided(csr) {
		return nil, nil
	}
	if name := approval.NodeName(csr); name != "" {
		return []string{name}, nil
	}
	return nil, nil
}

// watchNodes reads Nodes from a shared informer, indexed by address; the
// policy reads the Node a CSR names and which Nodes list an address.
func (c *Controller) watchNodes() error {
	f := informers.NewSharedInformerFactory(c.opts.Client, c.opts.Resync)
	inf := f.Core().V1().Nodes()
	if err := inf.Informer().SetTransform(transformNode); err != nil {
		return fmt.Errorf("watching nodes: %w", err)
	}
	if err := inf.Informer().AddIndexers(cache.Indexers{addressIndex: indexByAddress}); err != nil {
		return fmt.Errorf("indexing nodes: %w", err)
	}
	// Ready heartbeats, by the approver's clock (lease.go): the live-node
	// check of a node without a Lease.
	c.readySeen = newSeenLog(c.opts.Clock, inf.Informer())
	if err := c.readySeen.watchErrors(inf.Informer()); err != nil {
		return fmt.Errorf("watching nodes: %w", err)
	}
	if _, err := inf.Informer().AddEventHandler(c.readySeen.handler(readyStamp, c.requeueNode)); err != nil {
		return fmt.Errorf("watching nodes: %w", err)
	}
	_, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.nodeChanged(obj) },
		UpdateFunc: func(old, obj any) {
			o, ok1 := old.(*corev1.Node)
			n, ok2 := obj.(*corev1.Node)
			if ok1 && ok2 && !slices.Equal(o.Status.Addresses, n.Status.Addresses) {
				c.nodeChanged(n)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("watching nodes: %w", err)
	}
	c.nodes = inf.Lister()
	c.cluster.nodes = inf.Informer().GetIndexer()
	c.synced = append(c.synced, inf.Informer().HasSynced)
	c.starts = append(c.starts, f.Start)
	return nil
}

// watchLeases reads the kubelets' Leases in kube-node-lease: with the Node
// they tell whether a node is alive.
func (c *Controller) watchLeases() error {
	f := informers.NewSharedInformerFactoryWithOptions(c.opts.Client, 0, informers.WithNamespace(nodeLeaseNamespace))
	inf := f.Coordination().V1().Leases()
	if err := inf.Informer().SetTransform(transformLease); err != nil {
		return fmt.Errorf("watching node leases: %w", err)
	}
	// When the approver saw each Lease renewed, by its own clock
	// (lease.go); a renewal also requeues the CSRs naming the node.
	c.leaseSeen = newSeenLog(c.opts.Clock, inf.Informer())
	if err := c.leaseSeen.watchErrors(inf.Informer()); err != nil {
		return fmt.Errorf("watching node leases: %w", err)
	}
	if _, err := inf.Informer().AddEventHandler(c.leaseSeen.handler(leaseStamp, c.requeueNode)); err != nil {
		return fmt.Errorf("watching node leases: %w", err)
	}
	c.leases = inf.Lister().Leases(nodeLeaseNamespace)
	c.synced = append(c.synced, inf.Informer().HasSynced)
	c.starts = append(c.starts, f.Start)
	return nil
}

// watchAPIServer reads the default/kubernetes Service (only it: a field
// selector on its name, which RBAC can restrict by resourceNames) and its
// EndpointSlices (by label).
func (c *Controller) watchAPIServer() error {
	byName := fields.OneTermEqualSelector("metadata.name", apiServerService).String()
	sf := informers.NewSharedInformerFactoryWithOptions(c.opts.Client, 0, informers.WithNamespace(apiServerNamespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = byName }))
	svc := sf.Core().V1().Services()
	if err := svc.Informer().SetTransform(transformService); err != nil {
		return fmt.Errorf("watching the %s service: %w", apiServerService, err)
	}
	byService := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: apiServerService}).String()
	ef := informers.NewSharedInformerFactoryWithOptions(c.opts.Client, 0, informers.WithNamespace(apiServerNamespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = byService }))
	eps := ef.Discovery().V1().EndpointSlices()
	if err := eps.Informer().SetTransform(transformEndpointSlice); err != nil {
		return fmt.Errorf("watching the endpoints of the %s service: %w", apiServerService, err)
	}
	c.cluster.services = svc.Lister().Services(apiServerNamespace)
	c.cluster.slices = eps.Lister().EndpointSlices(apiServerNamespace)
	// A changed endpoint is read again at once (apiserver_sans.go).
	if _, err := eps.Informer().AddEventHandler(c.refreshOnChange()); err != nil {
		return fmt.Errorf("watching the endpoints of the %s service: %w", apiServerService, err)
	}
	c.synced = append(c.synced, svc.Informer().HasSynced, eps.Informer().HasSynced)
	c.starts = append(c.starts, sf.Start, ef.Start)
	return nil
}

// watchServiceCIDRs reads the ServiceCIDR objects, if the API server serves
// them (networking.k8s.io/v1, Kubernetes 1.33 and later). Without them the
// policy has the service CIDRs of its options (approval.Options.ServiceCIDRs)
// and the kubernetes Service's ClusterIPs.
func (c *Controller) watchServiceCIDRs(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	gv := networkingv1.SchemeGroupVersion.String()
	list, err := c.opts.Client.Discovery().ServerResourcesForGroupVersion(gv)
	if err != nil && !apierrors.IsNotFound(err) {
		// Discovery is flaky at times; the informer itself will tell.
		logger.V(1).Info("Discovery failed; watching ServiceCIDRs anyway", "group_version", gv, "err", err)
	} else if err != nil || !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == "servicecidrs" }) {
		logger.Info("The API server does not serve ServiceCIDRs: only the configured service CIDRs and the kubernetes Service's ClusterIPs are known service addresses", "group_version", gv)
		return nil
	}
	f := informers.NewSharedInformerFactory(c.opts.Client, 0)
	inf := f.Networking().V1().ServiceCIDRs()
	if err := inf.Informer().SetTransform(transformServiceCIDR); err != nil {
		return fmt.Errorf("watching service CIDRs: %w", err)
	}
	c.cluster.serviceCIDRs = inf.Lister()
	c.synced = append(c.synced, inf.Informer().HasSynced)
	c.starts = append(c.starts, f.Start)
	return nil
}

// nodeChanged requeues the pending CSRs that name the node.
func (c *Controller) nodeChanged(obj any) {
	if node, ok := obj.(*corev1.Node); ok {
		c.requeueNode(node.Name)
	}
}

// requeueNode requeues the pending CSRs that name the node name.
func (c *Controller) requeueNode(name string) {
	for signer, inf := range c.csrs {
		objs, _ := inf.Informer().GetIndexer().ByIndex(nodeIndex, name)
		for _, o := range objs {
			if csr, ok := o.(*certificatesv1.CertificateSigningRequest); ok {
				c.queue.Add(key{signer, csr.Name})
			}
		}
	}
}
