package identity

import (
	"context"
	"errors"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tlsboot/tlsboot/csr"
)

// TestConfig: the only credential of Config's result is the certificate
// to check; the server, its CA and the transport settings are kept, and
// every request is bounded.
func TestConfig(t *testing.T) {
	cluster := &rest.Config{
		Host:            "https://10.0.0.1:6443",
		BearerToken:     "abcdef.0123456789abcdef",
		BearerTokenFile: "/var/run/token",
		Username:        "u",
		Password:        "p",
		AuthProvider:    &clientcmdapi.AuthProviderConfig{Name: "oidc"},
		ExecProvider:    &clientcmdapi.ExecConfig{Command: "cred"},
		Impersonate:     rest.ImpersonationConfig{UserName: "system:admin"},
		TLSClientConfig: rest.TLSClientConfig{ServerName: "api", CAData: []byte("ca"), CertFile: "/old.crt", KeyFile: "/old.key", CertData: []byte("old")},
	}
	cfg := Config(cluster, []byte("cert"), []byte("key"))
	switch {
	case cfg.Host != cluster.Host || cfg.ServerName != "api" || string(cfg.CAData) != "ca":
		t.Errorf("server or CA not kept: %+v", cfg)
	case cfg.BearerToken != "" || cfg.BearerTokenFile != "" || cfg.Username != "" || cfg.Password != "" ||
		cfg.AuthProvider != nil || cfg.ExecProvider != nil || cfg.Impersonate.UserName != "":
		t.Errorf("another credential kept: %+v", cfg)
	case cfg.CertFile != "" || cfg.KeyFile != "" || string(cfg.CertData) != "cert" || string(cfg.KeyData) != "key":
		t.Errorf("client certificate %q %q %q, want only the new one", cfg.CertFile, cfg.KeyFile, cfg.CertData)
	case cfg.Proxy == nil || cfg.Timeout != RequestTimeout:
		t.Errorf("proxy %v timeout %v: want a proxy func (no transport cache) and %v", cfg.Proxy != nil, cfg.Timeout, RequestTimeout)
	}
	if cluster.BearerToken == "" || string(cluster.CertData) != "old" {
		t.Error("cluster was modified")
	}
}

// TestConfirm: Confirm's verdict on each answer of the API server.
func TestConfirm(t *testing.T) {
	ssr := schema.GroupResource{Group: "authentication.k8s.io", Resource: "selfsubjectreviews"}
	node := authenticationv1.UserInfo{Username: "system:node:a", Groups: []string{"system:nodes", "system:authenticated"}}
	many := make([]string, 20)
	for i := range many {
		many[i] = strings.Repeat("g", 300)
	}
	for _, tc := range []struct {
		name  string
		user  authenticationv1.UserInfo
		err   error
		check func(error) bool
	}{
		{"node", node, nil, func(err error) bool { return err == nil }},
		{"401", node, apierrors.NewUnauthorized("no"), func(err error) bool {
			var id *csr.IdentityError
			return errors.As(err, &id) && id.Unauthorized && id.CSR == "node-csr-x"
		}},
		{"other user", authenticationv1.UserInfo{Username: "system:node:b", Groups: []string{"system:nodes"}}, nil, func(err error) bool {
			var id *csr.IdentityError
			return errors.As(err, &id) && id.User == "system:node:b"
		}},
		{"no group", authenticationv1.UserInfo{Username: "system:node:a"}, nil, func(err error) bool {
			var id *csr.IdentityError
			return errors.As(err, &id) && strings.Contains(err.Error(), "(no group)")
		}},
		{"groups are bounded", authenticationv1.UserInfo{Username: strings.Repeat("u", 1000), Groups: many}, nil, func(err error) bool {
			var id *csr.IdentityError
			return errors.As(err, &id) && len(id.Groups) == 9 && len(id.User) < 300 && len(err.Error()) < 4000
		}},
		{"403", node, apierrors.NewForbidden(ssr, "", errors.New("no")), func(err error) bool {
			return errors.Is(err, csr.ErrForbidden) && strings.Contains(err.Error(), "system:basic-user")
		}},
		{"503", node, apierrors.NewServiceUnavailable("later"), func(err error) bool { return errors.Is(err, csr.ErrUnreachable) }},
		{"404", node, apierrors.NewNotFound(ssr, ""), func(err error) bool {
			var ns *NotServedError
			return errors.As(err, &ns) && strings.Contains(err.Error(), "node-csr-x")
		}},
		{"canceled", node, context.Canceled, func(err error) bool { return errors.Is(err, context.Canceled) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset()
			client.PrependReactor("create", "selfsubjectreviews", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
				if tc.err != nil {
					return true, nil, tc.err
				}
				return true, &authenticationv1.SelfSubjectReview{Status: authenticationv1.SelfSubjectReviewStatus{UserInfo: tc.user}}, nil
			})
			err := Confirm(context.Background(), client, "https://api", "node-csr-x", "system:node:a", "system:nodes")
			if !tc.check(err) {
				t.Errorf("Confirm = %v", err)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("error on more than one line: %q", err)
			}
		})
	}
}
