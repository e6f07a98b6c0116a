package discovery

import (
	"crypto/x509"
	"strings"
	"testing"
)

// TestMessagesBounded: what a message repeats from the server's answer is
// cut, whatever its size.
func TestMessagesBounded(t *testing.T) {
	long := strings.Repeat("é", 5000)
	if got := bounded(long); len(got) > maxEcho+40 || !strings.Contains(got, "more bytes") {
		t.Errorf("bounded(10000 bytes) = %d bytes %q…, want at most %d and a note", len(got), got[:20], maxEcho+40)
	}
	if got := bounded("short"); got != "short" {
		t.Errorf("bounded(short) = %q", got)
	}
	certs := make([]*x509.Certificate, 50)
	for i := range certs {
		certs[i] = &x509.Certificate{RawSubjectPublicKeyInfo: []byte{byte(i)}}
	}
	if got := pinList(certs); strings.Count(got, "sha256:") != maxPins || !strings.HasSuffix(got, "and 45 more") {
		t.Errorf("pinList(50 certificates) = %q, want %d pins and a count", got, maxPins)
	}
}
