package approval

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// checkNoLiveNodeTakeover: a client CSR from anyone but the node itself (a
// bootstrap token) for a Node that exists and is alive would hand that
// node's identity to whoever holds the token while the node still runs.
// It is denied, or left for a human with Options.LeaveLiveNode. A Node that
// has stopped renewing its Lease (powered off past its certificate's
// expiry) may be bootstrapped again, as before. A node renewing its own
// certificate is not affected.
func checkNoLiveNodeTakeover(p *Policy, c *candidate) *Decision {
	name := c.nodeName
	if requesterIsSubject(c) || c.node == nil || c.node.Name != name {
		return nil
	}
	last, source, ok := lastHeartbeat(c)
	if !ok {
		return nil
	}
	grace := p.opts.NodeAliveGrace
	if grace == 0 {
		grace = DefaultNodeAliveGrace
	}
	age := c.in.Now.Sub(last)
	if age > grace {
		return nil
	}
	ago := "in the future"
	if age >= 0 {
		ago = age.Round(time.Second).String() + " ago"
	}
	msg := fmt.Sprintf("Node %s is alive (last heartbeat %s, %s, from its %s): %s may not take over a live node's identity; "+
		"to re-provision the node, delete the Node object first", echo(name), last.UTC().Format(time.RFC3339), ago, source, echo(c.requester.Username))
	if p.opts.LeaveLiveNode {
		return &Decision{Verdict: Ignore, Reason: ReasonNodeAlive, Notify: true, Message: msg + "; left for a human to decide"}
	}
	d := deny(ReasonNodeAlive, "%s", msg)
	return &d
}

// lastHeartbeat is when the node last said it was alive: its kubelet
// Lease's renewTime or, without one, its Ready condition's heartbeat. ok is
// false when neither is known.
func lastHeartbeat(c *candidate) (t time.Time, source string, ok bool) {
	if l := c.in.NodeLease; l != nil && l.Name == c.node.Name && l.Spec.RenewTime != nil {
		return l.Spec.RenewTime.Time, "Lease", true
	}
	for _, cond := range c.node.Status.Conditions {
		if cond.Type == corev1.NodeReady && !cond.LastHeartbeatTime.IsZero() {
			return cond.LastHeartbeatTime.Time, "Ready condition", true
		}
	}
	return time.Time{}, "", false
}
