package crash

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// tmpfs is a small tmpfs mounted for one test, with a filler file that
// leaves an exact number of pages free.
type tmpfs struct {
	dir    string
	filler string
}

// mountTmpfs mounts a 64 KiB tmpfs on a new directory and unmounts it in
// t.Cleanup (after the processes using it are killed: cleanups run last
// registered first).
func mountTmpfs(t *testing.T) *tmpfs {
	t.Helper()
	dir := t.TempDir()
	err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=64k,mode=0700")
	if errors.Is(err, syscall.EPERM) {
		// Root without CAP_SYS_ADMIN, as in many containers.
		t.Skipf("mounting a tmpfs on %s: %v: ENOSPC on a real file system needs CAP_SYS_ADMIN; internal/atomicfile's TestWriteFailures injects it instead", dir, err)
	}
	if err != nil {
		t.Fatalf("mounting a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return &tmpfs{dir: dir, filler: filepath.Join(dir, "filler")}
}

func (f *tmpfs) freePages(t *testing.T) int {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(f.dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Bsize != 4096 {
		t.Fatalf("tmpfs block size %d, want 4096", st.Bsize)
	}
	return int(st.Bavail)
}

// leave fills the file system so that exactly pages pages are free: the
// write that needs page pages+1 fails with ENOSPC.
func (f *tmpfs) leave(t *testing.T, pages int) {
	t.Helper()
	f.free(t)
	free := f.freePages(t)
	if free < pages {
		t.Fatalf("%d pages free on %s, fewer than the %d to leave", free, f.dir, pages)
	}
	if err := os.WriteFile(f.filler, make([]byte, (free-pages)*4096), 0o600); err != nil {
		t.Fatalf("filling %s: %v", f.dir, err)
	}
	if got := f.freePages(t); got != pages {
		t.Fatalf("%d pages free on %s after filling, want %d", got, f.dir, pages)
	}
}

// free removes the filler.
func (f *tmpfs) free(t *testing.T) {
	t.Helper()
	if err := os.Remove(f.filler); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

// enospcNode is a node whose certificate directory and kubeconfig are on
// two tmpfs, so that each write can be made to fail on its own. The
// certificate directory's path is longer than 128 bytes so that the
// -current.pem link (an absolute target) takes a page of its own, like a
// file: tmpfs keeps shorter targets in the inode.
func enospcNode(t *testing.T, kind string) (n *node, certFS, kubeconfigFS *tmpfs) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("ENOSPC on a real file system needs root to mount a small tmpfs; without root, internal/atomicfile's TestWriteFailures injects ENOSPC instead")
	}
	c := cluster(t)
	n = newNode(t, c, kind)
	certFS, kubeconfigFS = mountTmpfs(t), mountTmpfs(t)
	n.certDir = filepath.Join(certFS.dir, "pki-"+strings.Repeat("x", 100))
	n.kubeconfig = filepath.Join(kubeconfigFS.dir, "kubelet.conf")
	n.dir = filepath.Dir(certFS.dir) // the checks walk both mounts
	if err := os.Mkdir(n.certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	return n, certFS, kubeconfigFS
}

// snapshot maps each regular file and link under dir to its content or
// target, filler files left out.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		switch {
		case err != nil || fi.Name() == "filler":
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(path)
			out[path] = "-> " + target
		case fi.Mode().IsRegular():
			data, _ := os.ReadFile(path)
			out[path] = string(data)
		}
		return nil
	})
	return out
}

// TestENOSPCBootstrap makes each write of a first bootstrap fail in turn:
// the pending key, the certificate pair, the -current.pem link (on the
// certificate directory's tmpfs) and the kubeconfig (on its own). Each run
// must fail with one line naming the file, leave nothing torn and keep the
// pending key, and a run with space must then complete without a second
// CSR.
func TestENOSPCBootstrap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cert    bool   // fill the certificate directory's tmpfs, else the kubeconfig's
		pages   int    // pages left free
		file    string // the file the error must name
		csrSent bool   // the CSR was created before the write failed
	}{
		{"write 1: pending key", true, 0, prefix + ".key.tmp", false},
		{"write 2: certificate pair", true, 1, prefix + "-2", true},
		{"write 3: current link", true, 2, prefix + "-current.pem", true},
		{"write 4: kubeconfig", false, 0, "kubelet.conf", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, certFS, kubeconfigFS := enospcNode(t, "eb")
			ck := newChecker(t, cluster(t))
			full := kubeconfigFS
			if tt.cert {
				full = certFS
			}
			full.leave(t, tt.pages)
			r := start(t, n.args("bootstrap")...).wait(t)
			checkENOSPCError(t, r, tt.file)
			for _, v := range ck.check(t, n, killedFresh).violations {
				t.Error(v)
			}
			if !tt.csrSent {
				if got := ck.csrsByKey(t, n.name); len(got) != 0 {
					t.Errorf("a CSR was created although the key could not be stored: %v", got)
				}
			} else if !exists(n.pendingKey()) && n.current() == nil {
				t.Errorf("neither the pending key nor a stored certificate survived: the next run cannot re-attach to its CSR")
			}

			full.free(t)
			r = start(t, n.args("bootstrap")...).wait(t)
			if r.code != 0 {
				t.Fatalf("the run with space: %s", r)
			}
			if tt.csrSent && !strings.Contains(r.stdout, "resumed an earlier request") {
				t.Errorf("the run with space did not re-attach to the CSR of the failed run:\n%s", r)
			}
			for _, v := range ck.check(t, n, complete).violations {
				t.Error(v)
			}
			if !t.Failed() {
				passedENOSPC("bootstrap " + tt.name)
			}
		})
	}
}

// TestENOSPCRotation makes each write of a rotation by `tlsboot run` fail
// in turn: the pending key, the certificate pair, the -current.pem link.
// The agent must log a retry naming the file and keep running, the old
// certificate, key and kubeconfig must stay in place and keep
// authenticating, and once there is space again the rotation completes.
func TestENOSPCRotation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		pages int
		file  string
	}{
		{"write 1: pending key", 0, prefix + ".key.tmp"},
		{"write 2: certificate pair", 1, prefix + "-2"},
		{"write 3: current link", 2, prefix + "-current.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, certFS, kubeconfigFS := enospcNode(t, "er")
			ck := newChecker(t, cluster(t))
			if r := start(t, n.args("bootstrap")...).wait(t); r.code != 0 {
				t.Fatalf("bootstrap: %s", r)
			}
			a := startAgent(t, n)
			before := n.serial()
			kept := snapshot(t, kubeconfigFS.dir)
			current, _ := os.ReadFile(certstoreCurrent(n))

			certFS.leave(t, tt.pages)
			a.hup(t)
			a.awaitLog(t, "no space left on device")
			line := lineWith(a.stderr.String(), "no space left on device")
			if !strings.Contains(line, "Certificate renewal failed, will retry") || !strings.Contains(line, tt.file) || !strings.Contains(line, "free space on the file system that holds") {
				t.Errorf("the failure is not logged as a retry naming %s:\n%s", tt.file, line)
			}
			if got := n.serial(); got != before {
				t.Errorf("the stored certificate changed from serial %s to %s although the rotation failed", before, got)
			}
			if now, _ := os.ReadFile(certstoreCurrent(n)); !bytes.Equal(now, current) {
				t.Error("the current certificate and key changed although the rotation failed")
			}
			if now := snapshot(t, kubeconfigFS.dir); fmt.Sprint(now) != fmt.Sprint(kept) {
				t.Error("the kubeconfig changed although the rotation failed")
			}
			for _, v := range ck.check(t, n, holding).violations {
				t.Error(v)
			}

			certFS.free(t)
			a.hup(t) // rather than wait out the backoff
			awaitSerialChange(t, a, n, before)
			a.stop(t)
			for _, v := range ck.check(t, n, complete).violations {
				t.Error(v)
			}
			if !t.Failed() {
				passedENOSPC("rotation " + tt.name)
			}
		})
	}
}

func certstoreCurrent(n *node) string { return filepath.Join(n.certDir, prefix+"-current.pem") }

// checkENOSPCError checks that a run failed with one line that names the
// file and the cause, and nothing else on that line a user must decode.
func checkENOSPCError(t *testing.T, r result, file string) {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("the run succeeded on a full file system:\n%s", r)
	}
	line := r.lastLine()
	for _, want := range []string{"tlsboot: ", "no space left on device; free space on the file system that holds", file} {
		if !strings.Contains(line, want) {
			t.Errorf("the error line does not contain %q:\n%s", want, line)
		}
	}
	if strings.Contains(line, ".tmp-") && !strings.HasSuffix(file, ".tmp") {
		t.Errorf("the error line names a temporary file rather than %s:\n%s", file, line)
	}
	if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic") {
		t.Errorf("stack trace in the output:\n%s", r.stderr)
	}
	t.Logf("error line: %s", line)
}

// lineWith is the first line of out that contains s.
func lineWith(out, s string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
