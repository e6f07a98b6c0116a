package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/cluster-bootstrap/token/jws"

	"github.com/tlsboot/tlsboot/discovery"
	"github.com/tlsboot/tlsboot/internal/testcluster"
	"github.com/tlsboot/tlsboot/internal/testpki"
	"github.com/tlsboot/tlsboot/token"
)

// upstreamBin is the path of a program 'make controlplane' builds next to
// the control plane: kubeadm, or the kubeadm-discovery peer.
func upstreamBin(t *testing.T, c *testcluster.Cluster, name string) string {
	t.Helper()
	p := filepath.Join(c.BinDir(), name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not found in %s: run 'make controlplane'", name, c.BinDir())
	}
	return p
}

// kubeadmToken is one object of 'kubeadm token list -o json'.
type kubeadmToken struct {
	Token       string     `json:"token"`
	Description string     `json:"description"`
	Expires     *time.Time `json:"expires"`
	Usages      []string   `json:"usages"`
	Groups      []string   `json:"groups"`
}

// kubeadmTokens lists the tokens as kubeadm sees them, by ID. kubeadm
// prints one JSON object per token, one after the other.
func kubeadmTokens(t *testing.T, kubeadm, adminKubeconfig string) map[string]kubeadmToken {
	t.Helper()
	r := run(t, kubeadm, "token", "list", "--kubeconfig", adminKubeconfig, "-o", "json")
	if r.code != 0 {
		t.Fatalf("kubeadm token list: %s", r)
	}
	out := map[string]kubeadmToken{}
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	for {
		var k kubeadmToken
		if err := dec.Decode(&k); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("kubeadm token list -o json: %v\n%s", err, r.stdout)
		}
		id, _, _ := strings.Cut(k.Token, ".")
		out[id] = k
	}
}

// tlsbootTokens lists the tokens as 'tlsboot token list -o json' sees them,
// by ID.
func tlsbootTokens(t *testing.T, adminKubeconfig string) map[string]token.Info {
	t.Helper()
	r := run(t, tlsbootBin, "token", "list", "--kubeconfig", adminKubeconfig, "-o", "json")
	var parsed struct{ Tokens []token.Info }
	if err := json.Unmarshal([]byte(r.stdout), &parsed); r.code != 0 || err != nil {
		t.Fatalf("tlsboot token list -o json: %v\n%s", err, r)
	}
	out := map[string]token.Info{}
	for _, i := range parsed.Tokens {
		out[i.ID] = i
	}
	return out
}

// listLine is the line of a 'token list' table whose first column is
// first, as its fields after that column.
func listLine(t *testing.T, table, first string) []string {
	t.Helper()
	for _, l := range strings.Split(table, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == first {
			return f[1:]
		}
	}
	t.Fatalf("no line for %s in\n%s", first, table)
	return nil
}

// awaitSigned waits until bootstrapsigner has signed cluster-info for the
// token's ID.
func awaitSigned(t *testing.T, c *testcluster.Cluster, tok string) {
	t.Helper()
	id, _, _ := strings.Cut(tok, ".")
	awaitClusterInfo(t, admin(t, c), func(cm *corev1.ConfigMap) bool { return cm.Data[bootstrapapi.JWSSignatureKeyPrefix+id] != "" })
}

// TestKubeadmTokens: tokens cross between tlsboot and kubeadm v1.37.2
// (built from source by 'make controlplane') both ways. A 'tlsboot token
// create' token is listed by 'kubeadm token list' with the same fields and
// accepted by kubeadm's own discovery code; 'kubeadm token create
// --print-join-command' prints a command that, with 'tlsboot join' in place
// of 'kubeadm join', joins a node (approved by kube-controller-manager's
// csrapproving).
func TestKubeadmTokens(t *testing.T) {
	c := cluster(t, "auto")
	pin := setUpDiscovery(t, c)
	kubeadm := upstreamBin(t, c, "kubeadm")
	peer := upstreamBin(t, c, "kubeadm-discovery")

	t.Run("a tlsboot token in kubeadm", func(t *testing.T) {
		r := run(t, tlsbootBin, "token", "create", "--kubeconfig", c.AdminKubeconfig, "--ttl", "2h", "--description", "rack 4",
			"--groups", token.DefaultGroup+",system:bootstrappers:rack-4")
		if r.code != 0 {
			t.Fatalf("tlsboot token create: %s", r)
		}
		tok, err := token.Parse(strings.TrimSpace(r.stdout))
		if err != nil {
			t.Fatalf("tlsboot token create printed %q: %v", r.stdout, err)
		}
		ours := tlsbootTokens(t, c.AdminKubeconfig)[tok.ID]
		theirs, ok := kubeadmTokens(t, kubeadm, c.AdminKubeconfig)[tok.ID]
		if !ok {
			t.Fatalf("kubeadm token list does not list %s", tok.ID)
		}
		if theirs.Token != tok.Value() || theirs.Description != "rack 4" || theirs.Description != ours.Description ||
			theirs.Expires == nil || ours.Expires == nil || !theirs.Expires.Equal(*ours.Expires) ||
			!slices.Equal(theirs.Usages, []string{"authentication", "signing"}) || !slices.Equal(theirs.Usages, ours.Usages) ||
			!slices.Equal(theirs.Groups, []string{token.DefaultGroup, "system:bootstrappers:rack-4"}) || !slices.Equal(theirs.Groups, ours.Groups) {
			t.Fatalf("kubeadm sees %+v, tlsboot %+v", theirs, ours)
		}
		// The text tables agree column by column after the first (kubeadm
		// shows the whole token there, tlsboot only its ID): TTL, EXPIRES,
		// USAGES, DESCRIPTION, EXTRA GROUPS.
		kr := run(t, kubeadm, "token", "list", "--kubeconfig", c.AdminKubeconfig)
		tr := run(t, tlsbootBin, "token", "list", "--kubeconfig", c.AdminKubeconfig)
		if kr.code != 0 || tr.code != 0 {
			t.Fatalf("token list:\n%s\n%s", kr, tr)
		}
		if k, o := listLine(t, kr.stdout, tok.Value()), listLine(t, tr.stdout, tok.ID); !slices.Equal(k, o) {
			t.Fatalf("kubeadm token list: %q\ntlsboot token list: %q", k, o)
		}

		awaitSigned(t, c, tok.Value())
		r = run(t, peer, "--server", c.URL(), "--token", tok.Value(), "--discovery-token-ca-cert-hash", string(pin), "--discovery-timeout", "30s")
		if want := fmt.Sprintf("server %s\nca-cert-hash %s\n", c.URL(), pin); r.code != 0 || r.stdout != want {
			t.Fatalf("kubeadm's discovery with a tlsboot token: want\n%s%s", want, r)
		}

		if r := run(t, kubeadm, "token", "delete", "--kubeconfig", c.AdminKubeconfig, tok.ID); r.code != 0 {
			t.Fatalf("kubeadm token delete: %s", r)
		}
		if _, ok := tlsbootTokens(t, c.AdminKubeconfig)[tok.ID]; ok {
			t.Fatalf("tlsboot still lists %s after kubeadm token delete", tok.ID)
		}
	})

	// kubeadm parses a bound token's binding group (kubeadm's group
	// validation) and lists it as an extra group.
	t.Run("a bound tlsboot token in kubeadm", func(t *testing.T) {
		r := run(t, tlsbootBin, "token", "create", "--kubeconfig", c.AdminKubeconfig, "--node-name", "node-1.rack-4.example.com")
		if r.code != 0 {
			t.Fatalf("tlsboot token create --node-name: %s", r)
		}
		tok, err := token.Parse(strings.TrimSpace(r.stdout))
		if err != nil {
			t.Fatalf("tlsboot token create printed %q: %v", r.stdout, err)
		}
		ours := tlsbootTokens(t, c.AdminKubeconfig)[tok.ID]
		theirs, ok := kubeadmTokens(t, kubeadm, c.AdminKubeconfig)[tok.ID]
		if !ok || ours.Node != "node-1.rack-4.example.com" || len(ours.Groups) < 2 || !slices.Equal(theirs.Groups, ours.Groups) ||
			theirs.Expires == nil || ours.Expires == nil || !theirs.Expires.Equal(*ours.Expires) {
			t.Fatalf("kubeadm sees %+v (listed: %v), tlsboot %+v", theirs, ok, ours)
		}
	})

	t.Run("a kubeadm join command with tlsboot join", func(t *testing.T) {
		r := run(t, kubeadm, "token", "create", "--kubeconfig", c.AdminKubeconfig, "--print-join-command", "--description", "from kubeadm")
		if r.code != 0 {
			t.Fatalf("kubeadm token create: %s", r)
		}
		// kubeadm join HOST:PORT --token T --discovery-token-ca-cert-hash H
		fields := strings.Fields(r.stdout)
		if len(fields) != 7 || fields[0] != "kubeadm" || fields[1] != "join" || "https://"+fields[2] != c.URL() || fields[3] != "--token" ||
			fields[5] != "--discovery-token-ca-cert-hash" || fields[6] != string(pin) {
			t.Fatalf("kubeadm's join command %q", r.stdout)
		}
		tok, err := token.Parse(fields[4])
		if err != nil {
			t.Fatal(err)
		}
		ours := tlsbootTokens(t, c.AdminKubeconfig)[tok.ID]
		if ours.Description != "from kubeadm" || !slices.Equal(ours.Usages, []string{"authentication", "signing"}) ||
			!slices.Equal(ours.Groups, []string{token.DefaultGroup}) || ours.Problem != "" {
			t.Fatalf("tlsboot token list shows kubeadm's token as %+v", ours)
		}
		n := newNode(t, c)
		r = run(t, tlsbootBin, append([]string{"join"}, append(fields[2:], n.joinArgs()...)...)...)
		if r.code != 0 {
			t.Fatalf("tlsboot join with kubeadm's command: %s", r)
		}
		checkNoSecret(t, r, tok.Value())
		if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
			t.Fatalf("node kubeconfig authenticates as %q", u.Username)
		}

		if r := run(t, tlsbootBin, "token", "delete", "--kubeconfig", c.AdminKubeconfig, tok.ID); r.code != 0 {
			t.Fatalf("tlsboot token delete of kubeadm's token: %s", r)
		}
		if _, ok := kubeadmTokens(t, kubeadm, c.AdminKubeconfig)[tok.ID]; ok {
			t.Fatalf("kubeadm still lists %s after tlsboot token delete", tok.ID)
		}
	})
}

// checkNoSecret: the token's secret appears nowhere in the output.
func checkNoSecret(t *testing.T, r result, tok string) {
	t.Helper()
	if _, secret, ok := strings.Cut(tok, "."); ok && len(secret) >= 4 && strings.Contains(r.stdout+r.stderr, secret) {
		t.Fatalf("output shows the token's secret:\n%s", r)
	}
}

// fakeAPIServer is a man in the middle: a TLS server with a certificate of
// its own CA (for 127.0.0.1) that answers every read of cluster-info with
// the data clusterInfo returns, and 401 to anything else. clusterInfo is
// called once, before the server starts, with its URL and its CA.
func fakeAPIServer(t *testing.T, clusterInfo func(url string, caPEM []byte) map[string]string) (url string, ca *testpki.CA) {
	t.Helper()
	ca = testpki.NewCA(t)
	leaf := ca.Issue(t, testpki.Spec{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	var data map[string]string // set before the server starts, then only read
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/api/v1/namespaces/kube-public/configmaps/cluster-info" {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}`)
			return
		}
		json.NewEncoder(w).Encode(&corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{Name: bootstrapapi.ConfigMapClusterInfo, Namespace: metav1.NamespacePublic},
			Data:       data,
		})
	}))
	url = "https://" + srv.Listener.Addr().String()
	data = clusterInfo(url, ca.PEM())
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: leaf.Key}}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the clients' failed handshakes are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return url, ca
}

// signedClusterInfo is a cluster-info naming server and caPEM, signed for
// tok as bootstrapsigner signs it.
func signedClusterInfo(t *testing.T, server string, caPEM []byte, tok token.Token) map[string]string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[""] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	content, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := jws.ComputeDetachedSignature(string(content), tok.ID, tok.Secret)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{bootstrapapi.KubeConfigKey: string(content), bootstrapapi.JWSSignatureKeyPrefix + tok.ID: sig}
}

// verdict is what one tool made of one row of TestKubeadmVerdicts.
type verdict struct {
	accepted bool
	message  string // the error line, or what was discovered
}

func (v verdict) String() string {
	if v.accepted {
		return "accept: " + v.message
	}
	return "refuse: " + v.message
}

// verdictsEnv names a file that TestKubeadmVerdicts writes its table to, in
// Markdown, for docs/kubeadm.md.
const verdictsEnv = "TLSBOOT_KUBEADM_VERDICTS"

// TestKubeadmVerdicts: for good and bad join inputs, 'tlsboot join' and
// kubeadm v1.37.2's own discovery code (the kubeadm-discovery peer: 'kubeadm
// join's flag validation, then discovery.For) accept or refuse alike, but
// for one documented row where tlsboot is stricter. tlsboot's refusal is
// one line naming the problem, never shows the secret and leaves nothing
// behind; its acceptance on the real cluster ends in a working node
// kubeconfig (kube-controller-manager's csrapproving approves).
func TestKubeadmVerdicts(t *testing.T) {
	c := cluster(t, "auto")
	pin := setUpDiscovery(t, c)
	client := admin(t, c)
	peer := upstreamBin(t, c, "kubeadm-discovery")

	good, err := c.CreateToken(t.Context(), testcluster.TokenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	goodTok, err := token.Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	awaitSigned(t, c, good)
	signed, err := client.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(t.Context(), bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A man in the middle who knows the token relays the real, correctly
	// signed cluster-info, but cannot present a certificate of the real CA.
	relay, _ := fakeAPIServer(t, func(string, []byte) map[string]string { return signed.Data })
	// One who knows the token signs a cluster-info naming itself and its
	// own CA.
	impostor, impostorCA := fakeAPIServer(t, func(url string, caPEM []byte) map[string]string {
		return signedClusterInfo(t, url, caPEM, goodTok)
	})
	impostorPin := discovery.PinOf(impostorCA.Cert)
	otherPin := "sha256:" + strings.Repeat("0", 64)

	// tamper edits the signed kubeconfig in cluster-info (it points nodes
	// at another server) with kube-controller-manager stopped, so that
	// bootstrapsigner does not sign the edit; the cleanup restores both.
	tamper := func(t *testing.T) {
		if err := c.StopControllerManager(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx := context.Background() // t.Context() is done in cleanups
			cms := client.CoreV1().ConfigMaps(metav1.NamespacePublic)
			cm, err := cms.Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
			if err == nil {
				cm.Data = signed.Data
				_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
			}
			if err != nil {
				t.Errorf("restoring cluster-info: %v", err)
			}
			startCtx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := c.StartControllerManager(startCtx); err != nil {
				t.Errorf("restarting kube-controller-manager: %v", err)
			}
		})
		cm := signed.DeepCopy()
		content := cm.Data[bootstrapapi.KubeConfigKey]
		edited := strings.Replace(content, "server: "+c.URL(), "server: https://127.0.0.1:1", 1)
		if edited == content {
			t.Fatalf("cluster-info does not name %s:\n%s", c.URL(), content)
		}
		cm.Data[bootstrapapi.KubeConfigKey] = edited
		if _, err := client.CoreV1().ConfigMaps(metav1.NamespacePublic).Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	type row struct {
		name   string
		server string
		token  string
		pins   []string
		unsafe bool
		setup  func(*testing.T)
		// What each tool must do; they differ in one row only.
		tlsbootAccepts, kubeadmAccepts bool
		// Parts of each tool's message: tlsboot's must name the problem,
		// kubeadm's only shows that the row failed for the reason meant.
		tlsbootWant, kubeadmWant string
		// When the row reached the real cluster and tlsboot accepted, the
		// node must end up with a working kubeconfig.
		joins bool
	}
	discovered := func(server, how string) string { return "discovered the cluster at " + server + " (" + how }
	rows := []row{
		{name: "right token and pin", server: c.URL(), token: good, pins: []string{string(pin)},
			tlsbootAccepts: true, kubeadmAccepts: true, tlsbootWant: discovered(c.URL(), "pinned CA verified"), kubeadmWant: "ca-cert-hash " + string(pin), joins: true},
		{name: "wrong secret", server: c.URL(), token: goodTok.ID + ".0000000000000000", pins: []string{string(pin)},
			tlsbootWant: "not with this token's secret", kubeadmWant: "failed to verify JWS signature"},
		{name: "wrong pin", server: c.URL(), token: good, pins: []string{otherPin},
			tlsbootWant: "has the public key hash " + string(pin) + ", which matches no --discovery-token-ca-cert-hash", kubeadmWant: "are pinned"},
		{name: "unknown token ID", server: c.URL(), token: "unkn0w.0123456789abcdef", pins: []string{string(pin)},
			tlsbootWant: "has no signature for token ID unkn0w", kubeadmWant: "could not find a JWS signature"},
		{name: "malformed token", server: c.URL(), token: goodTok.ID + ".short", pins: []string{string(pin)},
			tlsbootWant: "malformed bootstrap token", kubeadmWant: "the bootstrap token is invalid"},
		{name: "malformed pin", server: c.URL(), token: good, pins: []string{"sha256:abc"},
			tlsbootWant: "malformed CA pin", kubeadmWant: "invalid discovery token CA certificate hash"},
		{name: "tampered cluster-info", server: c.URL(), token: good, pins: []string{string(pin)}, setup: tamper,
			tlsbootWant: "cluster-info was altered", kubeadmWant: "failed to verify JWS signature"},
		{name: "man in the middle relaying cluster-info, with the pin", server: relay, token: good, pins: []string{string(pin)},
			tlsbootWant: "presents a TLS certificate the pinned CA does not verify", kubeadmWant: "certificate signed by unknown authority"},
		{name: "man in the middle with its own CA, with the pin", server: impostor, token: good, pins: []string{string(pin)},
			tlsbootWant: "has the public key hash " + string(impostorPin), kubeadmWant: "are pinned"},
		{name: "no pin and no unsafe flag", server: c.URL(), token: good,
			tlsbootWant: "a CA pin is required", kubeadmWant: "without caCertHashes can be unsafe"},
		{name: "unsafe flag", server: c.URL(), token: good, unsafe: true,
			tlsbootAccepts: true, kubeadmAccepts: true, tlsbootWant: discovered(c.URL(), "CA NOT verified"), kubeadmWant: "ca-cert-hash " + string(pin), joins: true},
		{name: "man in the middle with its own CA, unsafe flag", server: impostor, token: good, unsafe: true,
			tlsbootAccepts: true, kubeadmAccepts: true, tlsbootWant: discovered(impostor, "CA NOT verified"), kubeadmWant: "ca-cert-hash " + string(impostorPin)},
		// The one difference: even unsafe, tlsboot fetches cluster-info
		// again verifying TLS with the CA it names, so a server that
		// cannot prove it holds that CA's key is refused. kubeadm skips
		// the second fetch when there is no pin.
		{name: "man in the middle relaying cluster-info, unsafe flag", server: relay, token: good, unsafe: true,
			kubeadmAccepts: true, tlsbootWant: "presents a TLS certificate the CA named in cluster-info does not verify", kubeadmWant: "ca-cert-hash " + string(pin)},
	}

	type outcome struct {
		row
		tlsboot, kubeadm verdict
	}
	var outcomes []outcome
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup(t)
			}
			var flags []string
			for _, p := range tc.pins {
				flags = append(flags, "--discovery-token-ca-cert-hash", p)
			}
			if tc.unsafe {
				flags = append(flags, "--discovery-token-unsafe-skip-ca-verification")
			}
			flags = append(flags, "--discovery-timeout", "3s")

			k := run(t, peer, append([]string{"--server", tc.server, "--token", tc.token}, flags...)...)
			kv := verdict{accepted: k.code == 0, message: strings.TrimPrefix(k.lastLine(), "kubeadm-discovery: ")}
			if kv.accepted {
				kv.message = strings.ReplaceAll(strings.TrimSpace(k.stdout), "\n", ", ")
			}

			n := newNode(t, c)
			r := run(t, tlsbootBin, append(append([]string{"join", tc.server, "--token", tc.token}, flags...), n.joinArgs()...)...)
			checkNoSecret(t, r, tc.token)
			// tlsboot accepted if it said what it discovered (when that
			// is a man in the middle, bootstrapping fails afterwards);
			// its message is then that line and its warnings.
			tv := verdict{message: r.lastLine()}
			var said []string
			for _, l := range strings.Split(r.stderr, "\n") {
				if strings.HasPrefix(l, "WARNING: ") || strings.HasPrefix(l, "discovered the cluster at ") {
					said = append(said, l)
				}
				tv.accepted = tv.accepted || strings.HasPrefix(l, "discovered the cluster at ")
			}
			if tv.accepted {
				tv.message = strings.Join(said, " / ")
			}
			t.Logf("tlsboot: %s\nkubeadm: %s", tv, kv)
			outcomes = append(outcomes, outcome{tc, tv, kv})

			if tv.accepted != tc.tlsbootAccepts || kv.accepted != tc.kubeadmAccepts {
				t.Fatalf("tlsboot accepted: %v (want %v), kubeadm accepted: %v (want %v)\ntlsboot %s\nkubeadm %s",
					tv.accepted, tc.tlsbootAccepts, kv.accepted, tc.kubeadmAccepts, r, k)
			}
			if !strings.Contains(tv.message, tc.tlsbootWant) || !strings.Contains(kv.message, tc.kubeadmWant) {
				t.Fatalf("want tlsboot's message to contain %q and kubeadm's %q:\ntlsboot %s\nkubeadm %s", tc.tlsbootWant, tc.kubeadmWant, r, k)
			}
			switch {
			case !tv.accepted:
				checkOneLine(t, r, tc.token)
				if entries, _ := os.ReadDir(n.dir); len(entries) != 0 {
					t.Fatalf("tlsboot join refused but wrote %v", entries)
				}
			case tc.unsafe && !strings.Contains(r.stderr, "WARNING: CA verification skipped"):
				t.Fatalf("tlsboot join without a pin did not warn:\n%s", r)
			}
			if tc.joins {
				if r.code != 0 {
					t.Fatalf("tlsboot join: %s", r)
				}
				if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
					t.Fatalf("node kubeconfig authenticates as %q", u.Username)
				}
			}
		})
	}

	if path := os.Getenv(verdictsEnv); path != "" {
		var b strings.Builder
		fmt.Fprintf(&b, "| input | tlsboot join | kubeadm %s discovery |\n|---|---|---|\n", testcluster.Version)
		cell := func(v verdict) string {
			return strings.ReplaceAll(fmt.Sprintf("**%s** `%s`", map[bool]string{true: "accepts", false: "refuses"}[v.accepted], v.message), "|", `\|`)
		}
		for _, o := range outcomes {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", o.name, cell(o.tlsboot), cell(o.kubeadm))
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// TestKubeadmPreparedCluster: on a cluster that kubeadm's own 'init phase
// bootstrap-token' prepared (cluster-info, RBAC, its initial token) instead
// of 'tlsboot setup', setup finds nothing to change, and 'tlsboot join'
// with kubeadm's initial token joins a node.
func TestKubeadmPreparedCluster(t *testing.T) {
	c := testcluster.StartT(t, testcluster.Options{SigningDuration: time.Hour})
	kubeadm := upstreamBin(t, c, "kubeadm")
	// The version, given, keeps kubeadm from asking dl.k8s.io for one.
	config := filepath.Join(t.TempDir(), "kubeadm.yaml")
	if err := os.WriteFile(config, []byte("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: "+testcluster.Version+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, kubeadm, "init", "phase", "bootstrap-token", "--kubeconfig", c.AdminKubeconfig, "--config", config)
	if r.code != 0 || !strings.Contains(r.stdout, `Creating the "cluster-info" ConfigMap`) {
		t.Fatalf("kubeadm init phase bootstrap-token: %s", r)
	}
	const using = "[bootstrap-token] Using token: "
	i := strings.Index(r.stdout, using)
	if i < 0 {
		t.Fatalf("kubeadm printed no token:\n%s", r)
	}
	tok, _, _ := strings.Cut(r.stdout[i+len(using):], "\n")

	for _, args := range [][]string{{"--dry-run"}, {"--signer-wait", "1m"}} {
		if r := run(t, tlsbootBin, append([]string{"setup", "--kubeconfig", c.AdminKubeconfig}, args...)...); r.code != 0 || r.stdout != "" {
			t.Fatalf("tlsboot setup %v on a cluster kubeadm prepared: want no change:\n%s", args, r)
		}
	}

	ca, err := certutil.CertsFromFile(c.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pin := discovery.PinOf(ca[0])
	awaitSigned(t, c, tok)
	n := newNode(t, c)
	r = run(t, tlsbootBin, append([]string{"join", strings.TrimPrefix(c.URL(), "https://"), "--token", tok, "--discovery-token-ca-cert-hash", string(pin)}, n.joinArgs()...)...)
	if r.code != 0 {
		t.Fatalf("tlsboot join with kubeadm's initial token: %s", r)
	}
	checkNoSecret(t, r, tok)
	if u := whoami(t, n.kubeconfig); u.Username != "system:node:"+n.name {
		t.Fatalf("node kubeconfig authenticates as %q", u.Username)
	}
}
