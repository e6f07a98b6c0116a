package binding

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
	tokenutil "k8s.io/cluster-bootstrap/token/util"
)

func TestGroup(t *testing.T) {
	long := strings.Repeat("a", MaxNodeName)
	for _, tc := range []struct {
		node, want string
	}{
		{"node-1", Prefix + "node-1"},
		{"node-1.example.com", Prefix + "node-1:example:com"},
		{"a", Prefix + "a"},
		{long, Prefix + long},
		{long + "a", ""},
		{"Node", ""},
		{"node_1", ""},
		{"node.", ""},
		{".node", ""},
		{"a..b", ""},
		{"node:1", ""},
		{"", ""},
	} {
		got, err := Group(tc.node)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("Group(%q) = %q, %v; want %q", tc.node, got, err, tc.want)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Group(%q): %v is not ErrInvalid", tc.node, err)
			}
			continue
		}
		if err := tokenutil.ValidateBootstrapGroupName(got); err != nil {
			t.Errorf("Group(%q) = %q, which the API server refuses: %v", tc.node, got, err)
		}
		node, ok, err := Parse(got)
		if node != tc.node || !ok || err != nil {
			t.Errorf("Parse(%q) = %q, %v, %v; want %q", got, node, ok, err, tc.node)
		}
	}
}

func TestNode(t *testing.T) {
	const defaultGroup = "system:bootstrappers:kubeadm:default-node-token"
	g := func(n string) string { s, _ := Group(n); return s }
	for _, tc := range []struct {
		name    string
		groups  []string
		node    string
		bound   bool
		wantErr bool
	}{
		{"none", []string{"system:bootstrappers", defaultGroup}, "", false, false},
		{"empty", nil, "", false, false},
		{"one", []string{defaultGroup, g("a.b")}, "a.b", true, false},
		{"same twice", []string{g("a.b"), g("a.b")}, "a.b", true, false},
		{"two nodes", []string{g("a.b"), g("a-b")}, "", true, true},
		{"undecodable", []string{Prefix + "a::b"}, "", true, true},
		{"bad with good", []string{g("x"), Prefix + "-x"}, "", true, true},
		{"prefix only", []string{Prefix}, "", true, true},
		{"dot in group", []string{Prefix + "a.b"}, "", true, true},
		{"similar prefix", []string{"system:bootstrappers:tlsboot:nodes:x"}, "", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node, bound, err := Node(tc.groups)
			if node != tc.node || bound != tc.bound || (err != nil) != tc.wantErr {
				t.Fatalf("BoundNode = %q, %v, %v; want %q, %v, error %v", node, bound, err, tc.node, tc.bound, tc.wantErr)
			}
			if err != nil && (!errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), "\n")) {
				t.Fatalf("error %q: want one line, ErrInvalid", err)
			}
		})
	}
}

// FuzzParse checks that decoding is the inverse of encoding:
// whatever decodes, encodes back to the same group, and is a valid node
// name. So no two names share a group and no group means two names.
func FuzzParse(f *testing.F) {
	for _, s := range []string{Prefix + "a:b", Prefix + "a", Prefix, Prefix + "a::b", "system:bootstrappers:x", Prefix + "-a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, group string) {
		node, ok, err := Parse(group)
		if ok != strings.HasPrefix(group, Prefix) {
			t.Fatalf("ok = %v for %q", ok, group)
		}
		if !ok || err != nil {
			if node != "" {
				t.Fatalf("node %q returned with ok=%v err=%v", node, ok, err)
			}
			return
		}
		if msgs := validation.IsDNS1123Subdomain(node); len(msgs) > 0 {
			t.Fatalf("%q decoded to an invalid node name %q: %v", group, node, msgs)
		}
		back, err := Group(node)
		if err != nil || back != group {
			t.Fatalf("%q decodes to %q, which encodes to %q, %v", group, node, back, err)
		}
	})
}
