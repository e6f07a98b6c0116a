package approval

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Heartbeats is what the caller saw of a node's heartbeats, by the caller's
// own clock. The node stamps its Lease's spec.renewTime and its Ready
// condition's lastHeartbeatTime with its own clock, which may be minutes
// off: a live node six minutes slow would look dead, one fast would look
// alive forever. So those times never decide; what decides is when the
// watcher saw them change, as kube-controller-manager's node-lifecycle
// controller does (it records its own probe time whenever renewTime
// changes).
type Heartbeats struct {
	// Lease is what the caller saw of Input.NodeLease's spec.renewTime.
	Lease Observation
	// Ready is what the caller saw of Input.Node's Ready condition's
	// lastHeartbeatTime (used only without a Lease).
	Ready Observation
}

// Observation is what a watcher saw of one heartbeat field.
type Observation struct {
	// At is when the watcher last saw the value change or, if it has not
	// seen it change (Changed false), since when it has seen the same value
	// without a break: from its start, or from the re-list after its watch
	// broke. Zero means the watcher cannot tell (not synced, or its watch
	// broke and it has not listed again).
	At time.Time
	// Changed: At is a change the watcher saw, so the node wrote a new value
	// then. Otherwise At is only the first sight of a value that may be old.
	Changed bool
}

// checkNoLiveNodeTakeover: a client CSR from anyone but the node itself (a
// bootstrap token, or an identity that only bears the node's user name) for a
// Node that exists and is alive would hand that node's identity to whoever
// holds the token while the node still runs. It is denied, or left for a
// human with Options.LeaveLiveNode. A Node that has stopped renewing its
// Lease (powered off past its certificate's expiry) may be bootstrapped
// again, as before. A node renewing its own certificate is not affected.
//
// Alive means the caller saw the node's heartbeat change within
// Options.NodeAliveGrace of Input.Now (Input.Heartbeats). When the caller
// cannot tell, or has watched for less than the grace without seeing a
// change, there is no opinion yet (NodeLivenessUnknown: Wait): approving
// would fail open on a watch that missed the node's renewals.
func checkNoLiveNodeTakeover(p *Policy, c *candidate) *Decision {
	name := c.nodeName
	if requesterIsSubject(c) || c.node == nil || c.node.Name != name {
		return nil
	}
	stamp, source, ok := lastHeartbeat(c)
	if !ok {
		return nil // the node never reported
	}
	seen := observed(c, source)
	grace := p.opts.NodeAliveGrace
	if grace == 0 {
		grace = DefaultNodeAliveGrace
	}
	stamped := fmt.Sprintf("its %s says %s by the node's own clock", source, stamp.UTC().Format(time.RFC3339))
	if seen.At.IsZero() {
		d := wait(ReasonNodeLivenessUnknown, "cannot tell yet whether Node %s is alive: the approver's watch of its %s has not synced, or broke and has not listed again (%s); looking again later",
			echo(name), source, stamped)
		return &d
	}
	age := c.in.Now.Sub(seen.At)
	if age > grace {
		return nil // stale: not alive
	}
	if !seen.Changed {
		d := wait(ReasonNodeLivenessUnknown, "cannot tell yet whether Node %s is alive: the approver has watched its %s for %s without seeing it change (%s); it is alive if it changes within %s, else it may be bootstrapped again; looking again later",
			echo(name), source, roundAge(age), stamped, grace)
		return &d
	}
	ago := "just now"
	if age > 0 {
		ago = roundAge(age) + " ago"
	}
	msg := fmt.Sprintf("Node %s is alive (the approver saw its %s renewed %s; last heartbeat %s by the node's own clock): %s may not take over a live node's identity; "+
		"to re-provision the node, delete the Node object first", echo(name), source, ago, stamp.UTC().Format(time.RFC3339), echo(c.requester.Username))
	if p.opts.LeaveLiveNode {
		return &Decision{Verdict: Ignore, Reason: ReasonNodeAlive, Notify: true, Message: msg + "; left for a human to decide"}
	}
	d := deny(ReasonNodeAlive, "%s", msg)
	return &d
}

func roundAge(d time.Duration) string { return max(d, 0).Round(time.Second).String() }

// Heartbeat sources, as messages name them.
const (
	sourceLease = "Lease"
	sourceReady = "Ready condition"
)

// lastHeartbeat is the node's own stamp of its last heartbeat: its kubelet
// Lease's renewTime or, without one, its Ready condition's heartbeat. Only
// messages show it. ok is false when neither is known.
func lastHeartbeat(c *candidate) (t time.Time, source string, ok bool) {
	if l := c.in.NodeLease; l != nil && l.Name == c.node.Name && l.Spec.RenewTime != nil {
		return l.Spec.RenewTime.Time, sourceLease, true
	}
	for _, cond := range c.node.Status.Conditions {
		if cond.Type == corev1.NodeReady && !cond.LastHeartbeatTime.IsZero() {
			return cond.LastHeartbeatTime.Time, sourceReady, true
		}
	}
	return time.Time{}, "", false
}

// observed is what the caller saw of source; zero without Input.Heartbeats.
func observed(c *candidate, source string) Observation {
	h := c.in.Heartbeats
	switch {
	case h == nil:
		return Observation{}
	case source == sourceLease:
		return h.Lease
	default:
		return h.Ready
	}
}
