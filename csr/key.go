// Package csr describes what a node asks the API server for, and checks
// what comes back, without talking to it (package csrwait does that): it
// generates, parses and encodes private keys; describes a request (signer,
// subject, usages, SANs, lifetime) and turns it into a certificates.k8s.io/v1
// object; derives the kubelet's deterministic CSR name; decides whether an
// existing CSR can be re-attached to; reads a CSR's outcome; and checks an
// issued certificate before it is stored.
//
// It also holds the one error vocabulary of tlsboot (see errors.go): the
// typed errors that csrwait, bootstrap and rotation return, and that
// messages, metric labels and retry decisions read with errors.Is and
// errors.As. Everything here is pure and safe for concurrent use; it does
// not import client-go, so the approver's policy can share it.
package csr

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// KeyType names a private key algorithm and size.
type KeyType string

// The key types GenerateKey accepts. ECDSA P-256 is the default: it is what
// client-go's keyutil generates, so a kubelet reading our files sees the kind
// of key it would have made itself.
const (
	ECDSAP256 KeyType = "ecdsa-p256"
	ECDSAP384 KeyType = "ecdsa-p384"
	RSA2048   KeyType = "rsa-2048"
	RSA3072   KeyType = "rsa-3072"
	RSA4096   KeyType = "rsa-4096"

	DefaultKeyType = ECDSAP256
)

// KeyTypes lists the valid key types, default first.
func KeyTypes() []KeyType {
	return []KeyType{ECDSAP256, ECDSAP384, RSA2048, RSA3072, RSA4096}
}

// ParseKeyType parses a key type name such as "rsa-2048". The empty string
// means DefaultKeyType.
func ParseKeyType(s string) (KeyType, error) {
	if s == "" {
		return DefaultKeyType, nil
	}
	names := make([]string, 0, len(KeyTypes()))
	for _, t := range KeyTypes() {
		if string(t) == s {
			return t, nil
		}
		names = append(names, string(t))
	}
	return "", fmt.Errorf("unknown key type %q: valid types are %s", s, strings.Join(names, ", "))
}

// GenerateKey generates a new private key of type t (DefaultKeyType if t is
// empty) from crypto/rand.
func GenerateKey(t KeyType) (crypto.Signer, error) {
	if t == "" {
		t = DefaultKeyType
	}
	var (
		key crypto.Signer
		err error
	)
	switch t {
	case ECDSAP256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RSA2048:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case RSA3072:
		key, err = rsa.GenerateKey(rand.Reader, 3072)
	case RSA4096:
		key, err = rsa.GenerateKey(rand.Reader, 4096)
	default:
		_, err := ParseKeyType(string(t))
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("generating %s key: %w", t, err)
	}
	return key, nil
}

// PEM block types, the same ones client-go's keyutil reads and writes.
const (
	blockEC    = "EC PRIVATE KEY"
	blockRSA   = "RSA PRIVATE KEY"
	blockPKCS8 = "PRIVATE KEY"
)

// ParsePrivateKeyPEM returns the first ECDSA or RSA private key in data, which
// may be SEC 1 ("EC PRIVATE KEY"), PKCS #1 ("RSA PRIVATE KEY") or PKCS #8
// ("PRIVATE KEY"). Other blocks, such as the certificates that share a file
// with the key in the kubelet's store, are skipped. Errors never contain key
// material.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no private key found in PEM data")
		}
		switch block.Type {
		case blockEC, blockRSA, blockPKCS8:
		default:
			continue
		}
		if _, ok := block.Headers["Proc-Type"]; ok {
			return nil, fmt.Errorf("PEM block %d (%s): encrypted private keys are not supported", n, block.Type)
		}
		key, err := parseKeyBlock(block)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d (%s): %w", n, block.Type, err)
		}
		return key, nil
	}
}

func parseKeyBlock(block *pem.Block) (crypto.Signer, error) {
	switch block.Type {
	case blockEC:
		return x509.ParseECPrivateKey(block.Bytes)
	case blockRSA:
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	switch key := key.(type) {
	case *ecdsa.PrivateKey:
		return key, nil
	case *rsa.PrivateKey:
		return key, nil
	}
	// The kubelet's store reads only ECDSA and RSA keys, so accepting others
	// here would only move the failure to a later, more confusing place.
	return nil, fmt.Errorf("unsupported PKCS #8 key type %T: want ECDSA or RSA", key)
}

// CertificateKey returns the private key of cert as a signer, with its PEM
// as MarshalPrivateKeyPEM writes it: what a request that reuses the
// current key asks with. The error is one line: the key cannot sign, or is
// neither ECDSA nor RSA.
func CertificateKey(cert *tls.Certificate) (crypto.Signer, []byte, error) {
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("the certificate's private key (%T) cannot sign", cert.PrivateKey)
	}
	keyPEM, err := MarshalPrivateKeyPEM(signer)
	if err != nil {
		return nil, nil, err
	}
	return signer, keyPEM, nil
}

// MarshalPrivateKeyPEM encodes an ECDSA key as "EC PRIVATE KEY" (SEC 1) and an
// RSA key as "RSA PRIVATE KEY" (PKCS #1), as client-go's keyutil does, so that
// the kubelet can read the files we write.
func MarshalPrivateKeyPEM(key crypto.Signer) ([]byte, error) {
	switch key := key.(type) {
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("marshaling ECDSA private key: %w", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: blockEC, Bytes: der}), nil
	case *rsa.PrivateKey:
		der := x509.MarshalPKCS1PrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: blockRSA, Bytes: der}), nil
	}
	return nil, fmt.Errorf("unsupported private key type %T: want *ecdsa.PrivateKey or *rsa.PrivateKey", key)
}
