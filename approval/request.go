package approval

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
)

// Checks every CSR passes, whatever its signer, before the signer's own.
// They read the request's DER, not only what crypto/x509 made of it:
// crypto/x509 skips attributes and subject alternative names it does not
// understand and keeps only the last common name, and a signer other than
// kube-controller-manager's may read what it skipped.

// Key sizes accepted.
const (
	minRSABits = 2048
	maxRSABits = 8192 // bounds the CPU a signature check may take
)

var (
	oidCommonName       = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidOrganization     = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidExtensionRequest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 14}

	oidSubjectKeyID     = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidSubjectAltName   = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}

	oidServerAuth = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	oidClientAuth = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
)

// Key usage bits (RFC 5280 4.2.1.3) a CA certificate needs.
const (
	keyUsageBitCertSign = 5
	keyUsageBitCRLSign  = 6
)

// GeneralName tags (RFC 5280 4.2.1.6) crypto/x509 reads; it silently skips
// the others (otherName, x400Address, directoryName, ediPartyName,
// registeredID).
const (
	generalNameEmail = 1
	generalNameDNS   = 2
	generalNameURI   = 6
	generalNameIP    = 7
)

// MaxPendingBytesPerRequester is the most spec.request bytes the
// approver's cache keeps for the pending CSRs of one requester
// (spec.username); a pending request past it is dropped unread and denied
// (Input.OverPendingBudget, PendingBytesExceeded).
//
// Why 8 MiB: decided CSRs keep no request at all, so this bounds only what
// waits for a decision. A legitimate burst is many small CSRs from one
// requester — kubeadm's shared bootstrap token, 2,000 nodes at once in
// bench/approver, all pending together if the approver was down — and a
// kubelet's request is 400 to 1,000 bytes (ECDSA P-256 to RSA-2048; RSA-4096
// about 1,700): 8 MiB holds over 4,000 of the largest and about 17,000 of
// the kubelet's own at once. An attacker's requests of up to
// MaxRequestBytes fill it with 128, so a bootstrap token and the one node an
// attacker controls hold at most 16 MiB of pending requests between them.
const MaxPendingBytesPerRequester = 8 << 20

// requestTooLarge denies, before anything parses it, a request over
// MaxRequestBytes (or whose cached copy was dropped for that, with its size
// in in.DroppedRequestBytes), and one the cache dropped for its
// requester's pending budget.
func requestTooLarge(in Input) *Decision {
	size := max(len(in.CSR.Spec.Request), in.DroppedRequestBytes)
	if size > MaxRequestBytes {
		return denyp(ReasonRequestTooLarge, "spec.request is %d bytes, more than the %d allowed: it was not read", size, MaxRequestBytes)
	}
	if in.OverPendingBudget && len(in.CSR.Spec.Request) == 0 {
		return denyp(ReasonPendingBytesExceeded, "requester %s has more requests waiting for a decision than the %d MiB kept per requester: "+
			"this request was not read; create it again once those are decided", echo(in.CSR.Spec.Username), MaxPendingBytesPerRequester>>20)
	}
	return nil
}

// checkKey: RSA of 2048 to 8192 bits, ECDSA on P-256 or P-384, or Ed25519.
// It runs before the signature check, so a huge key costs nothing.
func checkKey(_ *Policy, c *candidate) *Decision {
	switch k := c.req.PublicKey.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < minRSABits || n > maxRSABits {
			return denyp(ReasonKeyNotAllowed, "RSA key of %d bits: RSA keys must have %d to %d bits", n, minRSABits, maxRSABits)
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return denyp(ReasonKeyNotAllowed, "ECDSA key on curve %s: only P-256 and P-384 are allowed", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return denyp(ReasonKeyNotAllowed, "%s key: only RSA (%d to %d bits), ECDSA (P-256, P-384) and Ed25519 keys are allowed", c.req.PublicKeyAlgorithm, minRSABits, maxRSABits)
	}
	return nil
}

// checkSignature: the request's self-signature proves possession of the key.
func checkSignature(_ *Policy, c *candidate) *Decision {
	if err := c.req.CheckSignature(); err != nil {
		return denyp(ReasonInvalidRequest, "spec.request has a bad signature: %v", err)
	}
	return nil
}

// tbsRequest is CertificationRequestInfo (RFC 2986 4.1).
type tbsRequest struct {
	Version       int
	Subject       asn1.RawValue
	PublicKey     asn1.RawValue
	RawAttributes []asn1.RawValue `asn1:"tag:0"`
}

// pkcs10Attribute is Attribute (RFC 2986 4.1).
type pkcs10Attribute struct {
	ID     asn1.ObjectIdentifier
	Values []asn1.RawValue `asn1:"set"`
}

// checkAttributes: the only attribute allowed is one extensionRequest with
// one value, and the extensions it holds are exactly those crypto/x509
// reported. crypto/x509 skips attributes that do not parse, reads only the
// first value of an extensionRequest, and ignores other attributes
// (challengePassword, Microsoft's extension request…), any of which another
// signer might honour.
func checkAttributes(_ *Policy, c *candidate) *Decision {
	exts, d := requestedExtensions(c.req.RawTBSCertificateRequest)
	if d != nil {
		return d
	}
	if !sameExtensions(exts, c.req.Extensions) {
		return denyp(ReasonAttributeNotAllowed, "the requested extensions differ from what crypto/x509 read")
	}
	return nil
}

// requestedExtensions reads the extensionRequest of a DER
// CertificationRequestInfo, strictly.
func requestedExtensions(tbsDER []byte) ([]pkix.Extension, *Decision) {
	var tbs tbsRequest
	if rest, err := asn1.Unmarshal(tbsDER, &tbs); err != nil || len(rest) != 0 {
		return nil, denyp(ReasonInvalidRequest, "spec.request's certification request info does not parse strictly")
	}
	var exts []pkix.Extension
	seen := false
	for i, raw := range tbs.RawAttributes {
		var attr pkcs10Attribute
		if rest, err := asn1.Unmarshal(raw.FullBytes, &attr); err != nil || len(rest) != 0 {
			return nil, denyp(ReasonAttributeNotAllowed, "attribute %d of the request does not parse", i+1)
		}
		if !attr.ID.Equal(oidExtensionRequest) {
			return nil, denyp(ReasonAttributeNotAllowed, "attribute %s is not allowed: only an extension request is", echo(attr.ID.String()))
		}
		if seen || len(attr.Values) != 1 {
			return nil, denyp(ReasonAttributeNotAllowed, "the request must carry at most one extension request, with one value")
		}
		seen = true
		if rest, err := asn1.Unmarshal(attr.Values[0].FullBytes, &exts); err != nil || len(rest) != 0 {
			return nil, denyp(ReasonAttributeNotAllowed, "the extension request does not parse")
		}
	}
	return exts, nil
}

func sameExtensions(a, b []pkix.Extension) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Id.Equal(b[i].Id) || a[i].Critical != b[i].Critical || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

// extensionCheck vets one allowed extension's value; it returns why the
// value is not allowed, or "".
type extensionCheck func(value []byte) string

// allowedExtensions are those a Go or OpenSSL end-entity CSR carries.
var allowedExtensions = []struct {
	oid   asn1.ObjectIdentifier
	name  string
	check extensionCheck
}{
	{oidSubjectAltName, "subjectAltName", checkSANExtension},
	{oidBasicConstraints, "basicConstraints", checkBasicConstraints},
	{oidKeyUsage, "keyUsage", checkKeyUsageExtension},
	{oidExtKeyUsage, "extKeyUsage", checkExtKeyUsageExtension},
	{oidSubjectKeyID, "subjectKeyIdentifier", func([]byte) string { return "" }},
}

// checkExtensions: only the allowed extensions, each once, none making the
// certificate a CA's, critical or not.
func checkExtensions(_ *Policy, c *candidate) *Decision {
	seen := map[string]bool{}
	for _, ext := range c.req.Extensions {
		id := ext.Id.String()
		if seen[id] {
			return denyp(ReasonExtensionNotAllowed, "extension %s appears twice", echo(id))
		}
		seen[id] = true
		allowed := false
		for _, a := range allowedExtensions {
			if !a.oid.Equal(ext.Id) {
				continue
			}
			allowed = true
			if why := a.check(ext.Value); why != "" {
				return denyp(ReasonExtensionNotAllowed, "extension %s: %s", a.name, why)
			}
		}
		if !allowed {
			return denyp(ReasonExtensionNotAllowed, "extension %s (critical %v) is not allowed: only subjectAltName, basicConstraints without CA, keyUsage without certificate or CRL signing, extKeyUsage serverAuth/clientAuth and subjectKeyIdentifier are", echo(id), ext.Critical)
		}
	}
	return nil
}

func checkBasicConstraints(value []byte) string {
	var bc struct {
		IsCA       bool `asn1:"optional"`
		MaxPathLen int  `asn1:"optional,default:-1"`
	}
	if rest, err := asn1.Unmarshal(value, &bc); err != nil || len(rest) != 0 {
		return "does not parse"
	}
	if bc.IsCA || bc.MaxPathLen != -1 {
		return "a CA certificate is not allowed"
	}
	return ""
}

func checkKeyUsageExtension(value []byte) string {
	var bits asn1.BitString
	if rest, err := asn1.Unmarshal(value, &bits); err != nil || len(rest) != 0 {
		return "does not parse"
	}
	if bits.At(keyUsageBitCertSign) != 0 || bits.At(keyUsageBitCRLSign) != 0 {
		return "certificate and CRL signing are not allowed"
	}
	return ""
}

func checkExtKeyUsageExtension(value []byte) string {
	var oids []asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(value, &oids); err != nil || len(rest) != 0 {
		return "does not parse"
	}
	for _, o := range oids {
		if !o.Equal(oidServerAuth) && !o.Equal(oidClientAuth) {
			return fmt.Sprintf("usage %s is not allowed: only serverAuth and clientAuth are", echo(o.String()))
		}
	}
	return ""
}

// checkSANExtension: only the GeneralName types crypto/x509 reads (a signer
// copies those; a name it skipped would reach no certificate, but another
// signer might read it).
func checkSANExtension(value []byte) string {
	_, why := countSANs(value)
	return why
}

// countSANs counts the GeneralNames of a subjectAltName value, and reports
// why the value is not allowed ("" if it is).
func countSANs(value []byte) (int, string) {
	var seq asn1.RawValue
	if rest, err := asn1.Unmarshal(value, &seq); err != nil || len(rest) != 0 ||
		seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return 0, "does not parse"
	}
	n := 0
	for rest := seq.Bytes; len(rest) > 0; n++ {
		var gn asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &gn); err != nil {
			return n, "does not parse"
		}
		if gn.Class != asn1.ClassContextSpecific {
			return n, "does not parse"
		}
		switch gn.Tag {
		case generalNameEmail, generalNameDNS, generalNameURI, generalNameIP:
		default:
			return n, fmt.Sprintf("name of type [%d] is not allowed: only DNS, IP, email and URI names are", gn.Tag)
		}
	}
	return n, ""
}

// subjectAttributeNames are the short names of the subject attributes a
// message names; others are named by their OID.
var subjectAttributeNames = map[string]string{
	"2.5.4.5": "serialNumber", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST",
	"2.5.4.9": "street", "2.5.4.11": "OU", "2.5.4.17": "postalCode",
}

// checkSubject: exactly one common name and at most one organization,
// counted on the raw attributes, and nothing else. crypto/x509 keeps only
// the last common name, and a subject with two is an attempt to be read
// differently by different readers. Any other attribute (OU, L, ST, C,
// serialNumber, an unknown OID…) is denied: the kubelet, kubeadm and
// tlsboot send CN and O only (csr.nodeSubject; the kubelet's
// requestNodeCertificate and its serving certificate manager), the signer
// copies the subject into the certificate, and each attribute is up to the
// whole request of content an approver would otherwise keep.
func checkSubject(_ *Policy, c *candidate) *Decision {
	cns, orgs := 0, 0
	var others []string
	for _, atv := range c.req.Subject.Names {
		switch {
		case atv.Type.Equal(oidCommonName):
			cns++
		case atv.Type.Equal(oidOrganization):
			orgs++
		default:
			name, ok := subjectAttributeNames[atv.Type.String()]
			if !ok {
				name = atv.Type.String()
			}
			others = append(others, name)
		}
	}
	if cns != 1 {
		return denyp(ReasonBadCommonName, "the subject has %d common names: exactly one is required", cns)
	}
	if orgs > 1 {
		return denyp(ReasonBadOrganization, "the subject has %d organizations: at most one is allowed", orgs)
	}
	if len(others) > 0 {
		return denyp(ReasonSubjectNotAllowed, "the subject carries %d attributes other than CN and O (%s): a node certificate's subject has only a common name and an organization",
			len(others), echoList("attributes", others))
	}
	return nil
}

// checkSANCount: at most MaxSANs subject alternative names, counted on the
// raw extension as well as on what crypto/x509 read.
func checkSANCount(_ *Policy, c *candidate) *Decision {
	r := c.req
	n := len(r.DNSNames) + len(r.IPAddresses) + len(r.EmailAddresses) + len(r.URIs)
	for _, ext := range r.Extensions {
		if ext.Id.Equal(oidSubjectAltName) {
			raw, _ := countSANs(ext.Value)
			n = max(n, raw)
		}
	}
	if n > MaxSANs {
		return denyp(ReasonTooManySANs, "the request has %d subject alternative names, more than the %d allowed", n, MaxSANs)
	}
	return nil
}
