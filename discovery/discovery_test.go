package discovery

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/tlsboot/tlsboot/token"
)

var fastBackoff = wait.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 1 << 30}

func TestParsePin(t *testing.T) {
	h := strings.Repeat("ab", 32)
	for _, tc := range []struct{ in, want string }{
		{"sha256:" + h, "sha256:" + h},
		{"SHA256:" + strings.ToUpper(h), "sha256:" + h},
		{"sha256:" + h[:62], ""},
		{"sha256:" + h + "00", ""},
		{"sha256:" + h[:62] + "zz", ""},
		{"sha1:" + h, ""},
		{h, ""},
		{"sha256:", ""},
		{"", ""},
	} {
		got, err := ParsePin(tc.in)
		if string(got) != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("ParsePin(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if err != nil && (!errors.Is(err, ErrMalformedPin) || strings.Contains(err.Error(), "\n")) {
			t.Errorf("ParsePin(%q): %v", tc.in, err)
		}
	}
}

func FuzzParsePin(f *testing.F) {
	f.Add("sha256:" + strings.Repeat("0", 64))
	f.Add("SHA256:" + strings.Repeat("F", 64))
	f.Add("sha256:xyz")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePin(s)
		if err != nil {
			return
		}
		if !strings.EqualFold(string(p), s) || len(p) != 71 || strings.ToLower(string(p)) != string(p) {
			t.Fatalf("ParsePin(%q) = %q", s, p)
		}
		if again, err := ParsePin(string(p)); err != nil || again != p {
			t.Fatalf("ParsePin is not idempotent on %q: %q, %v", p, again, err)
		}
	})
}

func TestServerURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10.0.0.1:6443", "https://10.0.0.1:6443"},
		{"https://api.example.com:6443", "https://api.example.com:6443"},
		{"https://api.example.com:6443/", "https://api.example.com:6443"},
		{"[::1]:6443", "https://[::1]:6443"},
		{"http://10.0.0.1:6443", ""},
		{"https://10.0.0.1:6443/path", ""},
		{"https://user@10.0.0.1:6443", ""},
		{"", ""},
		{"https://", ""},
	} {
		got, err := ServerURL(tc.in)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("ServerURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	o := Options{Server: "10.0.0.1:6443", Token: realToken}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "a CA pin is required") {
		t.Fatalf("no pin: %v", err)
	}
	o.UnsafeSkipCAVerification = true
	if err := o.Validate(); err != nil {
		t.Fatalf("unsafe: %v", err)
	}
	o.Pins = []Pin{"sha256:00"}
	if err := o.Validate(); !errors.Is(err, ErrMalformedPin) {
		t.Fatalf("bad pin: %v", err)
	}
}

func TestDiscover(t *testing.T) {
	cluster := newCA(t, "cluster")
	other := newCA(t, "other")
	wrong := token.Token{ID: realToken.ID, Secret: "ffffffffffffffff"}
	type setup struct {
		data   func(srv string) func(n int) map[string]string
		pins   []Pin
		unsafe bool
	}
	good := func(srv string) func(int) map[string]string {
		return signed(t, clusterInfo(t, srv, cluster.pem()), realToken)
	}
	for _, tc := range []struct {
		name     string
		setup    setup
		wantKind error
		wantMsg  string
		requests int // 0: do not check
		timeout  time.Duration
	}{
		{name: "good", setup: setup{data: good, pins: []Pin{PinOf(cluster.cert)}}, requests: 2},
		{name: "good among several pins", setup: setup{data: good, pins: []Pin{PinOf(other.cert), PinOf(cluster.cert)}}},
		{name: "signature appears later", setup: setup{pins: []Pin{PinOf(cluster.cert)}, data: func(srv string) func(int) map[string]string {
			s := good(srv)
			return func(n int) map[string]string {
				d := s(n)
				if n < 3 {
					delete(d, "jws-kubeconfig-abcdef")
				}
				return d
			}
		}}, requests: 5, timeout: time.Minute},
		{name: "no signature", setup: setup{pins: []Pin{PinOf(cluster.cert)}, data: func(srv string) func(int) map[string]string {
			return signed(t, clusterInfo(t, srv, cluster.pem()), token.Token{ID: "zzzzzz", Secret: realToken.Secret})
		}}, wantKind: ErrNoSignature, wantMsg: "no signature for token ID abcdef"},
		{name: "wrong secret", setup: setup{pins: []Pin{PinOf(cluster.cert)}, data: func(srv string) func(int) map[string]string {
			return signed(t, clusterInfo(t, srv, cluster.pem()), wrong)
		}}, wantKind: ErrBadSignature, wantMsg: "not with this token's secret", requests: 1},
		{name: "wrong pin prints the presented CA's hash", setup: setup{data: good, pins: []Pin{PinOf(other.cert)}},
			wantKind: ErrPinMismatch, wantMsg: string(PinOf(cluster.cert)), requests: 1},
		{name: "not set up", setup: setup{pins: []Pin{PinOf(cluster.cert)}, data: func(string) func(int) map[string]string {
			return func(int) map[string]string { return nil }
		}}, wantKind: ErrNotSetUp, wantMsg: "tlsboot setup"},
		{name: "no kubeconfig", setup: setup{pins: []Pin{PinOf(cluster.cert)}, data: func(string) func(int) map[string]string {
			return func(int) map[string]string { return map[string]string{} }
		}}, wantKind: ErrNotSetUp, wantMsg: "holds no kubeconfig"},
		{name: "not a kubeconfig", setup: setup{pins: []Pin{PinOf(cluster.cert)}, data: func(string) func(int) map[string]string {
			return signed(t, "{{{", realToken)
		}}, wantKind: ErrMalformed, wantMsg: "does not parse"},
		{name: "http server", setup: setup{pins: []Pin{PinOf(cluster.cert)}, data: func(string) func(int) map[string]string {
			return signed(t, clusterInfo(t, "http://x", cluster.pem()), realToken)
		}}, wantKind: ErrMalformed, wantMsg: "not an https URL"},
		{name: "no CA", setup: setup{pins: []Pin{PinOf(cluster.cert)}, data: func(srv string) func(int) map[string]string {
			return signed(t, clusterInfo(t, srv, nil), realToken)
		}}, wantKind: ErrMalformed, wantMsg: "no certificate-authority-data"},
		{name: "second fetch differs", setup: setup{pins: []Pin{PinOf(cluster.cert)}, data: func(srv string) func(int) map[string]string {
			first, second := good(srv), signed(t, clusterInfo(t, srv+"0", cluster.pem()), realToken)
			return func(n int) map[string]string {
				if n == 0 {
					return first(n)
				}
				return second(n)
			}
		}}, wantKind: ErrNotVerified, wantMsg: "differs from the signed copy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var srv *apiServer
			var data func(int) map[string]string
			srv = newAPIServer(t, cluster, func(n int) map[string]string { return data(n) })
			data = tc.setup.data(srv.URL)
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 50 * time.Millisecond // only "no signature" waits for it
			}
			res, err := Discover(t.Context(), Options{Server: srv.URL, Token: realToken, Pins: tc.setup.pins,
				UnsafeSkipCAVerification: tc.setup.unsafe, Timeout: timeout, backoff: fastBackoff})
			if tc.requests != 0 && srv.requests != tc.requests {
				t.Errorf("%d requests, want %d", srv.requests, tc.requests)
			}
			if tc.wantKind == nil {
				if err != nil {
					t.Fatalf("Discover: %v", err)
				}
				if res.Server != srv.URL || string(res.CAData) != string(cluster.pem()) || len(res.Warnings) != 0 {
					t.Fatalf("result %+v", res)
				}
				return
			}
			checkError(t, err, tc.wantKind, tc.wantMsg)
		})
	}
}

func checkError(t *testing.T, err error, kind error, msg string) {
	t.Helper()
	var de *Error
	if !errors.As(err, &de) || !errors.Is(err, kind) {
		t.Fatalf("error %v (%T): want an *Error of kind %v", err, err, kind)
	}
	s := err.Error()
	if !strings.Contains(s, msg) || strings.Contains(s, "\n") || strings.Contains(s, realToken.Secret) {
		t.Fatalf("message %q: want one line containing %q and no secret", s, msg)
	}
}

func TestUnreachable(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, err := Discover(t.Context(), Options{Server: url, Token: realToken, UnsafeSkipCAVerification: true})
	checkError(t, err, ErrUnreachable, "cannot reach the API server at "+url)
}

func TestCancel(t *testing.T) {
	cluster := newCA(t, "cluster")
	srv := newAPIServer(t, cluster, func(int) map[string]string { return map[string]string{"kubeconfig": "x"} })
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Discover(ctx, Options{Server: srv.URL, Token: realToken, UnsafeSkipCAVerification: true})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Discover after cancel: %v", err)
	}
}
