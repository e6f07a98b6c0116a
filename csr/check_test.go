package csr

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"strings"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	key, other := mustParseKey(t, fixtureECKey), mustParseKey(t, fixtureRSAKey)
	client := NodeClient("node-a", key.Public())
	serving := NodeServing("node-a", key.Public(), []string{"node-a", "node-a.example"}, []net.IP{net.ParseIP("10.0.0.1")})
	subject := client.Subject
	tests := []struct {
		name    string
		spec    certSpec
		req     Request
		data    []byte // if set, used instead of issuing spec
		wantErr string
	}{
		{name: "client ok", spec: certSpec{key: key.Public(), subject: subject}, req: client},
		{name: "serving ok, SANs in another order",
			spec: certSpec{key: key.Public(), subject: subject, dns: []string{"node-a.example", "node-a"}, ips: []net.IP{net.ParseIP("10.0.0.1")}},
			req:  serving},
		{name: "other key", spec: certSpec{key: other.Public(), subject: subject}, req: client,
			wantErr: "different public key"},
		{name: "other CN", spec: certSpec{key: key.Public(), subject: pkix.Name{CommonName: "system:node:node-b", Organization: subject.Organization}},
			req: client, wantErr: `issued certificate has CN "system:node:node-b", requested "system:node:node-a"`},
		{name: "other O", spec: certSpec{key: key.Public(), subject: pkix.Name{CommonName: subject.CommonName, Organization: []string{"system:masters"}}},
			req: client, wantErr: `O ["system:masters"], requested ["system:nodes"]`},
		{name: "missing DNS name", spec: certSpec{key: key.Public(), subject: subject, dns: []string{"node-a"}, ips: []net.IP{net.ParseIP("10.0.0.1")}},
			req: serving, wantErr: "DNS names"},
		{name: "other IP", spec: certSpec{key: key.Public(), subject: subject, dns: serving.DNSNames, ips: []net.IP{net.ParseIP("10.0.0.2")}},
			req: serving, wantErr: `IP addresses ["10.0.0.2"], requested ["10.0.0.1"]`},
		{name: "expired", spec: certSpec{key: key.Public(), subject: subject, notBefore: testNow.Add(-48 * time.Hour), notAfter: testNow.Add(-time.Second)},
			req: client, wantErr: "expired at 2030-01-02T03:04:04Z"},
		{name: "not yet valid", spec: certSpec{key: key.Public(), subject: subject, notBefore: testNow.Add(time.Minute)},
			req: client, wantErr: "not valid until 2030-01-02T03:05:05Z"},
		{name: "not PEM", data: []byte("junk"), req: client, wantErr: "no PEM CERTIFICATE block"},
		{name: "bad DER", data: []byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"), req: client, wantErr: "parsing issued certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.data
			if data == nil {
				data = issue(t, tt.spec)
			}
			cert, err := Check(data, key, tt.req, testNow, nil)
			if tt.wantErr == "" {
				if err != nil || cert == nil {
					t.Fatalf("Check() = %v, %v", cert, err)
				}
				if block, _ := pem.Decode(data); block == nil || !bytes.Equal(cert.Raw, block.Bytes) {
					t.Error("Check() did not return the leaf (the first certificate of the chain)")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Check() error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}
