package csr

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
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
		data    []byte  // if set, used instead of issuing spec
		want    Problem // "" means accepted
		wantErr string  // part of the Detail
	}{
		{name: "client ok", spec: certSpec{key: key.Public(), subject: subject}, req: client},
		{name: "serving ok, SANs in another order",
			spec: certSpec{key: key.Public(), subject: subject, dns: []string{"node-a.example", "node-a"}, ips: []net.IP{net.ParseIP("10.0.0.1")}},
			req:  serving},
		{name: "other key", spec: certSpec{key: other.Public(), subject: subject}, req: client,
			want: ProblemKey, wantErr: "not the public key of the request"},
		{name: "other CN", spec: certSpec{key: key.Public(), subject: pkix.Name{CommonName: "system:node:node-b", Organization: subject.Organization}},
			req: client, want: ProblemNames, wantErr: `CN "system:node:node-b", requested "system:node:node-a"`},
		{name: "other O", spec: certSpec{key: key.Public(), subject: pkix.Name{CommonName: subject.CommonName, Organization: []string{"system:masters"}}},
			req: client, want: ProblemNames, wantErr: `O ["system:masters"], requested ["system:nodes"]`},
		{name: "missing DNS name", spec: certSpec{key: key.Public(), subject: subject, dns: []string{"node-a"}, ips: []net.IP{net.ParseIP("10.0.0.1")}},
			req: serving, want: ProblemNames, wantErr: "DNS names"},
		{name: "other IP", spec: certSpec{key: key.Public(), subject: subject, dns: serving.DNSNames, ips: []net.IP{net.ParseIP("10.0.0.2")}},
			req: serving, want: ProblemNames, wantErr: `IP addresses ["10.0.0.2"], requested ["10.0.0.1"]`},
		{name: "expired", spec: certSpec{key: key.Public(), subject: subject, notBefore: testNow.Add(-48 * time.Hour), notAfter: testNow.Add(-time.Second)},
			req: client, want: ProblemValidity, wantErr: "expired at 2030-01-02T03:04:04Z"},
		{name: "not yet valid", spec: certSpec{key: key.Public(), subject: subject, notBefore: testNow.Add(time.Minute)},
			req: client, want: ProblemValidity, wantErr: "not valid until 2030-01-02T03:05:05Z"},
		{name: "not PEM", data: []byte("junk"), req: client, want: ProblemParse, wantErr: "no PEM CERTIFICATE block"},
		{name: "bad DER", data: []byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"), req: client, want: ProblemParse, wantErr: "certificate 1 of the chain: x509: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.data
			if data == nil {
				data = issue(t, tt.spec)
			}
			cert, err := CheckIssued("node-csr-x", data, key, tt.req, testNow, nil)
			if tt.want == "" {
				if err != nil || cert == nil {
					t.Fatalf("Check() = %v, %v", cert, err)
				}
				if block, _ := pem.Decode(data); block == nil || !bytes.Equal(cert.Raw, block.Bytes) {
					t.Error("Check() did not return the leaf (the first certificate of the chain)")
				}
				return
			}
			var ce *CertificateError
			if !errors.As(err, &ce) || ce.Problem != tt.want || ce.CSR != "node-csr-x" || !strings.Contains(ce.Detail, tt.wantErr) {
				t.Fatalf("CheckIssued() error = %v, want a *CertificateError for node-csr-x, problem %q, detail containing %q", err, tt.want, tt.wantErr)
			}
			msg := err.Error()
			for _, w := range []string{"certificate signing request node-csr-x: the signer returned " + string(tt.want), "not stored", "kubectl delete csr node-csr-x"} {
				if !strings.Contains(msg, w) || strings.Contains(msg, "\n") {
					t.Errorf("error %q does not contain %q on one line", msg, w)
				}
			}
		})
	}
}
