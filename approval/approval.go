// Package approval is the policy of tlsboot's CSR approver: given a
// CertificateSigningRequest, the Node it names and that Node's Lease (from
// caches), a view of the rest of the cluster, and a way to ask whether the
// requester holds a permission, it returns a Decision. It never talks to the
// API server itself and keeps no state, so every rule is tested as a plain
// table.
//
// Policy.Decide claims a CSR by its signer, then runs that signer's checks in
// order; the first check that objects decides. When none does, the first of
// the signer's grants that applies decides: it approves if the requester
// holds one of its permissions (asked with SubjectAccessReviews through an
// Authorizer), or outright when it names none. CSRs for other signers, and
// CSRs that already carry a decision, are ignored. The policy table is in
// rules.go; see docs/approver.md for the attacker model.
//
// # Contract: what each check stops
//
// Every CSR, both signers, before anything signer-specific (request.go):
//
//   - Size: a spec.request (or, if the cache dropped it, its recorded size,
//     Input.DroppedRequestBytes) over MaxRequestBytes is denied
//     (RequestTooLarge) without being parsed: no CPU or memory spent on a
//     request built to exhaust them. A request the cache dropped because
//     its requester's pending requests filled MaxPendingBytesPerRequester
//     (Input.OverPendingBudget) is denied unread too (PendingBytesExceeded).
//   - Parse: exactly one PEM CERTIFICATE REQUEST and nothing else (InvalidRequest).
//   - Key (KeyNotAllowed), checked before the signature so that a huge key
//     costs nothing: RSA of 2048 to 8192 bits, ECDSA on P-256 or P-384, or
//     Ed25519. Stops weak keys (RSA-1024, P-224, DSA) and keys outside
//     what Kubernetes clients commonly verify (P-521). Ed25519 is allowed because the signer
//     accepts it: kube-controller-manager v1.37.2's signer
//     (pkg/controller/certificates/authority/authority.go in
//     k8s.io/kubernetes@v1.37.2) passes cr.PublicKey straight to
//     x509.CreateCertificate, which accepts an ed25519.PublicKey.
//   - Signature: the request's self-signature verifies (proof of possession).
//   - Attributes (AttributeNotAllowed): at most one extensionRequest
//     attribute, with one value, and no other attribute. crypto/x509 reads
//     only the first value of every extensionRequest, skips
//     attributes that do not parse and ignores others (challengePassword,
//     Microsoft's extension request); a signer that reads them would see
//     extensions this policy never checked.
//   - Extensions (ExtensionNotAllowed), read from the DER: only
//     subjectAltName, basicConstraints with CA false and no path length,
//     keyUsage without keyCertSign or cRLSign, extKeyUsage with only
//     serverAuth and clientAuth, and subjectKeyIdentifier, each at most
//     once, critical or not; a subjectAltName holds only DNS, IP, email and
//     URI names (crypto/x509 silently skips otherName and the others). Stops
//     a request for a CA certificate, and unknown critical extensions.
//   - Subject: exactly one common name (CommonNameNotNode) and at most one
//     organization (OrganizationNotSystemNodes), counted on the raw
//     attributes: crypto/x509 keeps only the last common name, so a subject
//     with two is read as different identities by different readers. No
//     other attribute (SubjectNotAllowed): no OU, L, ST, C, street, postal
//     code, serialNumber or unknown OID, which the kubelet and kubeadm
//     never send and a signer may copy into the certificate.
//   - At most MaxSANs subject alternative names in all (TooManySANs).
//
// kubernetes.io/kube-apiserver-client-kubelet (checks.go, alive.go), then:
// O exactly [system:nodes]; CN system:node:<name>; the name a lower-case
// DNS-1123 subdomain, as the API server requires of a Node's name
// (InvalidNodeName: stops "WORKER-1", "a..b", "x_y", names no Node can
// have); a requester bound to a node asks only for that node (bound.go:
// spec.groups carry a binding group of package token/binding, as a token
// made by 'tlsboot token create --node-name X' puts there; CN must be
// system:node:X, else TokenBoundToOtherNode; binding groups that do not
// decode or name two nodes are InvalidTokenBinding, never "no binding"); no
// SANs; usages; expiration; a node asks only for itself; a bound requester
// yields one key (TokenAlreadyUsed: another CSR of the same spec.username
// in Input.SameRequester, approved or pending, asks for a different public
// key, or there are more than MaxSameRequester of them); then,
// for a requester other than the node itself (the node is its user name
// AND the system:nodes group: a bootstrap token, or any identity merely
// named like the node, is not), no takeover of a live node (NodeAlive): if
// the Node exists and the caller saw its Lease's renewTime (or, without a
// Lease, its Ready heartbeat) change within Options.NodeAliveGrace of
// Input.Now (Input.Heartbeats, the caller's clock: the node's own time
// stamps never decide), the CSR is denied, or left for a human with
// Options.LeaveLiveNode (Ignore, Notify); when the caller cannot tell yet
// (its watch not synced or broken, or watched for less than the grace
// without a change), no opinion yet (NodeLivenessUnknown: Wait). This stops a leaked bootstrap
// token from minting the identity of a running node; deleting the Node
// object is how an operator re-provisions one. A node whose Lease is stale
// is bootstrapped as before. Last, the SubjectAccessReview: a requester
// asking for its own identity needs the permission selfnodeclient or
// nodeclient (rule kubelet-client-self), anyone else nodeclient (rule
// kubelet-client); without it, no opinion yet (NotAuthorized: Wait).
//
// kubernetes.io/kubelet-serving (serving.go, checks.go), then: requester
// is a node and the CN; O; node name; no email or URI SANs, no wildcards,
// at least one SAN; usages; expiration; then, whatever the scope:
//   - Reserved SANs (SANReserved): no IP that is loopback, unspecified,
//     link-local, multicast, broadcast, in 0.0.0.0/8 or ::/96, inside a
//     service CIDR (Options.ServiceCIDRs and Input.Cluster), or an address
//     of the API server (Input.Cluster) — IPv4-mapped IPv6 forms included;
//     no DNS name "kubernetes", "kubernetes.default", "localhost" or under
//     it, "svc" or under it, under "svc.<ClusterDomain>"; no DNS name that
//     is an IP literal (or reads as one: "127.1", "0x7f.1") or is not a
//     lower-case DNS-1123 subdomain once lower-cased and without its
//     trailing dot; no name or address in Options.ReservedDNS and
//     Options.ReservedCIDRs, nor one Input.Cluster reserves
//     (ClusterView.ReservedBy: the names and IPs of the API server's own
//     serving certificate, the server of kube-public/cluster-info, Service
//     external IPs and load-balancer ingress). Stops a node impersonating
//     the API server (its load-balancer name and VIP included), a Service
//     or the local host. Until Input.Cluster has read the API server's
//     serving certificate once, no opinion yet (APIServerNamesUnknown:
//     Wait): never an approval while the control-plane endpoint is unknown.
//   - Scope (NoServingScope): with neither Options.AllowedDNSRegex nor
//     Options.AllowedIPs, serving CSRs are never approved (Ignore, Notify):
//     a node writes its own status.addresses, so without a scope a
//     compromised node could claim any address.
//   - Scope (SANForbiddenByPolicy): every DNS name matches the anchored
//     pattern and every IP is in the allowed ranges; with no pattern, no
//     DNS name is allowed, with no ranges, no IP.
//   - The Node exists and has addresses (NodeNotFound,
//     NodeAddressesUnknown: Wait); every SAN is one of its addresses
//     (SANNotNodeAddress).
//   - Unique (SANNotUnique): no SAN is also listed by another Node
//     (Input.Cluster): stops a node claiming a neighbour's address.
//
// No permission is asked for (rule kubelet-serving). The approval message
// records the SANs approved and the Node's resourceVersion.
//
// Every Message carries at most MaxEchoBytes of content taken from the
// request (strings quoted and cut by echo, lists cut to their first items
// by echoList) and is at most MaxMessageBytes in all: a request cannot
// inflate the condition, Events or logs.
package approval

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/tlsboot/tlsboot/csr"
)

// Verdict is what to do with a CSR.
type Verdict int

const (
	// Ignore: not ours to decide (another signer, already decided), or left
	// for a human (no serving scope, a live node with
	// Options.LeaveLiveNode, the pending timeout passed). Do not ask again.
	Ignore Verdict = iota
	// Approve: add the Approved condition.
	Approve
	// Deny: add the Denied condition.
	Deny
	// Wait: no opinion yet (the Node does not exist yet, the requester is
	// not authorised yet). Ask again later.
	Wait
)

// String returns the verdict as logged: "approve", "deny", "wait", or
// "ignore" (also for a value that is no Verdict).
func (v Verdict) String() string {
	switch v {
	case Approve:
		return "approve"
	case Deny:
		return "deny"
	case Wait:
		return "wait"
	default:
		return "ignore"
	}
}

// Decision is the policy's answer for one CSR.
type Decision struct {
	Verdict Verdict
	// Reason is a CamelCase word from the Reason constants: the condition
	// reason written on the CSR and a metric label, so its set is bounded.
	Reason string
	// Message tells an operator what was checked or what was wrong. It
	// carries at most MaxEchoBytes of content taken from the request.
	Message string
	// Notify asks the caller to record one Event on the CSR for a decision
	// that leaves it pending (Ignore), so that an operator learns why (for
	// example, serving approval is off until a scope is configured).
	Notify bool
	// Rule names the rule of the policy that decided: the grant that
	// approved or waits for a permission ("kubelet-client",
	// "kubelet-client-self", "kubelet-serving"), otherwise the recogniser
	// that claimed the CSR ("kubelet-client", "kubelet-serving"); empty
	// when none did.
	Rule string
}

// Reasons, with the verdicts that carry them. The package comment says
// which check gives which. Approve always uses ReasonAutoApproved; every
// other reason means that a check objected, except the two of Ignore that
// mean the policy did not look (AlreadyDecided, UnknownSigner).
const (
	ReasonAutoApproved         = "AutoApproved"               // Approve
	ReasonAlreadyDecided       = "AlreadyDecided"             // Ignore
	ReasonUnknownSigner        = "UnknownSigner"              // Ignore
	ReasonInvalidRequest       = "InvalidRequest"             // Deny
	ReasonBadOrganization      = "OrganizationNotSystemNodes" // Deny
	ReasonBadCommonName        = "CommonNameNotNode"          // Deny
	ReasonSANNotAllowed        = "SANNotAllowed"              // Deny
	ReasonMissingSAN           = "MissingSAN"                 // Deny
	ReasonBadUsages            = "UsagesNotAllowed"           // Deny
	ReasonExpirationTooLong    = "ExpirationTooLong"          // Deny
	ReasonRequesterNotNode     = "RequesterNotNode"           // Deny
	ReasonNodeMismatch         = "NodeMismatch"               // Deny
	ReasonSANForbiddenByPolicy = "SANForbiddenByPolicy"       // Deny
	ReasonSANNotNodeAddress    = "SANNotNodeAddress"          // Deny
	ReasonNodeNotFound         = "NodeNotFound"               // Wait
	ReasonNodeAddressesUnknown = "NodeAddressesUnknown"       // Wait
	ReasonNotAuthorized        = "NotAuthorized"              // Wait
	// ReasonPendingTimeout replaces a Wait older than
	// Options.PendingTimeout: Deny with Options.DenyOnTimeout, else Ignore.
	ReasonPendingTimeout = "PendingTimeout"

	// Secure by default (every CSR).
	ReasonRequestTooLarge     = "RequestTooLarge"     // Deny
	ReasonKeyNotAllowed       = "KeyNotAllowed"       // Deny
	ReasonExtensionNotAllowed = "ExtensionNotAllowed" // Deny
	ReasonAttributeNotAllowed = "AttributeNotAllowed" // Deny
	ReasonTooManySANs         = "TooManySANs"         // Deny
	// ReasonSubjectNotAllowed: the subject carries an attribute other
	// than CN and O (OU, L, ST, C, serialNumber…; request.go).
	ReasonSubjectNotAllowed = "SubjectNotAllowed" // Deny
	// ReasonPendingBytesExceeded: the cache dropped the request because
	// its requester's pending requests already filled
	// MaxPendingBytesPerRequester (Input.OverPendingBudget).
	ReasonPendingBytesExceeded = "PendingBytesExceeded" // Deny
	// Secure by default (client CSRs).
	ReasonInvalidNodeName = "InvalidNodeName" // Deny
	ReasonNodeAlive       = "NodeAlive"       // Deny, or Ignore with Notify and Options.LeaveLiveNode
	// ReasonNodeLivenessUnknown: the approver has not watched the node's
	// heartbeat long enough, or without a break, to tell (alive.go).
	ReasonNodeLivenessUnknown = "NodeLivenessUnknown" // Wait
	// Bound tokens (client CSRs; bound.go).
	ReasonTokenBoundToOtherNode = csr.ReasonTokenBoundToOtherNode // Deny
	ReasonInvalidTokenBinding   = csr.ReasonInvalidTokenBinding   // Deny
	ReasonTokenAlreadyUsed      = csr.ReasonTokenAlreadyUsed      // Deny
	// Secure by default (serving CSRs).
	ReasonNoServingScope = "NoServingScope" // Ignore with Notify
	ReasonSANReserved    = "SANReserved"    // Deny
	ReasonSANNotUnique   = "SANNotUnique"   // Deny

	// ReasonAPIServerNamesUnknown: the API server's serving certificate
	// has not been read yet (ClusterView.ReservedBy), so the names and
	// addresses clients reach it by are not known (serving.go).
	ReasonAPIServerNamesUnknown = "APIServerNamesUnknown" // Wait
)

// Requester is who created a CSR, as the API server recorded it in
// spec.username, spec.uid, spec.groups and spec.extra. It is the only
// identity the policy trusts.
type Requester struct {
	Username string
	UID      string
	Groups   []string
	Extra    map[string][]string
}

// requesterOf returns the requester recorded in obj.
func requesterOf(obj *certificatesv1.CertificateSigningRequest) Requester {
	r := Requester{Username: obj.Spec.Username, UID: obj.Spec.UID, Groups: obj.Spec.Groups}
	if len(obj.Spec.Extra) > 0 {
		r.Extra = make(map[string][]string, len(obj.Spec.Extra))
		for k, v := range obj.Spec.Extra {
			r.Extra[k] = []string(v)
		}
	}
	return r
}

// Authorizer answers whether a requester may create
// certificatesigningrequests/<subresource> in certificates.k8s.io: the
// permissions "nodeclient" and "selfnodeclient" that kubeadm's RBAC bindings
// grant. An error means the answer is unknown; Decide returns it and the
// caller asks again later. Implementations must be safe for concurrent use.
type Authorizer interface {
	Authorize(ctx context.Context, r Requester, subresource string) (bool, error)
}

// Input is everything Decide looks at besides permissions, gathered before.
type Input struct {
	CSR *certificatesv1.CertificateSigningRequest
	// Node is the Node named by the request's common name, read from a
	// cache; nil when no such Node exists.
	Node *corev1.Node
	// NodeLease is that node's kubelet Lease in kube-node-lease, read
	// from a cache; nil when there is none. With Node it tells whether the
	// node is alive (client CSRs made with a bootstrap token).
	NodeLease *coordinationv1.Lease
	// Heartbeats is when the caller saw NodeLease's renewTime and Node's
	// Ready heartbeat change, by its own clock: that, not the node's
	// clock, tells whether the node is alive. Nil means the caller cannot
	// tell: a client CSR for an existing Node from anyone but that node
	// then gets no opinion yet (NodeLivenessUnknown).
	Heartbeats *Heartbeats
	// Cluster is the rest of the cluster the policy reads; nil when
	// nothing is known (Options.ServiceCIDRs still apply).
	Cluster ClusterView
	// SameRequester are the other CSRs whose spec.username is this CSR's,
	// read when the requester is bound to a node (its spec.groups carry a
	// binding group, see package token/binding) for the one-key check
	// (TokenAlreadyUsed). It must come from a cache that held every CSR the
	// API server stored before this one when this one was read, such as the
	// informer cache this CSR was read from: that is what keeps two CSRs
	// with different keys from one bound token from both being approved
	// (see checkOneKeyPerToken). CSRs of other signers, or this CSR itself,
	// may be included: they are skipped.
	SameRequester []*certificatesv1.CertificateSigningRequest
	// DroppedRequestBytes is the size of spec.request when the cache
	// dropped it for being over MaxRequestBytes; 0 otherwise.
	DroppedRequestBytes int
	// OverPendingBudget: the cache dropped spec.request (of at most
	// MaxRequestBytes) because the requester's other pending requests
	// already held MaxPendingBytesPerRequester; the CSR is denied unread
	// (PendingBytesExceeded).
	OverPendingBudget bool
	// Now is the current time; it decides the pending timeout.
	Now time.Time
}

// Options configures a Policy. The zero value approves the client CSRs
// kube-controller-manager would, less those every Policy refuses whatever
// its options: the request checks (size, key, attributes, extensions,
// subject, SAN count), invalid node names (InvalidNodeName), a bound
// token's request for another node or a second key, and a bootstrap
// token's request for a live node (NodeAlive, denied). It approves no
// serving CSR: without a scope (AllowedDNSRegex, AllowedIPs) every one is
// left pending (NoServingScope). It sets no expiration limit and no
// pending timeout, and its NodeAliveGrace is DefaultNodeAliveGrace.
type Options struct {
	// MaxExpiration denies CSRs whose spec.expirationSeconds is longer.
	// Zero means no limit; otherwise it is at least csr.MinExpiration.
	// CSRs without expirationSeconds get the signer's default duration and
	// are not affected.
	MaxExpiration time.Duration
	// AllowedDNSRegex, if set, must match the whole of every DNS name of a
	// serving CSR (New anchors it), in addition to the name being one of
	// the Node's addresses. With AllowedIPs it is the serving scope: with
	// neither, serving CSRs are never approved.
	AllowedDNSRegex string
	// AllowedIPs, if not empty, must contain every IP address of a serving
	// CSR (in addition to the address being one of the Node's).
	AllowedIPs []netip.Prefix
	// ServiceCIDRs are service ranges known by flag, used with those of
	// Input.Cluster: no serving certificate is approved for an IP in any.
	ServiceCIDRs []netip.Prefix
	// ReservedCIDRs and ReservedDNS are never approved in a serving
	// certificate, whatever the scope: the control-plane endpoint, VIPs
	// and names the approver cannot see in the cluster (a load balancer
	// in front of the API server, an ingress). ReservedDNS are exact
	// names, compared like every other name (lower-cased, without a
	// trailing dot); each must be a DNS-1123 subdomain, not an IP address.
	ReservedCIDRs []netip.Prefix
	ReservedDNS   []string
	// ClusterDomain is the cluster's DNS domain; "" means
	// DefaultClusterDomain. Names under .svc.<domain> are never approved.
	ClusterDomain string
	// NodeAliveGrace: a Node whose Lease (or Ready heartbeat) the caller
	// saw renewed within it is alive (see Input.Heartbeats). 0 means
	// DefaultNodeAliveGrace.
	NodeAliveGrace time.Duration
	// LeaveLiveNode leaves a bootstrap client CSR for a live node for a
	// human (Ignore, with Notify) instead of denying it.
	LeaveLiveNode bool
	// PendingTimeout is how long a CSR may wait for an opinion (see Wait),
	// counted from its creation. Zero means forever.
	PendingTimeout time.Duration
	// DenyOnTimeout denies a CSR whose PendingTimeout passed; otherwise it
	// is left for a human (Ignore).
	DenyOnTimeout bool
}

// Validate reports the first invalid option as an *OptionError.
func (o Options) Validate() error {
	if o.MaxExpiration < 0 {
		return &OptionError{"MaxExpiration", errors.New("must not be negative")}
	}
	if o.MaxExpiration > 0 && o.MaxExpiration < csr.MinExpiration {
		return &OptionError{"MaxExpiration", fmt.Errorf("%s is shorter than the %s the API server requires of spec.expirationSeconds, so every CSR that sets it would be denied: use at least %s, or 0 for no limit",
			o.MaxExpiration, csr.MinExpiration, csr.MinExpiration)}
	}
	if o.PendingTimeout < 0 {
		return &OptionError{"PendingTimeout", errors.New("must not be negative")}
	}
	for _, p := range o.AllowedIPs {
		if !p.IsValid() {
			return &OptionError{"AllowedIPs", fmt.Errorf("prefix %v is not valid", p)}
		}
	}
	if err := o.validateReserved(); err != nil {
		return err
	}
	if o.AllowedDNSRegex != "" {
		// Compiled alone first: a pattern such as "a)|(b" would otherwise
		// escape the anchoring group below.
		if _, err := regexp.Compile(o.AllowedDNSRegex); err != nil {
			return &OptionError{"AllowedDNSRegex", err}
		}
		if _, err := regexp.Compile(`^(?:` + o.AllowedDNSRegex + `)$`); err != nil {
			return &OptionError{"AllowedDNSRegex", err}
		}
	}
	return nil
}

// OptionError reports an invalid field of Options. A command maps Option
// to its own flag name; Error alone names the field.
type OptionError struct {
	Option string // the Options field, e.g. "MaxExpiration"
	Err    error  // what is wrong with it
}

func (e *OptionError) Error() string { return "approval option " + e.Option + ": " + e.Err.Error() }

// Unwrap returns Err.
func (e *OptionError) Unwrap() error { return e.Err }

// Policy decides CSRs. It is immutable and safe for concurrent use.
type Policy struct {
	opts        Options
	dnsScope    *regexp.Regexp // AllowedDNSRegex, anchored; nil when unset
	recognisers []recogniser
}

// New returns the policy for opts, or the error of opts.Validate.
func New(opts Options) (*Policy, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	p := &Policy{opts: opts, recognisers: recognisers()}
	if opts.AllowedDNSRegex != "" {
		// Anchored whatever the operator wrote: a pattern never matches a
		// substring of a name.
		p.dnsScope = regexp.MustCompile(`^(?:` + opts.AllowedDNSRegex + `)$`)
	}
	return p, nil
}

// Signers lists the signer names the policy claims CSRs for.
func (p *Policy) Signers() []string {
	s := make([]string, len(p.recognisers))
	for i, r := range p.recognisers {
		s[i] = r.signer
	}
	return s
}

// Decide returns the decision for in. It calls authz (with ctx, its only
// use) only for a CSR that passed every check of a grant with permissions,
// and never more than that grant's permissions. The error is non-nil only
// when authz failed (ctx's error included); the decision is then
// meaningless and the caller retries. Safe for concurrent use.
func (p *Policy) Decide(ctx context.Context, in Input, authz Authorizer) (Decision, error) {
	if Decided(in.CSR) {
		return Decision{Verdict: Ignore, Reason: ReasonAlreadyDecided, Message: "the request already has a decision or a certificate"}, nil
	}
	rec := p.recogniser(in.CSR.Spec.SignerName)
	if rec == nil {
		return Decision{Verdict: Ignore, Reason: ReasonUnknownSigner, Message: "signer " + echo(in.CSR.Spec.SignerName) + " is not handled"}, nil
	}
	d, err := p.run(ctx, rec, in, authz)
	if err != nil {
		return Decision{}, err
	}
	if d.Rule == "" {
		d.Rule = rec.name
	}
	d = p.timeout(d, in)
	d.Message = capMessage(d.Message)
	return d, nil
}

func (p *Policy) recogniser(signer string) *recogniser {
	for i := range p.recognisers {
		if p.recognisers[i].signer == signer {
			return &p.recognisers[i]
		}
	}
	return nil
}

// run bounds the request's size, parses it, runs rec's checks in order,
// then rec's grants.
func (p *Policy) run(ctx context.Context, rec *recogniser, in Input, authz Authorizer) (Decision, error) {
	if d := requestTooLarge(in); d != nil {
		return *d, nil
	}
	req, err := parseUnverified(in.CSR.Spec.Request)
	if err != nil {
		return deny(ReasonInvalidRequest, "%v", err), nil
	}
	c := newCandidate(in, req)
	for _, check := range rec.checks {
		if d := check(p, c); d != nil {
			return *d, nil
		}
	}
	return rec.decideGrant(ctx, c, authz)
}

// timeout turns a Wait older than the pending timeout into a deny or an
// ignore, by option.
func (p *Policy) timeout(d Decision, in Input) Decision {
	if d.Verdict != Wait || p.opts.PendingTimeout == 0 {
		return d
	}
	age := in.Now.Sub(in.CSR.CreationTimestamp.Time)
	if age < p.opts.PendingTimeout {
		return d
	}
	msg := fmt.Sprintf("no decision within the pending timeout of %s: %s", p.opts.PendingTimeout, d.Message)
	if p.opts.DenyOnTimeout {
		return Decision{Verdict: Deny, Reason: ReasonPendingTimeout, Message: msg, Rule: d.Rule}
	}
	return Decision{Verdict: Ignore, Reason: ReasonPendingTimeout, Message: msg + "; left for a human to decide", Rule: d.Rule}
}

// PendingTimeoutIn reports how long until in.CSR's pending timeout passes,
// so that a caller can look again no later than that; ok is false when there
// is no timeout.
func (p *Policy) PendingTimeoutIn(in Input) (remaining time.Duration, ok bool) {
	if p.opts.PendingTimeout == 0 {
		return 0, false
	}
	return p.opts.PendingTimeout - in.Now.Sub(in.CSR.CreationTimestamp.Time), true
}

// NodeName returns the node named by obj's common name
// ("system:node:<name>"), or "" if it names none, or if spec.request is over
// MaxRequestBytes or does not parse. It does not verify the request's
// signature: the name only picks the cached Node, Lease and index entries
// to read, and Decide verifies the signature (R4), after bounding the key,
// before any decision. (Verifying here cost three more signature checks
// per CSR, one in the informer's only goroutine, and ran on keys not yet
// bounded.)
func NodeName(obj *certificatesv1.CertificateSigningRequest) string {
	req, err := parseUnverified(obj.Spec.Request)
	if err != nil {
		return ""
	}
	name, ok := strings.CutPrefix(req.Subject.CommonName, csr.NodeCommonPrefix)
	if !ok {
		return ""
	}
	return name
}

// Decided reports whether obj already carries a decision (Approved, Denied
// or Failed) or a certificate: then there is nothing left to decide.
func Decided(obj *certificatesv1.CertificateSigningRequest) bool {
	if len(obj.Status.Certificate) > 0 {
		return true
	}
	for _, c := range obj.Status.Conditions {
		switch c.Type {
		case certificatesv1.CertificateApproved, certificatesv1.CertificateDenied, certificatesv1.CertificateFailed:
			return true
		}
	}
	return false
}

// parseRequest parses a CSR's spec.request and checks its signature (which
// proves possession of the private key). A request over MaxRequestBytes is
// refused unread.
func parseRequest(data []byte) (*x509.CertificateRequest, error) {
	req, err := parseUnverified(data)
	if err != nil {
		return nil, err
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("spec.request has a bad signature: %w", err)
	}
	return req, nil
}

// parseUnverified parses a request of at most MaxRequestBytes: one PEM
// CERTIFICATE REQUEST block and nothing else but white space. It does not
// check the signature (checkSignature does, after checkKey has bounded the
// key).
func parseUnverified(data []byte) (*x509.CertificateRequest, error) {
	if len(data) > MaxRequestBytes {
		return nil, fmt.Errorf("spec.request is %d bytes, more than the %d allowed", len(data), MaxRequestBytes)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("spec.request is not a PEM CERTIFICATE REQUEST")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("spec.request has data after its PEM CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("spec.request does not parse: %w", err)
	}
	return req, nil
}

func denyp(reason, format string, args ...any) *Decision {
	d := deny(reason, format, args...)
	return &d
}

func deny(reason, format string, args ...any) Decision {
	return Decision{Verdict: Deny, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

func wait(reason, format string, args ...any) Decision {
	return Decision{Verdict: Wait, Reason: reason, Message: fmt.Sprintf(format, args...)}
}
