package csr

import (
	"crypto"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
)

// Fixture keys for golden CSR names. They are test-only: generated once with
//
//	openssl ecparam -name prime256v1 -genkey -noout
//	openssl genrsa -traditional 2048
//
// and never used for anything else.
const (
	fixtureECKey = `-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIG5PbADsjje+frinARGBhf3M3dPcAV40u9eMZchXe1cZoAoGCCqGSM49
AwEHoUQDQgAEeXiUG2dpC+1N/X6SydxuiHDEKOUhmVAiCSxXzb8swPOQajZnlI0E
sijx6+oVWUOvzrJDgyKWk/Qi93+6tnnLbg==
-----END EC PRIVATE KEY-----
`
	fixtureRSAKey = `-----BEGIN RSA PRIVATE KEY-----
MIIEogIBAAKCAQEAuskWXsUabV+H8v9tEX3drKm87NDhrK8DhpPLfZi25CpRFKee
hbmu4PmVsyrrKmpOIRdwIxeVcIjalYBjLqdA1nc/52YqeRELPCbN/4T5abXxety2
mJ0Ca3en1UyoUyZVlTJVQwYtq1nZSxaWttCuY8t/b64sQihYftxkj3fx44w0vV+p
5pNlzt9DsUOXHZfa3GtwDn/4kguFhOYfheBGB6r8y+G+x2o4lOCZN9F2+P9dMXwQ
lKvm98fiON7uQ4IFZI3r1QTNKDu768fH8YDh5jHQ2gv9JW6hvvxYWIwPMazy/C6i
Emi0xC6szQGKc9kPGjqi4CEbyA/wCfcTspj7xwIDAQABAoIBABqqr9dq43l+/I1M
OzmWkynd99uFfNqnB+VUP2aYgW/0vKuqvJ6R4m47I8y3EWj2UV43FurjqJGu8CoM
8NwNw9t6nfR+6QxsywJU9e8HgIY/lBC65xTFwb0vEZaJwbRRUkGhNHwDq0x94OBw
AqdqBqO3v2Nl5eqyEORXucGj2bRnJu8Chcs/Q+3rXk0IxHRiQEWzXoMlOJMK7adf
HEAKa+Dt2xCVPL94zZICRMJywNOG+k23qkPp9+FJP3MwI0RmTLubzy31l5Cc2SSN
5s0W+E7v1ES/6U7F7KXGSNpbonxmbKhYQ7nihmtldr4H9X40dY5pc6k/QZr1EKZs
t4D6sU0CgYEA5rzQ7Sn4dOhx1/tYuOja2MXMgStTDKhxqeL98AJcaVtSt5tgXzSb
zvXNGQoYcxyyuTmHnFba2GxIFyt4KcZSIp01+9R5ObW3XVkzNqBgqeFb1xbNtEQF
zqx3xWb+BmB+7oXXOQEAYa9CqvX+fMZ2ZHqSSq1IPU2iEhTUPE5nIMMCgYEAzzxe
gXrXn0O4GHtuoyFVf57RfWUeWJFx5G8zUIwvCFFLub9f3HSZRutnNAqo4OLNiouR
BqHsQkpnmZKFtrK+Y+VpZj9fHT5iOuId1wu31zgsoojkSz392LQEGTnNDOEUKPe7
bOT3iRuE3g1ivyXQja37DcWuLUHluys0U6h7SK0CgYB1A8Sgwewyvb8eXWV9QPnb
fVRdHW+ct8AM/AT0Nv5On/WvD6ksHy31I0rELA6CMkehD7/qVVHe9+sHdRAXf3Ag
BcJe2D4yOimnuZjzVxoujQ9aYUIo7WZUjbqf7b9d1IoKxO2FBzD+WTdiJCbPeIaK
Jm8SWBaOoFRU/yMzAj/iqQKBgHvVvTtuJo77LnUivRgqASdDxjdCR4HxV7eDY4yM
WEaGHdQfMa9Q1Y71eDQ28nd/0AcsIzttYvqx73prfg+QfAjBu9vnnnShJJ2/JMmu
LOsknDd7yb/UiW4HFDPmwEsj7KIWdx85K1n44cq3APzsIdWn00+FgvF0YU0ZIimj
khf5AoGAZYP1CcTDD/gV/TJvEAhKd+WP3UR7PeTwn9M3/qdhdCpFRGCD1K3pJjLB
wSAJcRqdKF9ZDpa7L0sViPu0StMJNAXcCtwfdKmWzVHy0/zE+BRjNPLf89gNrdrd
0ZNdmavhbRGKV8cMlmMLNPG7iLS80nO/uiR+MGZOpN6gD0etDsQ=
-----END RSA PRIVATE KEY-----
`
)

func mustParseKey(t testing.TB, pemText string) crypto.Signer {
	t.Helper()
	key, err := ParsePrivateKeyPEM([]byte(pemText))
	if err != nil {
		t.Fatalf("parsing fixture key: %v", err)
	}
	return key
}

// TestNameGolden pins CSR names for the fixture keys. The golden values were
// computed outside Go, with openssl and coreutils, from the kubelet's
// definition (digestedName in pkg/kubelet/certificate/bootstrap):
//
//	b64u() { basenc --base64url -w0 | tr -d '='; }
//	{ openssl pkey -in KEY -pubout -outform DER | b64u; printf '|'
//	  for s in "system:node:node-a" "system:nodes" USAGE...; do printf %s "$s" | b64u; printf '|'; done
//	} | openssl dgst -sha512-256 -binary | b64u
//
// so a change to the Go code cannot silently change the expected value too.
func TestNameGolden(t *testing.T) {
	tests := []struct {
		name string
		key  string
		req  func(crypto.PublicKey) Request
		want string
	}{
		{"ecdsa client", fixtureECKey, func(p crypto.PublicKey) Request { return NodeClient("node-a", p) },
			"node-csr-YxnOpKgXEj73hur8reGXSbzqlC8h6udjtlDFMO2oU4g"},
		{"rsa client", fixtureRSAKey, func(p crypto.PublicKey) Request { return NodeClient("node-a", p) },
			"node-csr-l-YvyK4-obTGYnzhf-_rCNSUCw8swFFJ7Sq_hQzsz9w"},
		{"ecdsa serving", fixtureECKey, func(p crypto.PublicKey) Request { return NodeServing("node-a", p, []string{"node-a"}, nil) },
			"node-csr-BSKdunO0bSUCvjNQZg17oCMHc9QN1_-boLxq7jbE1Nc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := mustParseKey(t, tt.key).Public()
			r := tt.req(pub)
			got, err := digestName(pub, r.Subject, r.Usages)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Name() = %s, want %s", got, tt.want)
			}
			if m, _ := r.Name(pub); m != got {
				t.Errorf("Request.Name() = %s, want %s", m, got)
			}
		})
	}
}

// referenceName is a second, deliberately plain reading of the kubelet's
// naming rule: build the whole hashed string first, then hash it once.
func referenceName(t *testing.T, pub crypto.PublicKey, cn string, orgs []string, usages []certificatesv1.KeyUsage) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	fields := []string{b64(der), b64([]byte(cn))}
	for _, o := range orgs {
		fields = append(fields, b64([]byte(o)))
	}
	for _, u := range usages {
		fields = append(fields, b64([]byte(u)))
	}
	sum := sha512.Sum512_256([]byte(strings.Join(fields, "|") + "|"))
	return "node-csr-" + b64(sum[:])
}

func TestNameMatchesReference(t *testing.T) {
	ec, rsaKey := mustParseKey(t, fixtureECKey), mustParseKey(t, fixtureRSAKey)
	tests := []struct {
		name   string
		key    crypto.Signer
		cn     string
		orgs   []string
		usages []certificatesv1.KeyUsage
	}{
		{"node client", ec, "system:node:a", []string{"system:nodes"}, []certificatesv1.KeyUsage{"digital signature", "client auth"}},
		{"rsa", rsaKey, "system:node:a", []string{"system:nodes"}, []certificatesv1.KeyUsage{"digital signature", "client auth", "key encipherment"}},
		{"empty", ec, "", nil, nil},
		{"several orgs", ec, "x", []string{"a", "b", "c"}, []certificatesv1.KeyUsage{"server auth"}},
		{"unicode", ec, "nœud-é", []string{"ü"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := digestName(tt.key.Public(), pkix.Name{CommonName: tt.cn, Organization: tt.orgs}, tt.usages)
			if err != nil {
				t.Fatal(err)
			}
			if want := referenceName(t, tt.key.Public(), tt.cn, tt.orgs, tt.usages); got != want {
				t.Errorf("Name() = %s, want %s", got, want)
			}
		})
	}
}

func TestNameSeparatesFields(t *testing.T) {
	pub := mustParseKey(t, fixtureECKey).Public()
	a, _ := digestName(pub, pkix.Name{CommonName: "foo", Organization: []string{"bar"}}, nil)
	b, _ := digestName(pub, pkix.Name{CommonName: "foob", Organization: []string{"ar"}}, nil)
	if a == b {
		t.Errorf("CN foo/O bar and CN foob/O ar share the name %s", a)
	}
	// Usage order is part of the name, as in the kubelet.
	c, _ := digestName(pub, pkix.Name{CommonName: "x"}, []certificatesv1.KeyUsage{"client auth", "digital signature"})
	d, _ := digestName(pub, pkix.Name{CommonName: "x"}, []certificatesv1.KeyUsage{"digital signature", "client auth"})
	if c == d {
		t.Error("usage order does not change the name")
	}
}

func TestNameRejectsUnknownKey(t *testing.T) {
	if _, err := digestName(struct{}{}, pkix.Name{CommonName: "x"}, nil); err == nil {
		t.Error("digestName(struct{}{}) succeeded, want error")
	}
}
