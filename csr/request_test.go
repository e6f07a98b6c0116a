package csr

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
)

func TestNodeUsages(t *testing.T) {
	ec, rsaKey := mustParseKey(t, fixtureECKey).Public(), mustParseKey(t, fixtureRSAKey).Public()
	tests := []struct {
		name       string
		req        Request
		wantSigner string
		want       []certificatesv1.KeyUsage
	}{
		{"client ecdsa", NodeClient("n", ec), certificatesv1.KubeAPIServerClientKubeletSignerName,
			[]certificatesv1.KeyUsage{"digital signature", "client auth"}},
		{"client rsa", NodeClient("n", rsaKey), certificatesv1.KubeAPIServerClientKubeletSignerName,
			[]certificatesv1.KeyUsage{"digital signature", "client auth", "key encipherment"}},
		{"serving ecdsa", NodeServing("n", ec, []string{"n"}, nil), certificatesv1.KubeletServingSignerName,
			[]certificatesv1.KeyUsage{"digital signature", "server auth"}},
		{"serving rsa", NodeServing("n", rsaKey, nil, []net.IP{net.IPv4(10, 0, 0, 1)}), certificatesv1.KubeletServingSignerName,
			[]certificatesv1.KeyUsage{"digital signature", "server auth", "key encipherment"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !slices.Equal(tt.req.Usages, tt.want) {
				t.Errorf("usages = %q, want %q (in this order)", tt.req.Usages, tt.want)
			}
			if tt.req.SignerName != tt.wantSigner {
				t.Errorf("signer = %q, want %q", tt.req.SignerName, tt.wantSigner)
			}
			if tt.req.Subject.CommonName != "system:node:n" || !slices.Equal(tt.req.Subject.Organization, []string{"system:nodes"}) {
				t.Errorf("subject = %v, want CN=system:node:n, O=system:nodes", tt.req.Subject)
			}
			if err := tt.req.Validate(); err != nil {
				t.Errorf("Validate() = %v", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	pub := mustParseKey(t, fixtureECKey).Public()
	valid := NodeClient("n", pub)
	tests := []struct {
		name    string
		mutate  func(*Request)
		wantErr string
	}{
		{"valid", func(*Request) {}, ""},
		{"expiration at minimum", func(r *Request) { r.Expiration = 10 * time.Minute }, ""},
		{"no signer", func(r *Request) { r.SignerName = "" }, "no signer name"},
		{"unqualified signer", func(r *Request) { r.SignerName = "kubelet" }, "not of the form"},
		{"no CN", func(r *Request) { r.Subject.CommonName = "" }, "no subject common name"},
		{"no usages", func(r *Request) { r.Usages = nil }, "no key usages"},
		{"unknown usage", func(r *Request) { r.Usages = []certificatesv1.KeyUsage{"flying"} }, `unknown key usage "flying"`},
		{"duplicate usage", func(r *Request) { r.Usages = append(r.Usages, "client auth") }, "listed twice"},
		{"short expiration", func(r *Request) { r.Expiration = 9 * time.Minute }, "expiration 9m0s is too short: the API server requires at least 10m0s"},
		{"huge expiration", func(r *Request) { r.Expiration = 1 << 62 }, "too long"},
		{"client with SANs", func(r *Request) { r.DNSNames = []string{"n"} }, "does not accept"},
		{"serving without SANs", func(r *Request) { r.SignerName = certificatesv1.KubeletServingSignerName }, "needs at least one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := valid
			r.Usages = slices.Clone(valid.Usages)
			tt.mutate(&r)
			err := r.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestRequestPEM(t *testing.T) {
	key := mustParseKey(t, fixtureRSAKey)
	r := NodeServing("n", key.Public(), []string{"n.example"}, []net.IP{net.ParseIP("10.0.0.1"), net.ParseIP("fd00::1")})
	data, err := r.PEM(key)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		t.Fatal("not a PEM CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := req.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	if d := compareNames(req.Subject, req.DNSNames, req.IPAddresses, r); len(d) > 0 {
		t.Errorf("request differs: %v", d)
	}
	if !publicKeyEqual(req.PublicKey, key.Public()) {
		t.Error("request carries another public key")
	}
	if _, err := (Request{Subject: pkix.Name{CommonName: "x"}}).PEM(nil); err == nil {
		t.Error("PEM(nil) succeeded")
	}
}
