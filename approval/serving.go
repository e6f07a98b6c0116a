package approval

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// checkSANPolicy: the operator's optional limits on serving SANs.
func checkSANPolicy(p *Policy, c *candidate) *Decision {
	if re := p.dnsScope; re != nil {
		for _, name := range c.req.DNSNames {
			if !re.MatchString(name) {
				return denyp(ReasonSANForbiddenByPolicy, "DNS name %q does not match --allowed-dns-regex %q", name, re)
			}
		}
	}
	if len(p.opts.AllowedIPs) == 0 {
		return nil
	}
	for _, ip := range c.req.IPAddresses {
		if !inAny(ip, p.opts.AllowedIPs) {
			return denyp(ReasonSANForbiddenByPolicy, "IP address %s is outside --allowed-ip-cidrs %v", ip, p.opts.AllowedIPs)
		}
	}
	return nil
}

func inAny(ip net.IP, prefixes []netip.Prefix) bool {
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	addr = addr.Unmap()
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// checkNodeKnown: the Node must exist, and have reported its addresses,
// before its SANs can be compared with them. Until then there is no opinion.
func checkNodeKnown(_ *Policy, c *candidate) *Decision {
	name := strings.TrimPrefix(c.req.Subject.CommonName, nodePrefix)
	if c.node == nil || c.node.Name != name {
		d := wait(ReasonNodeNotFound, "Node %q does not exist yet", name)
		return &d
	}
	if len(c.node.Status.Addresses) == 0 {
		d := wait(ReasonNodeAddressesUnknown, "Node %q has not reported its addresses yet", name)
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
			return denyp(ReasonSANNotNodeAddress, "DNS name %q is not an address of Node %q (its addresses: %s)", name, c.node.Name, formatAddresses(c.node))
		}
	}
	for _, ip := range c.req.IPAddresses {
		addr, ok := netip.AddrFromSlice(ip)
		if !ok || !ips[addr.Unmap()] {
			return denyp(ReasonSANNotNodeAddress, "IP address %s is not an address of Node %q (its addresses: %s)", ip, c.node.Name, formatAddresses(c.node))
		}
	}
	return nil
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

func formatAddresses(node *corev1.Node) string {
	s := make([]string, len(node.Status.Addresses))
	for i, a := range node.Status.Addresses {
		s[i] = fmt.Sprintf("%s=%s", a.Type, a.Address)
	}
	return strings.Join(s, ", ")
}

// approveServing is reached only when every serving check passed.
func approveServing(_ context.Context, c *candidate, _ Authorizer) (Decision, error) {
	return Decision{Verdict: Approve, Reason: ReasonAutoApproved, Rule: "kubelet-serving",
		Message: fmt.Sprintf("Auto-approved by tlsboot approver (rule kubelet-serving): every SAN is an address of Node %q", c.node.Name)}, nil
}
