package token

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	bootstrapsecrets "k8s.io/cluster-bootstrap/util/secrets"

	"github.com/tlsboot/tlsboot/token/binding"
)

var testToken = Token{ID: "abcdef", Secret: "0123456789abcdef"}

func TestSpecValidate(t *testing.T) {
	ok := Spec{Token: testToken, Usages: DefaultUsages, Groups: []string{DefaultGroup}}
	for _, tc := range []struct {
		name   string
		mutate func(*Spec)
		want   string // substring of the error; "" for valid
	}{
		{"default", func(*Spec) {}, ""},
		{"bound", func(s *Spec) { s.NodeName = "n.example.com" }, ""},
		{"no groups", func(s *Spec) { s.Groups = nil }, ""},
		{"malformed token", func(s *Spec) { s.Token.Secret = "short" }, "malformed"},
		{"unknown usage", func(s *Spec) { s.Usages = []string{"signing", "login"} }, "invalid bootstrap token usage string: login"},
		{"bad group", func(s *Spec) { s.Groups = []string{"system:masters"} }, `bootstrap group "system:masters" is invalid`},
		{"groups without authentication", func(s *Spec) { s.Usages = []string{"signing"} }, `usage "authentication"`},
		{"bad node", func(s *Spec) { s.NodeName = "Node_1" }, "not a valid node name"},
		{"binding group by hand", func(s *Spec) { s.Groups = append(s.Groups, binding.Prefix+"x") }, "--node-name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			s.Groups = append([]string(nil), ok.Groups...)
			tc.mutate(&s)
			err := s.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v; want %q", err, tc.want)
			}
			checkNoSecret(t, err.Error(), testToken.Value())
		})
	}
}

func TestSecretRoundTrip(t *testing.T) {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s, err := NewSecret(Spec{Token: testToken, Expires: exp, Description: "for n1", Usages: DefaultUsages, Groups: []string{DefaultGroup}, NodeName: "n1.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "bootstrap-token-abcdef" || s.Namespace != "kube-system" || s.Type != "bootstrap.kubernetes.io/token" {
		t.Fatalf("secret %s/%s type %s", s.Namespace, s.Name, s.Type)
	}
	// What the API server and kube-controller-manager read (cluster-bootstrap).
	if got := bootstrapsecrets.GetData(s, "token-secret"); got != testToken.Secret {
		t.Fatalf("token-secret = %q", got)
	}
	groups, err := bootstrapsecrets.GetGroups(s)
	if err != nil {
		t.Fatalf("the API server would refuse the groups: %v", err)
	}
	if want := binding.Prefix + "n1:example:com"; !strings.Contains(strings.Join(groups, ","), want) {
		t.Fatalf("groups %v lack %s", groups, want)
	}
	info := InfoFromSecret(s)
	if info.ID != "abcdef" || info.Expires == nil || !info.Expires.Equal(exp) || info.Description != "for n1" ||
		strings.Join(info.Usages, ",") != "authentication,signing" || info.Node != "n1.example.com" || info.Problem != "" {
		t.Fatalf("InfoFromSecret = %+v", info)
	}
	if info.Expired(exp.Add(-time.Second)) || !info.Expired(exp) {
		t.Fatal("Expired is wrong around the expiration")
	}
}

func TestInfoProblems(t *testing.T) {
	for _, tc := range []struct {
		name    string
		secret  corev1.Secret
		want    string
		expired bool
	}{
		{"name mismatch", corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-abcdef"}, Data: map[string][]byte{"token-id": []byte("zzzzzz")}}, "does not match", false},
		{"bad expiration", corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-abcdef"}, Data: map[string][]byte{"token-id": []byte("abcdef"), "expiration": []byte("tomorrow")}}, "unparsable expiration", true},
		{"bad group", corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-abcdef"}, Data: map[string][]byte{"token-id": []byte("abcdef"), "auth-extra-groups": []byte("system:masters")}}, "invalid group", false},
		{"never expires", corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-abcdef"}, Data: map[string][]byte{"token-id": []byte("abcdef")}}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := InfoFromSecret(&tc.secret)
			if tc.want == "" && info.Problem != "" || !strings.Contains(info.Problem, tc.want) {
				t.Fatalf("Problem = %q; want %q", info.Problem, tc.want)
			}
			if info.Expired(time.Now()) != tc.expired {
				t.Fatalf("Expired = %v", !tc.expired)
			}
		})
	}
}

// The API server itself is exercised by test/e2e (TestToken); the fake
// checks the messages of the branches a real server reaches rarely.
func TestCreateListDelete(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	spec := Spec{Token: testToken, Usages: DefaultUsages, Groups: []string{DefaultGroup}}
	if err := Create(ctx, client, spec); err != nil {
		t.Fatal(err)
	}
	err := Create(ctx, client, spec)
	if err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Fatalf("second Create: %v", err)
	}
	checkNoSecret(t, err.Error(), testToken.Value())
	infos, err := List(ctx, client)
	if err != nil || len(infos) != 1 || infos[0].ID != "abcdef" {
		t.Fatalf("List = %+v, %v", infos, err)
	}
	if err := Delete(ctx, client, "abcdef"); err != nil {
		t.Fatal(err)
	}
	if err := Delete(ctx, client, "abcdef"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("second Delete: %v", err)
	}
}
