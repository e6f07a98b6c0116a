package certstore

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"
)

// FuzzParsePrivateKey: the pending key parser never panics, accepts only
// ECDSA and RSA keys, and what it accepts survives marshalPrivateKey.
func FuzzParsePrivateKey(f *testing.F) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	ecPEM, _ := marshalPrivateKey(ec)
	rsaPEM, _ := marshalPrivateKey(rk)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(ec)
	f.Add(ecPEM)
	f.Add(rsaPEM)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: blockPKCS8, Bytes: pkcs8}))
	f.Add(append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), ecPEM...))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: blockEC, Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1}}))
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := parsePrivateKey(data)
		if err != nil {
			return
		}
		out, err := marshalPrivateKey(key)
		if err != nil {
			t.Fatalf("parsed key of type %T does not marshal: %v", key, err)
		}
		again, err := parsePrivateKey(out)
		if err != nil || !publicEqual(again.Public(), key.Public()) {
			t.Fatalf("marshalled key does not parse back to itself: %v", err)
		}
	})
}
