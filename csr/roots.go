package csr

import (
	"crypto/x509"
	"fmt"

	"github.com/tlsboot/tlsboot/internal/atomicfile"
)

// RootsError reports a CA file (see LoadRoots) that cannot be read or holds
// no PEM certificate. Err names the file.
type RootsError struct {
	File string
	Err  error
}

func (e *RootsError) Error() string { return "CA file: " + oneLine(e.Err.Error()) }

// Unwrap returns Err.
func (e *RootsError) Unwrap() error { return e.Err }

// LoadRoots reads the PEM certificates of file into a pool, for Check's
// roots: the CAs an issued certificate must chain to when the caller asks
// for that check (tlsboot's --client-ca-file and --serving-ca-file). The
// file is read with atomicfile's size limit (1 MiB); blocks other than
// certificates are skipped. Errors are *RootsError.
func LoadRoots(file string) (*x509.CertPool, error) {
	data, err := atomicfile.ReadFile(file)
	if err != nil {
		return nil, &RootsError{File: file, Err: err}
	}
	certs, err := ParseCertificatesPEM(data)
	if err != nil {
		return nil, &RootsError{File: file, Err: fmt.Errorf("%s holds no PEM certificate", file)}
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}
