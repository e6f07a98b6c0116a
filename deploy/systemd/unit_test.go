// Package systemd_test checks the systemd unit in this directory.
package systemd_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// unit is the [Service] section of tlsboot.service: each key's values in
// order, continuation lines joined.
func unit(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("tlsboot.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string][]string{}
	section, pending := "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if pending == "" && (line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			pending += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, pending = pending+line, ""
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		if section != "[Service]" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("unparsable line %q", line)
		}
		keys[k] = append(keys[k], strings.TrimSpace(v))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// flag returns the value of --name in args.
func flag(args []string, name string) string {
	for i, a := range args {
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

// covered reports whether path is dir or under it.
func covered(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// TestUnitWritesOnlyWhatItNeeds: ProtectSystem=strict, every path the
// agent writes (the certificate directory; the kubeconfig's directory,
// since it is written with a temporary file and a rename) is writable, and
// /etc/kubernetes as a whole is not.
func TestUnitWritesOnlyWhatItNeeds(t *testing.T) {
	u := unit(t)
	if got := u["ProtectSystem"]; len(got) != 1 || got[0] != "strict" {
		t.Fatalf("ProtectSystem = %v, want strict", got)
	}
	var writable []string
	for _, v := range u["ReadWritePaths"] {
		for _, p := range strings.Fields(v) {
			writable = append(writable, strings.TrimLeft(p, "-+"))
		}
	}
	for _, v := range u["StateDirectory"] {
		for _, p := range strings.Fields(v) {
			writable = append(writable, filepath.Join("/var/lib", p))
		}
	}
	for _, v := range u["RuntimeDirectory"] {
		for _, p := range strings.Fields(v) {
			writable = append(writable, filepath.Join("/run", p))
		}
	}
	for _, w := range writable {
		for _, protected := range []string{"/etc/kubernetes", "/etc/kubernetes/bootstrap-kubelet.conf", "/etc/kubernetes/manifests", "/usr/local/bin/tlsboot"} {
			if covered(protected, w) {
				t.Errorf("writable path %s covers %s", w, protected)
			}
		}
	}
	if len(u["ExecStart"]) != 1 {
		t.Fatalf("ExecStart = %v, want one", u["ExecStart"])
	}
	args := strings.Fields(u["ExecStart"][0])
	writes := map[string]string{
		"--cert-dir":   flag(args, "cert-dir"),
		"--kubeconfig": filepath.Dir(flag(args, "kubeconfig")),
	}
	for what, dir := range writes {
		if dir == "" || dir == "." {
			t.Errorf("ExecStart has no %s", what)
			continue
		}
		ok := false
		for _, w := range writable {
			ok = ok || covered(dir, w)
		}
		if !ok {
			t.Errorf("%s writes in %s, which no ReadWritePaths or StateDirectory covers (%v)", what, dir, writable)
		}
	}
	if boot := flag(args, "bootstrap-kubeconfig"); boot != "" {
		for _, w := range writable {
			if covered(boot, w) {
				t.Errorf("the bootstrap kubeconfig %s is writable (%s): the agent only reads it", boot, w)
			}
		}
	}
}
