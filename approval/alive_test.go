package approval

import (
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
)

// stampsSeen is what a watcher whose clock agrees with the node's would
// have seen: each heartbeat changing at the node's own stamp of it.
func stampsSeen(node *corev1.Node, lease *coordinationv1.Lease) *Heartbeats {
	var h Heartbeats
	if lease != nil && lease.Spec.RenewTime != nil {
		h.Lease = Observation{At: lease.Spec.RenewTime.Time, Changed: true}
	}
	if node != nil {
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && !c.LastHeartbeatTime.IsZero() {
				h.Ready = Observation{At: c.LastHeartbeatTime.Time, Changed: true}
			}
		}
	}
	return &h
}

// TestLiveNodeObserved: whether a node is alive is decided by when the
// approver saw its heartbeat change, by the approver's clock, never by the
// node's own stamps (issue 24, finding 4); when the approver cannot tell, a
// takeover is not approved but waits.
func TestLiveNodeObserved(t *testing.T) {
	client := func(f func(s *csrSpec)) func(string) csrSpec { return specBuilder(t, clientSpec, f) }
	node := func(heartbeat time.Duration) *corev1.Node { return withHeartbeat(nodeN1(), t0.Add(-heartbeat)) }
	leaseSeen := func(ago time.Duration, changed bool) *Heartbeats {
		return &Heartbeats{Lease: Observation{At: t0.Add(-ago), Changed: changed}}
	}
	readySeen := func(ago time.Duration, changed bool) *Heartbeats {
		return &Heartbeats{Ready: Observation{At: t0.Add(-ago), Changed: changed}}
	}
	slow := lease("n1", t0.Add(-6*time.Minute)) // the kubelet's clock is 6 minutes slow
	cases := []ruleCase{
		{name: "node clock 6 minutes slow, Lease seen renewed 2s ago: alive", spec: client(nil), node: node(time.Hour), lease: slow, heartbeats: leaseSeen(2*time.Second, true),
			verdict: Deny, reason: ReasonNodeAlive, asked: []string{}, contains: []string{`Node "n1" is alive`, "saw its Lease renewed 2s ago", "2030-01-02T02:58:05Z"}},
		{name: "node clock fast, Lease not seen changing for longer than the grace: not alive", spec: client(nil), node: node(time.Hour), lease: lease("n1", t0.Add(time.Hour)),
			heartbeats: leaseSeen(DefaultNodeAliveGrace+time.Second, true), verdict: Approve, reason: ReasonAutoApproved},
		{name: "Lease only listed (approver just started): no opinion yet", spec: client(nil), node: node(time.Hour), lease: slow, heartbeats: leaseSeen(10*time.Second, false),
			verdict: Wait, reason: ReasonNodeLivenessUnknown, asked: []string{}, contains: []string{`Node "n1"`, "without seeing it change", "10s"}},
		{name: "Lease only listed, unchanged for longer than the grace: not alive (powered off)", spec: client(nil), node: node(time.Hour), lease: slow,
			heartbeats: leaseSeen(DefaultNodeAliveGrace+time.Second, false), verdict: Approve},
		{name: "Lease watch not synced or broken: no opinion yet", spec: client(nil), node: node(time.Hour), lease: slow, heartbeats: &Heartbeats{},
			verdict: Wait, reason: ReasonNodeLivenessUnknown, asked: []string{}, contains: []string{"has not synced"}},
		{name: "no Heartbeats at all: no opinion yet", spec: client(nil), node: node(time.Hour), lease: slow, heartbeats: &Heartbeats{Ready: Observation{At: t0, Changed: true}},
			verdict: Wait, reason: ReasonNodeLivenessUnknown},
		{name: "Ready heartbeat 6 minutes slow, seen changing now: alive", spec: client(nil), node: node(6 * time.Minute), heartbeats: readySeen(0, true),
			verdict: Deny, reason: ReasonNodeAlive, contains: []string{"Ready condition"}},
		{name: "Ready heartbeat only listed: no opinion yet", spec: client(nil), node: node(0), heartbeats: readySeen(time.Second, false),
			verdict: Wait, reason: ReasonNodeLivenessUnknown},
		{name: "Ready heartbeat unchanged past the grace: not alive", spec: client(nil), node: node(0), heartbeats: readySeen(time.Hour, true), verdict: Approve},
		{name: "a Node that never reported needs no observation", spec: client(nil), node: nodeN1(), heartbeats: &Heartbeats{}, verdict: Approve},
		{name: "the node itself renews whatever the watch knows", spec: client(func(s *csrSpec) { s.requester = nodeUser("n1") }), node: node(0), lease: slow,
			heartbeats: &Heartbeats{}, verdict: Approve, rule: "kubelet-client-self"},
	}
	runRuleCases(t, cases)

	// Without Heartbeats nothing the node stamped decides either.
	d := decideIn(t, clientSpec(testKey(t, "ecdsa")), Input{Node: node(0), NodeLease: lease("n1", t0), Now: t0}, Options{}, kubeadmAuthz())
	if d.Verdict != Wait || d.Reason != ReasonNodeLivenessUnknown {
		t.Errorf("no Heartbeats, a Lease renewed now by the node's clock: %v %s (%s), want wait %s", d.Verdict, d.Reason, d.Message, ReasonNodeLivenessUnknown)
	}
}

// TestSelfRequiresNodesGroup: the node itself is its user name and the
// system:nodes group (issue 24, finding 6). An identity only named
// system:node:n1 is judged like a bootstrap token: the live-node check and
// the nodeclient review, never selfnodeclient; asking for another node it is
// still denied (C7).
func TestSelfRequiresNodesGroup(t *testing.T) {
	named := func(name string) func(s *csrSpec) {
		return func(s *csrSpec) {
			s.requester = Requester{Username: "system:node:" + name, Groups: []string{"system:authenticated"}}
		}
	}
	client := func(f func(s *csrSpec)) func(string) csrSpec { return specBuilder(t, clientSpec, f) }
	alive := withHeartbeat(nodeN1(), t0)
	cases := []ruleCase{
		{name: "named like the live node, outside system:nodes: denied as a takeover", spec: client(named("n1")), node: alive, lease: lease("n1", t0),
			verdict: Deny, reason: ReasonNodeAlive, asked: []string{}, contains: []string{`"system:node:n1" may not take over`}},
		{name: "named like the node, outside system:nodes, node not alive: nodeclient review, not selfnodeclient", spec: client(named("n1")),
			verdict: Wait, reason: ReasonNotAuthorized, rule: "kubelet-client", asked: []string{"system:node:n1/nodeclient"}},
		{name: "named like another node, outside system:nodes: denied", spec: client(named("n2")), node: alive,
			verdict: Deny, reason: ReasonNodeMismatch, asked: []string{}},
		{name: "the node itself, in system:nodes, while alive", spec: client(func(s *csrSpec) { s.requester = nodeUser("n1") }), node: alive, lease: lease("n1", t0),
			verdict: Approve, rule: "kubelet-client-self", asked: []string{"system:node:n1/selfnodeclient"}},
	}
	runRuleCases(t, cases)
}
