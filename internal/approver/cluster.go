package approver

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/tlsboot/tlsboot/approval"
)

// The API server's own Service and where its EndpointSlices live.
const (
	apiServerService   = "kubernetes"
	apiServerNamespace = corev1.NamespaceDefault
	// nodeLeaseNamespace holds the kubelets' heartbeat Leases, named after
	// their Nodes.
	nodeLeaseNamespace = corev1.NamespaceNodeLease
	// addressIndex indexes Nodes by every address in their status, in
	// CanonicalAddress form.
	addressIndex = "address"
)

// clusterView is approval.ClusterView read from informer caches; it never
// calls the API server. Every method is safe for concurrent use (listers
// are).
type clusterView struct {
	serviceCIDRs networkinglisters.ServiceCIDRLister // nil when the API is not served
	services     corelisters.ServiceNamespaceLister  // default, restricted to "kubernetes"
	slices       discoverylisters.EndpointSliceNamespaceLister
	nodes        cache.Indexer
	// serving, clusterInfo and reservingServices are what ReservedBy
	// reads (reserved.go); reservingServices is nil with
	// Options.IgnoreServiceIPs.
	serving           *servingNames
	clusterInfo       cache.Store
	reservingServices cache.Indexer
}

var _ approval.ClusterView = (*clusterView)(nil)

// ServiceCIDRs returns the prefixes of every ServiceCIDR object.
func (v *clusterView) ServiceCIDRs() []netip.Prefix {
	if v.serviceCIDRs == nil {
		return nil
	}
	objs, _ := v.serviceCIDRs.List(labels.Everything())
	var out []netip.Prefix
	for _, o := range objs {
		for _, s := range o.Spec.CIDRs {
			if p, err := netip.ParsePrefix(s); err == nil {
				out = append(out, unmapPrefix(p))
			}
		}
	}
	return out
}

// unmapPrefix turns an IPv4-mapped IPv6 prefix (::ffff:10.96.0.0/108) into
// its IPv4 form (10.96.0.0/12), and masks it.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked()
	}
	return p.Masked()
}

// APIServerAddresses returns the ClusterIPs of default/kubernetes and every
// endpoint address of its EndpointSlices.
func (v *clusterView) APIServerAddresses() []netip.Addr {
	var out []netip.Addr
	add := func(s string) {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a.WithZone("").Unmap())
		}
	}
	if svc, err := v.services.Get(apiServerService); err == nil {
		add(svc.Spec.ClusterIP)
		for _, ip := range svc.Spec.ClusterIPs {
			add(ip)
		}
	}
	slices, _ := v.slices.List(labels.Everything())
	for _, s := range slices {
		if s.Labels[discoveryv1.LabelServiceName] != apiServerService {
			continue
		}
		for _, ep := range s.Endpoints {
			for _, a := range ep.Addresses {
				add(a)
			}
		}
	}
	return out
}

// NodesWithAddress returns the names of the Nodes listing addr (canonical)
// in their status.addresses, sorted.
func (v *clusterView) NodesWithAddress(addr string) []string {
	objs, err := v.nodes.ByIndex(addressIndex, addr)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		if n, ok := o.(*corev1.Node); ok {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// CanonicalAddress is the form in which ClusterView.NodesWithAddress takes
// an address: an IP address (whatever Node address type lists it) as
// netip.Addr.String() without zone and with IPv4-mapped IPv6 unmapped;
// anything else as a lower-case DNS name without a trailing dot.
func CanonicalAddress(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.WithZone("").Unmap().String()
	}
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

// indexByAddress indexes a Node by each of its addresses, canonical.
func indexByAddress(obj any) ([]string, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return nil, nil
	}
	keys := make([]string, 0, len(n.Status.Addresses))
	for _, a := range n.Status.Addresses {
		if k := CanonicalAddress(a.Address); k != "" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys), nil
}
