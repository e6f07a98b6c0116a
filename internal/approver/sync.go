package approver

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/approval"
)

// processNext decides one queued CSR; false means the queue is shut down.
func (c *Controller) processNext(ctx context.Context) bool {
	k, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(k)
	if ctx.Err() != nil {
		// Shut down or deposed: a shut-down queue still hands out what it
		// holds, but a replica that is not the leader must not act.
		return false
	}
	retry, err := c.sync(ctx, k)
	switch {
	case err != nil:
		klog.FromContext(ctx).Error(err, "Deciding certificate signing request failed; will retry", "csr", k.name, "signer", k.signer)
		c.queue.AddRateLimited(k)
	case retry:
		c.requeueWaiting(ctx, k)
	default:
		c.queue.Forget(k)
	}
	return true
}

// sync decides the CSR k names. retry asks to look again later (no
// opinion yet); an error asks to retry with backoff.
func (c *Controller) sync(ctx context.Context, k key) (retry bool, err error) {
	inf, ok := c.csrs[k.signer]
	if !ok {
		return false, nil
	}
	csr, err := inf.Lister().Get(k.name)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading certificate signing request %s from the cache: %w", k.name, err)
	}
	// The API server filters by signer; this guard keeps a CSR of another
	// signer untouched even if a cache ever held one.
	if csr.Spec.SignerName != k.signer || approval.Decided(csr) {
		return false, nil
	}
	in, err := c.input(csr)
	if err != nil {
		return false, err
	}
	d, err := c.opts.Policy.Decide(ctx, in, c.authz)
	if err != nil {
		return false, err
	}
	// The policy bounds what it echoes from the request; this bounds the
	// rest, whatever a future check writes.
	d.Message = truncate(d.Message, maxMessageBytes)
	logger := klog.FromContext(ctx).WithValues("csr", csr.Name, "signer", k.signer, "requester", csr.Spec.Username)
	switch d.Verdict {
	case approval.Wait:
		logger.V(2).Info("No decision yet", "reason", d.Reason, "message", d.Message)
		return true, nil
	case approval.Ignore:
		logger.V(3).Info("Leaving certificate signing request alone", "reason", d.Reason, "message", d.Message)
		if d.Notify {
			c.notify(logger, csr, d)
		}
		return false, nil
	}
	return false, c.apply(ctx, logger, csr, d)
}

// maxMessageBytes bounds a condition message, an Event and a logged
// message: approval.MaxEchoBytes of request content plus the policy's own
// words.
const maxMessageBytes = 4 * approval.MaxEchoBytes

// input gathers what the policy reads, from the caches only: the CSR, the
// other CSRs of its requester when it is bound to a node, the Node its
// common name names and that node's Lease, the cluster view, the size of a
// request the cache dropped, the time. The error is sameRequester's.
func (c *Controller) input(csr *certificatesv1.CertificateSigningRequest) (approval.Input, error) {
	in := approval.Input{CSR: csr, Now: c.opts.Clock.Now(), Cluster: c.cluster, DroppedRequestBytes: DroppedRequestBytes(csr), OverPendingBudget: OverPendingBudget(csr)}
	if in.DroppedRequestBytes > 0 || in.OverPendingBudget {
		return in, nil // nothing to parse: denied by name
	}
	var err error
	if in.SameRequester, err = c.sameRequester(csr); err != nil {
		return in, err
	}
	if name := approval.NodeName(csr); name != "" {
		if node, err := c.nodes.Get(name); err == nil {
			in.Node = node
		}
		if lease, err := c.leases.Get(name); err == nil {
			in.NodeLease = lease
		}
		in.Heartbeats = c.heartbeats(name)
	}
	return in, nil
}

// notify records the one Event of a CSR left pending with Notify, with the
// operator hint for its reason.
func (c *Controller) notify(logger klog.Logger, csr *certificatesv1.CertificateSigningRequest, d approval.Decision) {
	if !c.notified.add(csr.UID) {
		return
	}
	hint := c.hint(d.Reason)
	kv := []any{"reason", d.Reason, "rule", d.Rule, "message", d.Message, "hint", hint}
	if c.opts.DryRun {
		logger.Info("Dry run: would leave certificate signing request pending and record an Event", kv...)
		return
	}
	logger.Info("Leaving certificate signing request pending", kv...)
	c.recorder.Event(csr, corev1.EventTypeWarning, d.Reason, withHint(d.Message, hint))
}

func (c *Controller) hint(reason string) string {
	if c.opts.Hint == nil {
		return ""
	}
	return truncate(c.opts.Hint(reason), approval.MaxEchoBytes)
}

func withHint(msg, hint string) string {
	if hint == "" {
		return msg
	}
	return msg + ". " + hint
}

// requeueWaiting looks at a waiting CSR again after its per-item backoff,
// but no later than its pending timeout.
func (c *Controller) requeueWaiting(ctx context.Context, k key) {
	delay := c.limiter.When(k)
	if csr, err := c.csrs[k.signer].Lister().Get(k.name); err == nil {
		if left, ok := c.opts.Policy.PendingTimeoutIn(approval.Input{CSR: csr, Now: c.opts.Clock.Now()}); ok && left < delay {
			delay = max(left, 0)
		}
	}
	klog.FromContext(ctx).V(4).Info("Looking again later", "csr", k.name, "after", delay)
	c.queue.AddAfter(k, delay)
}

// apply writes an approve or deny decision, hands the recorder an Event
// (the default writer keeps denials only) and reports it.
//
// The write is a JSON patch of the approval subresource that sets the
// resourceVersion the policy saw and appends one condition: if the CSR
// changed meanwhile (another approver decided it), the API server refuses
// it and we decide again from the new version. Nothing else of the cached
// copy is sent, so what the cache transform dropped (metadata, an oversized
// request) is never written back.
func (c *Controller) apply(ctx context.Context, logger klog.Logger, csr *certificatesv1.CertificateSigningRequest, d approval.Decision) error {
	now := c.opts.Clock.Now()
	hint := c.hint(d.Reason)
	kv := []any{"verdict", d.Verdict.String(), "reason", d.Reason, "rule", d.Rule, "message", d.Message}
	if hint != "" {
		kv = append(kv, "hint", hint)
	}
	if c.opts.DryRun {
		logger.Info("Dry run: would decide certificate signing request", kv...)
		c.decided(csr, d, now)
		return nil
	}
	patch, err := approvalPatch(csr, condition(d, now))
	if err != nil {
		return err
	}
	_, err = c.opts.Client.CertificatesV1().CertificateSigningRequests().Patch(ctx, csr.Name, types.JSONPatchType, patch, metav1.PatchOptions{}, "approval")
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("writing %s decision: %w", d.Verdict, err)
	}
	logger.Info("Decided certificate signing request", kv...)
	eventType := corev1.EventTypeNormal
	if d.Verdict == approval.Deny {
		eventType = corev1.EventTypeWarning
	}
	c.recorder.Event(csr, eventType, d.Reason, withHint(d.Message, hint))
	c.decided(csr, d, now)
	return nil
}

// approvalPatch is the JSON patch (RFC 6902) that adds cond to csr's
// conditions, valid only if the CSR is still at csr's resourceVersion.
func approvalPatch(csr *certificatesv1.CertificateSigningRequest, cond certificatesv1.CertificateSigningRequestCondition) ([]byte, error) {
	type op struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	ops := []op{{Op: "replace", Path: "/metadata/resourceVersion", Value: csr.ResourceVersion}}
	if len(csr.Status.Conditions) == 0 {
		ops = append(ops, op{Op: "add", Path: "/status/conditions", Value: []certificatesv1.CertificateSigningRequestCondition{cond}})
	} else {
		ops = append(ops, op{Op: "add", Path: "/status/conditions/-", Value: cond})
	}
	b, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("encoding the decision: %w", err)
	}
	return b, nil
}

func (c *Controller) decided(csr *certificatesv1.CertificateSigningRequest, d approval.Decision, now time.Time) {
	if c.opts.Hooks.Decided != nil {
		c.opts.Hooks.Decided(csr.Spec.SignerName, d, now.Sub(csr.CreationTimestamp.Time))
	}
}

func condition(d approval.Decision, now time.Time) certificatesv1.CertificateSigningRequestCondition {
	typ := certificatesv1.CertificateApproved
	if d.Verdict == approval.Deny {
		typ = certificatesv1.CertificateDenied
	}
	return certificatesv1.CertificateSigningRequestCondition{
		Type: typ, Status: corev1.ConditionTrue, Reason: d.Reason, Message: d.Message,
		LastUpdateTime: metav1.NewTime(now),
	}
}
