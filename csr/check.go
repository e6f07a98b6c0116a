package csr

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Check verifies that certPEM, as issued for r, is usable with key at now and
// returns its leaf: the first certificate of the chain. The leaf must carry
// key's public key, r's common name and organisations, r's DNS names and IP
// addresses if r has any (compared as sets), and be valid at now. Signers may
// rewrite a request, so this is the last line of defence before a
// certificate is stored and served.
func Check(certPEM []byte, key crypto.Signer, r Request, now time.Time) (*x509.Certificate, error) {
	cert, err := leaf(certPEM)
	if err != nil {
		return nil, err
	}
	if !publicKeyEqual(cert.PublicKey, key.Public()) {
		return nil, errors.New("issued certificate is for a different public key than the one requested")
	}
	if diffs := compareNames(cert.Subject, cert.DNSNames, cert.IPAddresses, r); len(diffs) > 0 {
		parts := make([]string, len(diffs))
		for i, d := range diffs {
			parts[i] = fmt.Sprintf("%s %s, requested %s", d.field, d.got, d.want)
		}
		return nil, fmt.Errorf("issued certificate has %s", strings.Join(parts, "; "))
	}
	switch {
	case now.Before(cert.NotBefore):
		return nil, fmt.Errorf("issued certificate is not valid until %s (now %s)", cert.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case now.After(cert.NotAfter):
		return nil, fmt.Errorf("issued certificate expired at %s (now %s)", cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return cert, nil
}

// leaf returns the first certificate in data.
func leaf(data []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("issued certificate: no PEM CERTIFICATE block found")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing issued certificate: %w", err)
		}
		return cert, nil
	}
}
