package approval

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/tlsboot/tlsboot/csr"
)

// checkRequesterIsNode: only a node, authenticated as one, may ask for a
// serving certificate.
func checkRequesterIsNode(_ *Policy, c *candidate) *Decision {
	if r := c.requester; !isNodeName(r.Username) || !slices.Contains(r.Groups, csr.NodesGroup) {
		return denyp(ReasonRequesterNotNode, "requester %s is not a node: serving certificates are approved only for a user %s<name> in group %s",
			echo(r.Username), csr.NodeCommonPrefix, csr.NodesGroup)
	}
	return nil
}

// checkCommonNameIsRequester: node A may not ask for node B's certificate.
func checkCommonNameIsRequester(_ *Policy, c *candidate) *Decision {
	if !requesterIsSubject(c) {
		return denyp(ReasonNodeMismatch, "subject common name %s is not the requester %s", echo(c.req.Subject.CommonName), echo(c.requester.Username))
	}
	return nil
}

// checkServingSANs: at least one DNS name or IP address; no email or URI
// SANs; no wildcard DNS names (no Node address is a wildcard).
func checkServingSANs(_ *Policy, c *candidate) *Decision {
	r := c.req
	if len(r.EmailAddresses) > 0 || len(r.URIs) > 0 {
		return denyp(ReasonSANNotAllowed, "email and URI subject alternative names are not allowed in a serving certificate, the request has %s",
			echoList("names", slices.Concat(r.EmailAddresses, stringsOf(r.URIs))))
	}
	if len(r.DNSNames) == 0 && len(r.IPAddresses) == 0 {
		return denyp(ReasonMissingSAN, "a serving certificate needs at least one DNS name or IP address")
	}
	for _, name := range r.DNSNames {
		if strings.Contains(name, "*") {
			return denyp(ReasonSANNotAllowed, "wildcard DNS name %s is not allowed", echo(name))
		}
	}
	return nil
}

// reservedPrefixes are never a node's own serving address, whatever the
// scope: beside loopback, unspecified, link-local and multicast (netip's
// predicates), IPv4's "this network" and limited broadcast, and IPv6's
// deprecated IPv4-compatible addresses.
var reservedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("255.255.255.255/32"),
	netip.MustParsePrefix("::/96"),
}

// reservedNames are in-cluster names of the API server and the local host.
var reservedNames = []string{"kubernetes", "kubernetes.default", "localhost"}

// checkReservedSANs: names and addresses no node may have a serving
// certificate for, whatever the scope: the API server's (its Service's
// ClusterIPs, its endpoints, its in-cluster names, and every name and IP
// clients reach it by: its serving certificate's, cluster-info's server,
// the operator's reserved names and ranges), any Service's (a service
// CIDR, .svc names, external IPs and load-balancer ingress), the local
// host's, and special addresses. DNS names must be lower-case DNS-1123
// subdomains once lower-cased and without a trailing dot, and must not read
// as an IP address. While the cluster view has not read the API server's
// serving certificate yet, a request that nothing reserves so far waits:
// without its names, a node could be approved for the control-plane
// endpoint.
func checkReservedSANs(p *Policy, c *candidate) *Decision {
	known := true
	for _, name := range c.req.DNSNames {
		why, ok := p.reservedName(c, canonicalDNS(name))
		if why != "" {
			return denyp(ReasonSANReserved, "DNS name %s is not allowed: %s", echo(name), why)
		}
		known = known && ok
	}
	for _, ip := range c.req.IPAddresses {
		why, ok := p.reservedIP(c, ip)
		if why != "" {
			return denyp(ReasonSANReserved, "IP address %s is not allowed: %s", echo(ip.String()), why)
		}
		known = known && ok
	}
	if !known {
		d := wait(ReasonAPIServerNamesUnknown, "the API server's serving certificate has not been read yet, so the names and addresses clients reach it by are not known: no serving certificate is approved until they are")
		return &d
	}
	return nil
}

// reservedBy asks the cluster view who reserves a canonical name or
// address. known is false while the view cannot tell yet.
//
// Seam for issue 22: a Node the cluster marks control-plane
// (node-role.kubernetes.io/control-plane) will be allowed its own API
// server EndpointSlice address (its host IP) here, and only that: never a
// load-balancer name or VIP, the Service IP, or any SAN of the serving
// certificate that is not its own endpoint. Nothing is exempt yet.
func reservedBy(c *candidate, addr string) (why string, known bool) {
	view := c.in.Cluster
	if view == nil {
		return "", true
	}
	source, known := view.ReservedBy(addr)
	if source != "" {
		return "reserved by " + echo(source), true
	}
	return "", known
}

// reservedName says why a canonical DNS name is not allowed, or ""; known
// is false when the cluster view cannot tell yet.
func (p *Policy) reservedName(c *candidate, name string) (why string, known bool) {
	if _, err := netip.ParseAddr(name); err == nil || looksNumeric(name) {
		return "it is an IP address, not a DNS name", true
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "not a valid DNS name: " + errs[0], true
	}
	domain := p.clusterDomain()
	switch {
	case slices.Contains(reservedNames, name), strings.HasSuffix(name, ".localhost"):
		return "it is a name of the API server or the local host", true
	case name == "svc", strings.HasSuffix(name, ".svc"), name == "svc."+domain, strings.HasSuffix(name, ".svc."+domain):
		return "it is a Service's name (.svc)", true
	case slices.ContainsFunc(p.opts.ReservedDNS, func(r string) bool { return canonicalDNS(r) == name }):
		return "reserved by " + reservedByOptions, true
	}
	return reservedBy(c, name)
}

// looksNumeric: the last label is a decimal or hexadecimal number, which
// URL parsers and inet_aton read as an IPv4 address ("127.1", "0x7f.1").
func looksNumeric(name string) bool {
	last := name[strings.LastIndexByte(name, '.')+1:]
	if h, ok := strings.CutPrefix(last, "0x"); ok {
		last = h
		return strings.Trim(last, "0123456789abcdef") == ""
	}
	return last != "" && strings.Trim(last, "0123456789") == ""
}

func (p *Policy) clusterDomain() string {
	if d := canonicalDNS(p.opts.ClusterDomain); d != "" {
		return d
	}
	return DefaultClusterDomain
}

// reservedIP says why an IP address is not allowed, or ""; known is false
// when the cluster view cannot tell yet.
func (p *Policy) reservedIP(c *candidate, ip net.IP) (why string, known bool) {
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return "not an IP address", true
	}
	addr = addr.Unmap()
	switch {
	case addr.IsLoopback(), addr.IsUnspecified(), addr.IsLinkLocalUnicast(), addr.IsLinkLocalMulticast(),
		addr.IsInterfaceLocalMulticast(), addr.IsMulticast(), inPrefixes(addr, reservedPrefixes):
		return "loopback, unspecified, link-local, multicast or broadcast", true
	case inPrefixes(addr, p.opts.ServiceCIDRs):
		return "inside a service CIDR", true
	case inPrefixes(addr, p.opts.ReservedCIDRs):
		return "reserved by " + reservedByOptions, true
	}
	if view := c.in.Cluster; view != nil {
		if inPrefixes(addr, view.ServiceCIDRs()) {
			return "inside a service CIDR", true
		}
		for _, a := range view.APIServerAddresses() {
			if a.Unmap() == addr {
				return "an address of the API server", true
			}
		}
	}
	return reservedBy(c, addr.String())
}

// validateReserved checks ReservedCIDRs and ReservedDNS.
func (o Options) validateReserved() error {
	for _, p := range o.ReservedCIDRs {
		if !p.IsValid() {
			return &OptionError{"ReservedCIDRs", fmt.Errorf("prefix %v is not valid", p)}
		}
	}
	for _, name := range o.ReservedDNS {
		c := canonicalDNS(name)
		if _, err := netip.ParseAddr(c); err == nil || c != "" && looksNumeric(c) {
			return &OptionError{"ReservedDNS", fmt.Errorf("%s is an IP address, not a DNS name: reserve it as an IP range instead", echo(name))}
		}
		if errs := validation.IsDNS1123Subdomain(c); len(errs) > 0 {
			return &OptionError{"ReservedDNS", fmt.Errorf("%s is not a DNS name: %s", echo(name), errs[0])}
		}
	}
	return nil
}

// inPrefixes reports whether an unmapped address is in any prefix; an
// IPv4-mapped IPv6 prefix counts as the IPv4 prefix it maps.
func inPrefixes(addr netip.Addr, prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// checkServingScope: serving certificates are approved only inside a scope
// of node addresses the operator configured (a DNS pattern, IP ranges):
// without one, a compromised node could list any address in its status and
// get a certificate for it. Until then serving CSRs are left alone, with
// one Event saying why.
func checkServingScope(p *Policy, _ *candidate) *Decision {
	if p.dnsScope != nil || len(p.opts.AllowedIPs) > 0 {
		return nil
	}
	return &Decision{Verdict: Ignore, Reason: ReasonNoServingScope, Notify: true,
		Message: "serving certificates are not approved until a scope of node addresses (an allowed DNS pattern or allowed IP ranges) is configured; left for a human to decide"}
}

// checkSANPolicy: every DNS name must match the allowed DNS pattern and
// every IP address be in the allowed IP ranges; a kind of SAN without a
// scope is not allowed at all.
func checkSANPolicy(p *Policy, c *candidate) *Decision {
	for _, name := range c.req.DNSNames {
		if p.dnsScope == nil {
			return denyp(ReasonSANForbiddenByPolicy, "DNS name %s is not allowed: no allowed DNS pattern is configured", echo(name))
		}
		if !p.dnsScope.MatchString(canonicalDNS(name)) {
			return denyp(ReasonSANForbiddenByPolicy, "DNS name %s does not match the allowed DNS pattern %s", echo(name), echo(p.opts.AllowedDNSRegex))
		}
	}
	for _, ip := range c.req.IPAddresses {
		if len(p.opts.AllowedIPs) == 0 {
			return denyp(ReasonSANForbiddenByPolicy, "IP address %s is not allowed: no allowed IP ranges are configured", echo(ip.String()))
		}
		if !inAny(ip, p.opts.AllowedIPs) {
			return denyp(ReasonSANForbiddenByPolicy, "IP address %s is outside the allowed IP ranges %s", echo(ip.String()), echoList("ranges", stringsOf(p.opts.AllowedIPs)))
		}
	}
	return nil
}

func inAny(ip net.IP, prefixes []netip.Prefix) bool {
	addr, ok := netip.AddrFromSlice(ip)
	return ok && inPrefixes(addr.Unmap(), prefixes)
}

// checkNodeKnown: the Node must exist, and have reported its addresses,
// before its SANs can be compared with them. Until then there is no opinion.
func checkNodeKnown(_ *Policy, c *candidate) *Decision {
	name := c.nodeName
	if c.node == nil || c.node.Name != name {
		d := wait(ReasonNodeNotFound, "Node %s does not exist yet", echo(name))
		return &d
	}
	if len(c.node.Status.Addresses) == 0 {
		d := wait(ReasonNodeAddressesUnknown, "Node %s has not reported its addresses yet", echo(name))
		return &d
	}
	return nil
}

// checkSANsAreNodeAddresses: every DNS name and IP address must be one of
// the Node's status.addresses, read from the API, never from the CSR.
func checkSANsAreNodeAddresses(_ *Policy, c *candidate) *Decision {
	names, ips := nodeAddresses(c.node)
	for _, name := range c.req.DNSNames {
		if !names[canonicalDNS(name)] {
			return denyp(ReasonSANNotNodeAddress, "DNS name %s is not an address of Node %s (its addresses: %s)", echo(name), echo(c.node.Name), formatAddresses(c.node))
		}
	}
	for _, ip := range c.req.IPAddresses {
		addr, ok := netip.AddrFromSlice(ip)
		if !ok || !ips[addr.Unmap()] {
			return denyp(ReasonSANNotNodeAddress, "IP address %s is not an address of Node %s (its addresses: %s)", echo(ip.String()), echo(c.node.Name), formatAddresses(c.node))
		}
	}
	return nil
}

// checkSANsUnique: no SAN may be an address that another Node also lists.
// A node writes its own status.addresses; one that lists a neighbour's
// address must not get a certificate to impersonate it.
func checkSANsUnique(_ *Policy, c *candidate) *Decision {
	view := c.in.Cluster
	if view == nil {
		return nil
	}
	for _, san := range canonicalSANs(c) {
		for _, other := range view.NodesWithAddress(san) {
			if other != c.node.Name {
				return denyp(ReasonSANNotUnique, "%s is also an address of Node %s: a serving certificate is approved only for addresses no other Node lists", echo(san), echo(other))
			}
		}
	}
	return nil
}

// canonicalSANs returns the DNS names and IP addresses of the request in
// canonical form (see ClusterView.NodesWithAddress).
func canonicalSANs(c *candidate) []string {
	s := make([]string, 0, len(c.req.DNSNames)+len(c.req.IPAddresses))
	for _, name := range c.req.DNSNames {
		s = append(s, canonicalDNS(name))
	}
	for _, ip := range c.req.IPAddresses {
		if addr, ok := netip.AddrFromSlice(ip); ok {
			s = append(s, addr.Unmap().String())
		}
	}
	return s
}

// nodeAddresses splits a Node's addresses into DNS names and IPs by type.
func nodeAddresses(node *corev1.Node) (names map[string]bool, ips map[netip.Addr]bool) {
	names, ips = map[string]bool{}, map[netip.Addr]bool{}
	for _, a := range node.Status.Addresses {
		switch a.Type {
		case corev1.NodeHostName, corev1.NodeInternalDNS, corev1.NodeExternalDNS:
			names[canonicalDNS(a.Address)] = true
		case corev1.NodeInternalIP, corev1.NodeExternalIP:
			if addr, err := netip.ParseAddr(a.Address); err == nil {
				ips[addr.Unmap()] = true
			}
		}
	}
	return names, ips
}

// canonicalDNS lower-cases a DNS name and drops a trailing dot: DNS names
// compare case-insensitively, and "a.example." is "a.example".
func canonicalDNS(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

// formatAddresses lists a Node's addresses, bounded: a node writes them.
func formatAddresses(node *corev1.Node) string {
	s := make([]string, len(node.Status.Addresses))
	for i, a := range node.Status.Addresses {
		s[i] = fmt.Sprintf("%s=%s", a.Type, a.Address)
	}
	return echoList("addresses", s)
}

// servingApproval is the approval message of a serving CSR, the audit
// trail: the SANs approved and the Node's resourceVersion they were checked
// against (set by the API server, short).
func servingApproval(c *candidate, _ string) string {
	return fmt.Sprintf("SANs %s are addresses of Node %s at resourceVersion %s",
		echoList("SANs", canonicalSANs(c)), echo(c.node.Name), c.node.ResourceVersion)
}
