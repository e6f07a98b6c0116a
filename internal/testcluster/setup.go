package testcluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// DefaultTokenGroup is the extra group kubeadm gives its node bootstrap
// tokens, which its ClusterRoleBindings grant CSR creation and approval.
const DefaultTokenGroup = "system:bootstrappers:kubeadm:default-node-token"

// waitHTTP polls url until it answers 200, the process exits or ctx ends.
// tlsConfig is used for https URLs.
func (c *Cluster) waitHTTP(ctx context.Context, p *process, url string, tlsConfig *tls.Config) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	defer client.CloseIdleConnections()
	return await(ctx, p, "at "+url, func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", resp.Status, body)
		}
		return nil
	})
}

// await calls try until it returns nil, p exits or ctx ends, for at most
// 90 seconds. Polling is the only way to learn when a freshly started
// process listens, or has written a file. what completes "<p> not ready".
func await(ctx context.Context, p *process, what string, try func() error) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for {
		if done, state := p.exited(); done {
			return fmt.Errorf("%s exited during start-up (%s)", p.name, state)
		}
		err := try()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready %s: %w", p.name, what, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// adminTLSConfig authenticates as the admin and trusts the CA that
// verifies the API server, which must exist.
func (c *Cluster) adminTLSConfig() (*tls.Config, error) {
	caPEM, err := os.ReadFile(c.pki.serverCAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificate in %s", c.pki.serverCAFile)
	}
	cert, err := tls.LoadX509KeyPair(c.pki.adminCert, c.pki.adminKey)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}, nil
}

type credentials struct {
	certFile, keyFile string
	token             string
}

func (c *Cluster) writeKubeconfig(path string, cred credentials) error {
	cfg := clientcmdapi.Config{
		Clusters: map[string]*clientcmdapi.Cluster{"testcluster": {
			Server:               c.URL(),
			CertificateAuthority: c.pki.serverCAFile,
		}},
		AuthInfos: map[string]*clientcmdapi.AuthInfo{"user": {
			ClientCertificate: cred.certFile,
			ClientKey:         cred.keyFile,
			Token:             cred.token,
		}},
		Contexts:       map[string]*clientcmdapi.Context{"default": {Cluster: "testcluster", AuthInfo: "user"}},
		CurrentContext: "default",
	}
	return clientcmd.WriteToFile(cfg, path)
}

// setUpBootstrap creates what kubeadm creates for TLS bootstrapping: a
// bootstrap token and the three ClusterRoleBindings.
func (c *Cluster) setUpBootstrap(ctx context.Context) error {
	client, err := c.AdminClient()
	if err != nil {
		return err
	}
	bindings := []struct{ name, role, group string }{
		{"kubeadm:kubelet-bootstrap", "system:node-bootstrapper", DefaultTokenGroup},
		{"kubeadm:node-autoapprove-bootstrap", "system:certificates.k8s.io:certificatesigningrequests:nodeclient", DefaultTokenGroup},
		{"kubeadm:node-autoapprove-certificate-rotation", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "system:nodes"},
	}
	for _, b := range bindings {
		crb := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: b.name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: b.role},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: b.group}},
		}
		if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating ClusterRoleBinding %s: %w", b.name, err)
		}
	}
	if c.Token, err = c.CreateToken(ctx, TokenOptions{}); err != nil {
		return err
	}
	c.BootstrapKubeconfig = filepath.Join(c.dir, "bootstrap.kubeconfig")
	return c.WriteBootstrapKubeconfig(c.BootstrapKubeconfig, c.Token)
}

// TokenOptions describes a bootstrap token to create.
type TokenOptions struct {
	// TTL is how long the token is valid; negative makes an expired token.
	// Zero means 24h.
	TTL time.Duration
	// Groups are the token's auth-extra-groups. nil means
	// []string{DefaultTokenGroup}.
	Groups []string
}

// CreateToken creates a bootstrap token Secret in kube-system and returns
// the token "<id>.<secret>".
func (c *Cluster) CreateToken(ctx context.Context, opts TokenOptions) (string, error) {
	if opts.TTL == 0 {
		opts.TTL = 24 * time.Hour
	}
	if opts.Groups == nil {
		opts.Groups = []string{DefaultTokenGroup}
	}
	id, secret := randomString(6), randomString(16)
	data := map[string]string{
		"token-id":                       id,
		"token-secret":                   secret,
		"usage-bootstrap-authentication": "true",
		"usage-bootstrap-signing":        "true",
		"expiration":                     time.Now().Add(opts.TTL).UTC().Format(time.RFC3339),
	}
	if len(opts.Groups) > 0 {
		groups := ""
		for i, g := range opts.Groups {
			if i > 0 {
				groups += ","
			}
			groups += g
		}
		data["auth-extra-groups"] = groups
	}
	client, err := c.AdminClient()
	if err != nil {
		return "", err
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-" + id, Namespace: metav1.NamespaceSystem},
		Type:       corev1.SecretTypeBootstrapToken,
		StringData: data,
	}
	if _, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		return "", fmt.Errorf("creating bootstrap token secret: %w", err)
	}
	return id + "." + secret, nil
}

// WriteBootstrapKubeconfig writes a kubeconfig that authenticates with
// token and trusts CAFile by file, like kubeadm's bootstrap-kubelet.conf
// (which embeds it instead).
func (c *Cluster) WriteBootstrapKubeconfig(path, token string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return c.writeKubeconfig(path, credentials{token: token})
}

// randomString returns n characters of [a-z0-9], the bootstrap token alphabet.
func randomString(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
