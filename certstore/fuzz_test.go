package certstore_test

import (
	"bytes"
	"crypto"
	"testing"

	"github.com/tlsboot/tlsboot/certstore"
)

func FuzzParsePair(f *testing.F) {
	ca := newIssuer(f)
	p := ca.leaf(f, "ecdsa", "fuzz")
	sec1 := ca.leaf(f, "ec-sec1", "fuzz")
	other := ca.leaf(f, "ecdsa", "other")
	combined := append(bytes.Clone(p.cert), p.key...)
	f.Add(p.cert, p.key)
	f.Add(sec1.cert, sec1.key)
	f.Add(combined, combined)
	f.Add(p.cert, other.key)
	f.Add(p.cert[:len(p.cert)/2], p.key)
	f.Add(p.cert, p.key[:len(p.key)-40])
	f.Add([]byte("garbage"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte{}, []byte{})

	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		cert, err := certstore.ParsePair(certPEM, keyPEM)
		if err != nil {
			return
		}
		if cert.Leaf == nil || len(cert.Certificate) == 0 || !bytes.Equal(cert.Leaf.Raw, cert.Certificate[0]) {
			t.Fatal("success without the leaf set to the first certificate")
		}
		signer, ok := cert.PrivateKey.(crypto.Signer)
		if !ok {
			t.Fatalf("private key %T is not a crypto.Signer", cert.PrivateKey)
		}
		pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(cert.Leaf.PublicKey) {
			t.Fatal("success with a key that does not match the leaf")
		}
	})
}
