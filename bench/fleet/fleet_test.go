package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseAudit(t *testing.T) {
	log := strings.Join([]string{
		`{"kind":"Event","stage":"ResponseComplete","verb":"create","requestURI":"/apis/certificates.k8s.io/v1/certificatesigningrequests","user":{"username":"system:bootstrap:abcdef"},"objectRef":{"resource":"certificatesigningrequests"},"responseStatus":{"code":201}}`,
		`{"kind":"Event","stage":"ResponseComplete","verb":"create","requestURI":"/apis/certificates.k8s.io/v1/certificatesigningrequests","user":{"username":"system:bootstrap:abcdef"},"objectRef":{"resource":"certificatesigningrequests"},"responseStatus":{"code":429}}`,
		`{"kind":"Event","stage":"ResponseComplete","verb":"watch","requestURI":"/apis/certificates.k8s.io/v1/certificatesigningrequests?fieldSelector=metadata.name%3Dnode-csr-x\u0026watch=true","user":{"username":"system:bootstrap:abcdef"},"objectRef":{"resource":"certificatesigningrequests"},"responseStatus":{"code":200}}`,
		`{"kind":"Event","stage":"ResponseStarted","verb":"watch","requestURI":"/apis/certificates.k8s.io/v1/certificatesigningrequests?watch=true","user":{"username":"system:bootstrap:abcdef"},"objectRef":{"resource":"certificatesigningrequests"},"responseStatus":{"code":200}}`,
		`{"kind":"Event","stage":"ResponseComplete","verb":"list","requestURI":"/apis/certificates.k8s.io/v1/certificatesigningrequests?limit=500","user":{"username":"tlsboot-admin"},"objectRef":{"resource":"certificatesigningrequests"},"responseStatus":{"code":200}}`,
		`{"kind":"Event","stage":"ResponseComplete","verb":"update","requestURI":"/apis/certificates.k8s.io/v1/certificatesigningrequests/x/approval","user":{"username":"system:kube-controller-manager"},"objectRef":{"resource":"certificatesigningrequests","subresource":"approval"},"responseStatus":{"code":200}}`,
		`{"kind":"Event","stage":"ResponseComplete","verb":"get","requestURI":"/healthz","user":{"username":"system:bootstrap:abcdef"},"responseStatus":{"code":200}}`,
		`{"kind":"Event","stage":"ResponseComplete","verb":"create","requestURI":"/apis/authentication.k8s.io/v1/selfsubjectreviews","user":{"username":"system:node:fleet-1"},"objectRef":{"resource":"selfsubjectreviews"},"responseStatus":{"code":201}}`,
		``,
	}, "\n")
	got, err := parseAudit(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	want := requests{
		byNodes: {
			"CREATE certificatesigningrequests 201":           1,
			"CREATE certificatesigningrequests 429":           1,
			"WATCH certificatesigningrequests (one name) 200": 1,
			"GET /healthz 200":                                1,
		},
		byApprover: {
			"LIST certificatesigningrequests (all) 200":      1,
			"UPDATE certificatesigningrequests/approval 200": 1,
		},
		byOther: {"CREATE selfsubjectreviews 201": 1},
	}
	for who, counts := range want {
		for k, v := range counts {
			if got[who][k] != v {
				t.Errorf("%s %q = %v, want %v (all: %v)", who, k, got[who][k], v, got[who])
			}
		}
		if len(got[who]) != len(counts) {
			t.Errorf("%s: %v, want %v", who, got[who], counts)
		}
	}
	if n := withCode(got[byNodes], 429); n != 1 {
		t.Errorf("withCode(429) = %v, want 1", n)
	}
	if n := total(got[byNodes]); n != 4 {
		t.Errorf("total = %v, want 4", n)
	}
	if _, err := parseAudit(strings.NewReader("{not json\n")); err == nil {
		t.Error("parseAudit accepted a line that is not JSON")
	}
}

func TestPct(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {95, 95}, {99, 99}, {100, 100}, {0, 1}} {
		if got := pct(d, tc.p); got != tc.want {
			t.Errorf("pct(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := pct(nil, 50); got != 0 {
		t.Errorf("pct(nil) = %v, want 0", got)
	}
}

func TestStatCPU(t *testing.T) {
	for _, tc := range []struct {
		stat string
		want float64
		ok   bool
	}{
		{"1234 (kube-apiserver) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 100 0 0", 3, true},
		{"1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 7 3 0 0 20 0", 0.1, true},
		{"1234 no name", 0, false},
		{"1234 (x) S 1 2", 0, false},
	} {
		got, err := statCPU([]byte(tc.stat))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("statCPU(%q) = %v, %v; want %v, ok %v", tc.stat, got, err, tc.want, tc.ok)
		}
	}
}
