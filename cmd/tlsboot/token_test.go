package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tlsboot/tlsboot/token"
)

func TestTokenCreateSpec(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		f       tokenCreateFlags
		ttlSet  bool
		tok     string    // given token, "" for a random one
		expires time.Time // zero: never
		groups  []string
		want    string // usage error substring
	}{
		{name: "defaults", f: tokenCreateFlags{ttl: token.DefaultTTL, groups: []string{token.DefaultGroup}, usages: token.DefaultUsages}, expires: now.Add(24 * time.Hour)},
		{name: "bound defaults to 1h", f: tokenCreateFlags{ttl: token.DefaultTTL, groups: []string{token.DefaultGroup}, usages: token.DefaultUsages, nodeName: "n1.example.com"}, expires: now.Add(time.Hour)},
		{name: "bound with explicit ttl", f: tokenCreateFlags{ttl: 3 * time.Hour, groups: []string{token.DefaultGroup}, usages: token.DefaultUsages, nodeName: "n1"}, ttlSet: true, expires: now.Add(3 * time.Hour)},
		// Issue 24, finding 7: an unbound token that never expires needs
		// the explicit flag; a bound one does not (the approver lets it
		// make one node's first certificate only).
		{name: "ttl 0 unbound needs --allow-no-expiry", f: tokenCreateFlags{ttl: 0, usages: token.DefaultUsages}, ttlSet: true, want: "--ttl 0 makes a token that never expires, and without --node-name whoever finds it can join nodes under any name until it is deleted: give a --ttl (e.g. 24h), bind it with --node-name, or add --allow-no-expiry"},
		{name: "ttl 0 unbound with --allow-no-expiry never expires", f: tokenCreateFlags{ttl: 0, usages: token.DefaultUsages, allowNoExpiry: true}, ttlSet: true},
		{name: "ttl 0 bound never expires", f: tokenCreateFlags{ttl: 0, usages: token.DefaultUsages, nodeName: "n1"}, ttlSet: true},
		{name: "--allow-no-expiry with a ttl", f: tokenCreateFlags{ttl: time.Hour, usages: token.DefaultUsages, allowNoExpiry: true}, ttlSet: true, want: "--allow-no-expiry is for --ttl 0, but the token expires after 1h0m0s"},
		{name: "--allow-no-expiry with the default ttl", f: tokenCreateFlags{ttl: token.DefaultTTL, usages: token.DefaultUsages, allowNoExpiry: true}, want: "--allow-no-expiry is for --ttl 0"},
		{name: "given token", f: tokenCreateFlags{ttl: time.Hour, usages: token.DefaultUsages}, tok: testToken, expires: now.Add(time.Hour)},
		{name: "negative ttl", f: tokenCreateFlags{ttl: -time.Hour, usages: token.DefaultUsages}, ttlSet: true, want: "negative"},
		{name: "bad group", f: tokenCreateFlags{ttl: time.Hour, usages: token.DefaultUsages, groups: []string{"system:masters"}}, want: "is invalid"},
		{name: "bad usage", f: tokenCreateFlags{ttl: time.Hour, usages: []string{"everything"}}, want: "valid usage options"},
		{name: "bad node", f: tokenCreateFlags{ttl: time.Hour, usages: token.DefaultUsages, nodeName: "UPPER"}, want: "not a valid node name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var given token.Token
			if tc.tok != "" {
				var err error
				if given, err = token.Parse(tc.tok); err != nil {
					t.Fatal(err)
				}
			}
			spec, err := tc.f.spec(tc.ttlSet, given, tc.tok != "", now)
			if tc.want != "" {
				if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("spec = %v, want usage error %q", err, tc.want)
				}
				checkQuiet(t, err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !spec.Expires.Equal(tc.expires) {
				t.Errorf("expires %v, want %v", spec.Expires, tc.expires)
			}
			if tc.tok != "" && spec.Token.Value() != tc.tok || tc.tok == "" && spec.Token.Value() == "" {
				t.Errorf("token %v, want the given one", spec.Token)
			}
			if spec.NodeName != tc.f.nodeName {
				t.Errorf("node %q", spec.NodeName)
			}
		})
	}
}

func TestPrintTokens(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	later, earlier := now.Add(23*time.Hour), now.Add(-time.Minute)
	infos := []token.Info{
		{ID: "aaaaaa", Expires: &later, Usages: []string{"authentication", "signing"}, Groups: []string{token.DefaultGroup}},
		{ID: "bbbbbb", Expires: &earlier, Usages: []string{"authentication"}, Description: "old"},
		{ID: "cccccc", Usages: []string{"signing"}, Description: "forever\nand ever"},
	}
	var out bytes.Buffer
	if err := printTokens(&out, infos, now); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := [][]string{
		{"TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA", "GROUPS"},
		{"aaaaaa", "23h", "2026-12-01T23:00:00Z", "authentication,signing", "<none>", token.DefaultGroup},
		{"bbbbbb", "expired", "2026-11-30T23:59:00Z", "authentication", "old", "<none>"},
		{"cccccc", "<forever>", "<never>", "signing", "forever", "and", "ever", "<none>"},
	}
	if len(lines) != len(want) {
		t.Fatalf("output:\n%s", out.String())
	}
	for i, l := range lines {
		if got := strings.Fields(l); strings.Join(got, " ") != strings.Join(want[i], " ") {
			t.Errorf("line %d = %q, want fields %q", i, l, want[i])
		}
	}
	out.Reset()
	if err := printTokensJSON(&out, infos, now); err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Tokens []struct {
			ID      string `json:"id"`
			Expired bool   `json:"expired"`
		} `json:"tokens"`
	}
	if err := json.Unmarshal(out.Bytes(), &parsed); err != nil || len(parsed.Tokens) != 3 || !parsed.Tokens[1].Expired || parsed.Tokens[0].Expired {
		t.Fatalf("json %s: %v", out.String(), err)
	}
}

func TestTokenUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"token", "delete"}, "needs at least one token ID"},
		{[]string{"token", "delete", "abcdef.0123"}, "malformed bootstrap token"},
		{[]string{"token", "delete", "ABCDEF"}, "must be 6 characters"},
		{[]string{"token", "list", "-o", "yaml"}, "text and json"},
		{[]string{"token", "create", testToken, "extra"}, "at most one TOKEN"},
		{[]string{"token", "create", "abcdef.0123456789abcdeF"}, "TOKEN: malformed bootstrap token"},
		{[]string{"token", "create", testToken, "--token-file", "/nonexistent/token"}, "the bootstrap token is given 2 times (TOKEN and --token-file)"},
		{[]string{"token", "create", "--token-file", "/nonexistent/token"}, "--token-file /nonexistent/token does not exist"},
		{[]string{"token", "create", "--ttl", "0", "--kubeconfig", "/nonexistent/admin.conf"}, "--ttl 0 makes a token that never expires"},
		{[]string{"token", "create", "--kubeconfig", "/nonexistent/admin.conf"}, "cannot read the admin kubeconfig /nonexistent/admin.conf"},
		{[]string{"setup", "--kubeconfig", "/nonexistent/admin.conf"}, "cannot read the admin kubeconfig"},
		{[]string{"setup", "extra"}, "takes no arguments"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), tc.args, &stdout, &stderr)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v (exit %d), want usage error %q", tc.args, err, exitCode(err), tc.want)
		}
		checkQuiet(t, err, &stdout, &stderr)
	}
}
