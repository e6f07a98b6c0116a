package approval

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	certificatesv1 "k8s.io/api/certificates/v1"

	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/token/binding"
)

func TestEcho(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"short", "abc", `"abc"`},
		{"empty", "", `""`},
		{"control characters are escaped", "a\nb\x00", `"a\nb\x00"`},
		{"long", strings.Repeat("a", 1000), `"` + strings.Repeat("a", echoBytes) + `"…(800 more bytes)`},
		{"escapes count against the bound", strings.Repeat("\x00", 100), `"` + strings.Repeat(`\x00`, echoBytes/4) + `"…(50 more bytes)`},
		{"a rune is never split", strings.Repeat("é", 150), `"` + strings.Repeat("é", echoBytes/2) + `"…(100 more bytes)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := echo(tc.in); got != tc.want {
				t.Errorf("echo = %s, want %s", got, tc.want)
			}
		})
	}
	for _, in := range []string{strings.Repeat("\xff", 5000), strings.Repeat("\u2028", 5000), strings.Repeat("\U0010FFFF", 5000)} {
		got := echo(in)
		if !utf8.ValidString(got) || len(got) > echoBytes+40 {
			t.Errorf("echo of %d bytes: %d bytes, valid UTF-8 %v", len(in), len(got), utf8.ValidString(got))
		}
	}
}

func TestEchoList(t *testing.T) {
	if got, want := echoList("names", []string{"a", "b"}), `["a" "b"]`; got != want {
		t.Errorf("echoList = %s, want %s", got, want)
	}
	many := make([]string, 812)
	for i := range many {
		many[i] = strings.Repeat("x", 1000)
	}
	got := echoList("DNS names", many)
	if !strings.HasPrefix(got, "first 5 of 812 DNS names [") || len(got) > echoItems*(echoItemBytes+30)+40 {
		t.Errorf("echoList of 812 long names: %d bytes: %.200s", len(got), got)
	}
}

func TestCapMessage(t *testing.T) {
	for _, msg := range []string{strings.Repeat("é", 5000), strings.Repeat("a", MaxMessageBytes+1), strings.Repeat("€", 1000)} {
		got := capMessage(msg)
		if len(got) > MaxMessageBytes || !utf8.ValidString(got) || !strings.HasSuffix(got, "more bytes)") {
			t.Errorf("capMessage of %d bytes: %d bytes, valid UTF-8 %v, ends %q", len(msg), len(got), utf8.ValidString(got), got[len(got)-20:])
		}
	}
	if msg := strings.Repeat("a", MaxMessageBytes); capMessage(msg) != msg {
		t.Error("capMessage changed a message within the bound")
	}
}

// bigSpec is a CSR of about 420 KB, full of SANs, some of them long: the
// old policy echoed all of them in a 318 KB message.
func bigSpec(t *testing.T, signer string) csrSpec {
	s := specFor(signer, testKey(t, "ecdsa"))
	s.dns = []string{strings.Repeat("\x00long", 2000)}
	for i := range 4000 {
		s.dns = append(s.dns, fmt.Sprintf("%090d.example.internal", i))
	}
	for i := range 200 {
		s.ips = append(s.ips, net.IPv4(10, 0, byte(i/250), byte(i%250)))
		s.emails = append(s.emails, fmt.Sprintf("%050d@example.com", i))
		s.uris = append(s.uris, &url.URL{Scheme: "spiffe", Host: "example", Path: fmt.Sprintf("/%050d", i)})
	}
	return s
}

func TestMessagesBounded(t *testing.T) {
	for _, signer := range bothSigners {
		t.Run(signer, func(t *testing.T) {
			s := bigSpec(t, signer)
			obj := s.build(t)
			if n := len(obj.Spec.Request); n < 400<<10 {
				t.Fatalf("request of %d bytes, want about 420 KB", n)
			}
			// Through Decide: refused by size, unread.
			p, _ := New(servingScope)
			d, err := p.Decide(t.Context(), Input{CSR: obj, Node: nodeN1(), Now: t0}, kubeadmAuthz())
			if err != nil || d.Reason != ReasonRequestTooLarge || len(d.Message) > MaxMessageBytes {
				t.Errorf("Decide: %v %s, message of %d bytes: %.300s", err, d.Reason, len(d.Message), d.Message)
			}
			// Every check on its own, as if the size check were gone: each
			// message is bounded by the echo helpers, before capMessage.
			block, _ := pem.Decode(obj.Spec.Request)
			req, err := x509.ParseCertificateRequest(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			node := nodeN1()
			for i := range 3000 {
				node.Status.Addresses = append(node.Status.Addresses, nodeWith(fmt.Sprintf("%0100d", i)).Status.Addresses[4])
			}
			for _, opts := range []Options{{}, servingScope, {AllowedDNSRegex: strings.Repeat("a", 5000)}} {
				p, _ := New(opts)
				c := newCandidate(Input{CSR: obj, Node: node, Now: t0, Cluster: testCluster()}, req)
				for _, check := range p.recogniser(signer).checks {
					if d := check(p, c); d != nil && len(d.Message) > MaxMessageBytes {
						t.Errorf("%s: message of %d bytes: %.300s", d.Reason, len(d.Message), d.Message)
					}
				}
			}
		})
	}
}

// TestEveryMessageBounded runs the checks that echo request content with
// long content and checks that each message stays within MaxEchoBytes plus
// its fixed text.
func TestEveryMessageBounded(t *testing.T) {
	long := strings.Repeat("x", 10_000)
	mods := map[string]func(s *csrSpec){
		"long common name":   func(s *csrSpec) { s.cn = long },
		"long node name":     func(s *csrSpec) { s.cn = csr.NodeCommonPrefix + long },
		"long organizations": func(s *csrSpec) { s.org = []string{long, long, long} },
		"long usages": func(s *csrSpec) {
			s.usages = []certificatesv1.KeyUsage{certificatesv1.KeyUsage(long), certificatesv1.KeyUsage(long)}
		},
		"long requester":      func(s *csrSpec) { s.requester.Username = csr.NodeCommonPrefix + long },
		"long bootstrap user": func(s *csrSpec) { s.requester.Username = "system:bootstrap:" + long },
		"long DNS names":      func(s *csrSpec) { s.dns = []string{long + ".a", long + ".b"} },
		"long emails":         func(s *csrSpec) { s.emails = []string{long + "@a", long + "@b"} },
		"long signer":         func(s *csrSpec) { s.signer = long },
		"long binding groups": func(s *csrSpec) {
			s.requester.Groups = []string{binding.Prefix + long, binding.Prefix + long + "y", binding.Prefix + long + "z"}
		},
		"bound to a long node name": func(s *csrSpec) {
			s.requester.Groups = []string{binding.Prefix + strings.Repeat("y", binding.MaxNodeName)}
		},
	}
	for _, signer := range bothSigners {
		for name, mod := range mods {
			t.Run(signer+"/"+name, func(t *testing.T) {
				s := specFor(signer, testKey(t, "ecdsa"))
				mod(&s)
				p, _ := New(Options{AllowedDNSRegex: `.*`, AllowedIPs: servingScope.AllowedIPs})
				d, err := p.Decide(context.Background(), Input{CSR: s.build(t), Node: nodeN1(), Now: t0}, authorizerFunc(func(context.Context, Requester, string) (bool, error) { return false, nil }))
				if err != nil {
					t.Fatal(err)
				}
				if len(d.Message) > MaxEchoBytes+300 {
					t.Errorf("%v %s: message of %d bytes: %.300s", d.Verdict, d.Reason, len(d.Message), d.Message)
				}
			})
		}
	}
}
