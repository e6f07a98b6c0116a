package approver

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tlsboot/tlsboot/approval"
)

// What the approver reserves besides the API server's Service, endpoints
// and serving certificate (apiserver_sans.go): the server named in
// kube-public/cluster-info (where nodes join), and every Service's
// externalIPs and load-balancer ingress (unless Options.IgnoreServiceIPs).
const (
	clusterInfoNamespace = metav1.NamespacePublic
	clusterInfoName      = "cluster-info"
	clusterInfoKey       = "kubeconfig"
	// clusterInfoServersKey holds, in the cached copy only, the hosts of
	// the servers cluster-info's kubeconfig names, one a line: the
	// transform keeps nothing else of the ConfigMap.
	clusterInfoServersKey = "tlsboot.io/server-hosts"
	// maxClusterInfoServers and maxServiceReserved bound what is kept of
	// one object.
	maxClusterInfoServers = 8
	maxServiceReserved    = 64
	// reservedIndex indexes Services by each address they reserve, in
	// CanonicalAddress form.
	reservedIndex = "reserved"
)

// watchReserved makes the informers of cluster-info and, unless
// IgnoreServiceIPs, of every Service, and the reader of the API server's
// serving certificates.
func (c *Controller) watchReserved() error {
	c.cluster.serving = newServingNames(c.opts.readCertificate())
	byName := fields.OneTermEqualSelector("metadata.name", clusterInfoName).String()
	cf := informers.NewSharedInformerFactoryWithOptions(c.opts.Client, 0, informers.WithNamespace(clusterInfoNamespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = byName }))
	ci := cf.Core().V1().ConfigMaps()
	if err := ci.Informer().SetTransform(transformClusterInfo); err != nil {
		return fmt.Errorf("watching %s/%s: %w", clusterInfoNamespace, clusterInfoName, err)
	}
	if _, err := ci.Informer().AddEventHandler(c.refreshOnChange()); err != nil {
		return fmt.Errorf("watching %s/%s: %w", clusterInfoNamespace, clusterInfoName, err)
	}
	c.cluster.clusterInfo = ci.Informer().GetStore()
	c.synced = append(c.synced, ci.Informer().HasSynced)
	c.starts = append(c.starts, cf.Start)
	if c.opts.IgnoreServiceIPs {
		return nil
	}
	sf := informers.NewSharedInformerFactory(c.opts.Client, 0)
	svc := sf.Core().V1().Services()
	if err := svc.Informer().SetTransform(transformReservingService); err != nil {
		return fmt.Errorf("watching services: %w", err)
	}
	if err := svc.Informer().AddIndexers(cache.Indexers{reservedIndex: indexByReserved}); err != nil {
		return fmt.Errorf("indexing services: %w", err)
	}
	c.cluster.reservingServices = svc.Informer().GetIndexer()
	c.synced = append(c.synced, svc.Informer().HasSynced)
	c.starts = append(c.starts, sf.Start)
	return nil
}

// readCertificate is Options.ReadCertificate, or a TLS handshake.
func (o *Options) readCertificate() readCertificateFunc {
	if o.ReadCertificate != nil {
		return o.ReadCertificate
	}
	return readServingCertificate
}

// transformClusterInfo keeps of cluster-info only the hosts of the
// servers its kubeconfig names (the JWS signatures and the CA are not
// read). Idempotent: a transformed copy has no kubeconfig key.
func transformClusterInfo(obj any) (any, error) {
	in, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return obj, nil
	}
	out := &corev1.ConfigMap{TypeMeta: in.TypeMeta, ObjectMeta: minimalMeta(&in.ObjectMeta)}
	raw, ok := in.Data[clusterInfoKey]
	if !ok {
		if hosts, ok := in.Data[clusterInfoServersKey]; ok {
			out.Data = map[string]string{clusterInfoServersKey: hosts}
		}
		return out, nil
	}
	var hosts []string
	if cfg, err := clientcmd.Load([]byte(raw)); err == nil {
		for _, name := range slices.Sorted(maps.Keys(cfg.Clusters)) {
			if h := serverHost(cfg.Clusters[name].Server); h != "" && !slices.Contains(hosts, h) && len(hosts) < maxClusterInfoServers {
				hosts = append(hosts, h)
			}
		}
	}
	out.Data = map[string]string{clusterInfoServersKey: strings.Join(hosts, "\n")}
	return out, nil
}

// serverHost is the host[:port] of a kubeconfig server URL, or "".
func serverHost(server string) string {
	u, err := url.Parse(server)
	if err != nil || u.Host == "" || len(u.Host) > maxAddressLen+6 {
		return ""
	}
	return u.Host
}

// transformReservingService keeps of a Service only its name and what it
// reserves: spec.externalIPs and the IPs and host names of
// status.loadBalancer.ingress, at most maxServiceReserved of each.
// Idempotent.
func transformReservingService(obj any) (any, error) {
	in, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	out := &corev1.Service{TypeMeta: in.TypeMeta, ObjectMeta: minimalMeta(&in.ObjectMeta)}
	if n := len(in.Spec.ExternalIPs); n > 0 {
		out.Spec.ExternalIPs = slices.Clone(in.Spec.ExternalIPs[:min(n, maxServiceReserved)])
	}
	for _, ing := range in.Status.LoadBalancer.Ingress {
		if len(out.Status.LoadBalancer.Ingress) == maxServiceReserved {
			break
		}
		out.Status.LoadBalancer.Ingress = append(out.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ing.IP, Hostname: ing.Hostname})
	}
	return out, nil
}

// serviceReserves lists what svc reserves: canonical address → field.
func serviceReserves(svc *corev1.Service) map[string]string {
	out := map[string]string{}
	add := func(a, field string) {
		if a == "" || len(a) > maxAddressLen {
			return
		}
		if _, ok := out[CanonicalAddress(a)]; !ok {
			out[CanonicalAddress(a)] = field
		}
	}
	for _, ip := range svc.Spec.ExternalIPs {
		add(ip, "externalIPs")
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		add(ing.IP, "load-balancer ingress")
		add(ing.Hostname, "load-balancer ingress")
	}
	return out
}

func indexByReserved(obj any) ([]string, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return nil, nil
	}
	keys := make([]string, 0, len(svc.Spec.ExternalIPs)+2*len(svc.Status.LoadBalancer.Ingress))
	for k := range serviceReserves(svc) {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, nil
}

// clusterInfoServers returns the host:port of each server cluster-info
// names, from the cache.
func (v *clusterView) clusterInfoServers() []string {
	if v.clusterInfo == nil {
		return nil
	}
	obj, ok, _ := v.clusterInfo.GetByKey(clusterInfoNamespace + "/" + clusterInfoName)
	cm, isCM := obj.(*corev1.ConfigMap)
	if !ok || !isCM || cm.Data[clusterInfoServersKey] == "" {
		return nil
	}
	return strings.Split(cm.Data[clusterInfoServersKey], "\n")
}

// ReservedBy says which source reserves addr beyond the Service ranges and
// the API server's Service and endpoints: the API server's serving
// certificate, cluster-info's server, a Service's external IP or
// load-balancer ingress. known is false until a serving certificate was read.
//
// Issue 22 will allow a control-plane Node its own EndpointSlice address;
// that exemption belongs in the policy (approval.reservedBy), which knows
// the Node, not here.
func (v *clusterView) ReservedBy(addr string) (source string, known bool) {
	if v.serving == nil {
		return "", false
	}
	known = v.serving.known.Load()
	if v.serving.has(addr) {
		return approval.ReservedByServingCertificate, known
	}
	for _, hp := range v.clusterInfoServers() {
		h := hp
		if host, _, err := net.SplitHostPort(hp); err == nil {
			h = host
		}
		if CanonicalAddress(h) == addr {
			return approval.ReservedByClusterInfo, known
		}
	}
	if v.reservingServices != nil {
		objs, _ := v.reservingServices.ByIndex(reservedIndex, addr)
		var names []string
		for _, o := range objs {
			if svc, ok := o.(*corev1.Service); ok {
				names = append(names, svc.Namespace+"/"+svc.Name+" "+serviceReserves(svc)[addr])
			}
		}
		if len(names) > 0 {
			slices.Sort(names)
			ns, field, _ := strings.Cut(names[0], " ")
			return fmt.Sprintf(approval.ReservedByService, ns, field), known
		}
	}
	return "", known
}
