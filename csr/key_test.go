package csr

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"k8s.io/client-go/util/keyutil"
)

func TestParseKeyType(t *testing.T) {
	tests := []struct {
		in      string
		want    KeyType
		wantErr bool
	}{
		{"", ECDSAP256, false},
		{"ecdsa-p256", ECDSAP256, false},
		{"ecdsa-p384", ECDSAP384, false},
		{"rsa-2048", RSA2048, false},
		{"rsa-3072", RSA3072, false},
		{"rsa-4096", RSA4096, false},
		{"rsa-1024", "", true},
		{"ECDSA-P256", "", true},
		{"ed25519", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseKeyType(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("ParseKeyType(%q) = %q, %v; want %q, error %t", tt.in, got, err, tt.want, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096") {
				t.Errorf("error %q does not list the valid types", err)
			}
		})
	}
}

func TestGenerateKeyRoundTrip(t *testing.T) {
	tests := []struct {
		typ   KeyType
		check func(any) bool
	}{
		{ECDSAP256, func(k any) bool { e, ok := k.(*ecdsa.PrivateKey); return ok && e.Curve == elliptic.P256() }},
		{ECDSAP384, func(k any) bool { e, ok := k.(*ecdsa.PrivateKey); return ok && e.Curve == elliptic.P384() }},
		{RSA2048, func(k any) bool { r, ok := k.(*rsa.PrivateKey); return ok && r.N.BitLen() == 2048 }},
		{RSA3072, func(k any) bool { r, ok := k.(*rsa.PrivateKey); return ok && r.N.BitLen() == 3072 }},
		{RSA4096, func(k any) bool { r, ok := k.(*rsa.PrivateKey); return ok && r.N.BitLen() == 4096 }},
	}
	for _, tt := range tests {
		t.Run(string(tt.typ), func(t *testing.T) {
			t.Parallel()
			if testing.Short() && tt.typ == RSA4096 {
				t.Skip("slow key generation")
			}
			key, err := GenerateKey(tt.typ)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(key) {
				t.Fatalf("GenerateKey(%s) = %T, wrong kind or size", tt.typ, key)
			}
			data, err := MarshalPrivateKeyPEM(key)
			if err != nil {
				t.Fatal(err)
			}
			wantType := map[bool]string{true: "EC PRIVATE KEY", false: "RSA PRIVATE KEY"}[strings.HasPrefix(string(tt.typ), "ecdsa")]
			if b, _ := pem.Decode(data); b == nil || b.Type != wantType {
				t.Fatalf("PEM block type is not %q", wantType)
			}
			// The kubelet reads our key files with client-go's keyutil.
			theirs, err := keyutil.ParsePrivateKeyPEM(data)
			if err != nil {
				t.Fatalf("keyutil cannot read our key: %v", err)
			}
			ours, err := ParsePrivateKeyPEM(data)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range []any{theirs, ours} {
				if !key.(interface{ Equal(crypto.PrivateKey) bool }).Equal(k) {
					t.Errorf("round trip gave a different key")
				}
			}
		})
	}
}

func TestGenerateKeyUnknownType(t *testing.T) {
	if _, err := GenerateKey("dsa-1024"); err == nil {
		t.Error("GenerateKey(dsa-1024) succeeded")
	}
}

func TestParsePrivateKeyPEM(t *testing.T) {
	ec := mustParseKey(t, fixtureECKey).(*ecdsa.PrivateKey)
	pkcs8 := func(k any) string {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	cert := "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"
	encrypted := "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\nMAA=\n-----END EC PRIVATE KEY-----\n"
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"sec1", fixtureECKey, ""},
		{"pkcs1", fixtureRSAKey, ""},
		{"pkcs8 ecdsa", pkcs8(ec), ""},
		{"pkcs8 rsa", pkcs8(mustParseKey(t, fixtureRSAKey)), ""},
		{"after a certificate", cert + fixtureECKey, ""},
		{"empty", "", "no private key"},
		{"garbage", "not pem", "no private key"},
		{"certificate only", cert, "no private key"},
		{"pkcs8 ed25519", pkcs8(edKey), "unsupported PKCS #8 key type"},
		{"encrypted", encrypted, "encrypted private keys are not supported"},
		{"corrupt", "-----BEGIN EC PRIVATE KEY-----\nMAA=\n-----END EC PRIVATE KEY-----\n", "PEM block 1 (EC PRIVATE KEY)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := ParsePrivateKeyPEM([]byte(tt.in))
			if tt.wantErr == "" {
				if err != nil || key == nil {
					t.Fatalf("ParsePrivateKeyPEM() = %v, %v", key, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParsePrivateKeyPEM() error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestMarshalPrivateKeyPEMUnsupported(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := MarshalPrivateKeyPEM(edKey); err == nil {
		t.Error("MarshalPrivateKeyPEM(ed25519) succeeded")
	}
}

func FuzzParsePrivateKeyPEM(f *testing.F) {
	f.Add([]byte(fixtureECKey))
	f.Add([]byte(fixtureRSAKey))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nMAA=\n-----END RSA PRIVATE KEY-----\n"))
	f.Add([]byte{})
	secret := []byte("MHcCAQEEIG5PbADsjje") // a piece of the fixture's private key
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := ParsePrivateKeyPEM(data)
		if err == nil && key == nil {
			t.Fatal("nil key without error")
		}
		if err != nil && strings.Contains(err.Error(), string(secret)) {
			t.Fatal("error message contains key material")
		}
	})
}

// TestCertificateKey: the key of a certificate comes back as the same
// signer with the PEM MarshalPrivateKeyPEM writes; a key that cannot sign
// or that tlsboot cannot store is a one-line error.
func TestCertificateKey(t *testing.T) {
	ec, err := GenerateKey(ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name    string
		key     crypto.PrivateKey
		wantErr string
	}{
		{name: "ECDSA", key: ec},
		{name: "no key", key: nil, wantErr: "cannot sign"},
		{name: "not a signer", key: "secret", wantErr: "cannot sign"},
		{name: "ed25519", key: ed, wantErr: "unsupported private key type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			signer, keyPEM, err := CertificateKey(&tls.Certificate{PrivateKey: tt.key})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") || signer != nil || keyPEM != nil {
					t.Fatalf("CertificateKey = %v, %q, %v; want only an error containing %q on one line", signer, keyPEM, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if signer != tt.key {
				t.Errorf("signer %v is not the certificate's key", signer)
			}
			if parsed, err := ParsePrivateKeyPEM(keyPEM); err != nil || !parsed.Public().(*ecdsa.PublicKey).Equal(ec.Public()) {
				t.Errorf("PEM parses to %v, %v; want the certificate's key", parsed, err)
			}
		})
	}
}
