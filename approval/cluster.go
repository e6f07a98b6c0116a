package approval

import (
	"net/netip"
	"time"
)

// Bounds on what a request may carry and on how much of it is echoed.
const (
	// MaxRequestBytes is the largest spec.request accepted. The approver's
	// informer drops the request of a larger CSR before caching it (see
	// Input.DroppedRequestBytes) and the CSR is then denied by name.
	MaxRequestBytes = 64 << 10
	// MaxSANs is the most subject alternative names a request may carry.
	MaxSANs = 100
	// MaxEchoBytes bounds the request-derived content of a Decision's
	// message: condition messages, Events and log lines never carry more.
	MaxEchoBytes = 1 << 10
	// DefaultNodeAliveGrace is how recently a Node's kubelet Lease (or its
	// Ready heartbeat) must have been renewed for the node to count as alive.
	DefaultNodeAliveGrace = 5 * time.Minute
	// DefaultClusterDomain is the cluster's DNS domain.
	DefaultClusterDomain = "cluster.local"
)

// ClusterView is what the policy reads of the cluster besides the CSR and
// its Node, from sources a requester cannot write (informer caches of
// ServiceCIDRs, the default/kubernetes Service and its EndpointSlices, and
// Nodes). Implementations must be safe for concurrent use and must not call
// the API server: they are read for every decision.
type ClusterView interface {
	// ServiceCIDRs returns the prefixes of the cluster's ServiceCIDR
	// objects (networking.k8s.io/v1).
	ServiceCIDRs() []netip.Prefix
	// APIServerAddresses returns the ClusterIPs of the default/kubernetes
	// Service and the endpoint addresses of its EndpointSlices.
	APIServerAddresses() []netip.Addr
	// NodesWithAddress returns the names of the Nodes whose
	// status.addresses list addr. addr is canonical: an IP address in
	// netip.Addr.String() form with IPv4-mapped IPv6 unmapped, or a
	// lower-case DNS name without a trailing dot.
	NodesWithAddress(addr string) []string
	// ReservedBy says which source reserves addr (canonical, as for
	// NodesWithAddress) beyond the sources above, or "": a name or IP by
	// which clients reach the API server or a Service, such as a SAN of
	// the API server's own serving certificate ("the API server's serving
	// certificate"), the server of kube-public/cluster-info
	// ("kube-public/cluster-info") or a Service's external IP or
	// load-balancer ingress ("Service ns/name externalIPs"). The source is
	// written into condition messages: it names no secret and is bounded
	// by the caller. known is false until the API server's serving
	// certificate has been read at least once; the policy then approves
	// no serving certificate (it waits: fail closed).
	ReservedBy(addr string) (source string, known bool)
}

// Sources of reserved names and addresses, as ClusterView.ReservedBy and
// the policy name them in SANReserved messages.
const (
	ReservedByServingCertificate = "the API server's serving certificate"
	ReservedByClusterInfo        = "the server of kube-public/cluster-info"
	// ReservedByService is a format: the Service's namespace/name and the
	// field ("externalIPs", "load-balancer ingress").
	ReservedByService = "Service %s %s"
	reservedByOptions = "the approver's reserved names and ranges"
)
