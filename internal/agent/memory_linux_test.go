package agent

import (
	"errors"
	"os"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

func TestExecutableRanges(t *testing.T) {
	const maps = `00400000-00c00000 r-xp 00000000 fd:01 123 /usr/bin/tlsboot
00c00000-01400000 r--p 00800000 fd:01 123 /usr/bin/tlsboot
01400000-01500000 rw-p 01000000 fd:01 123 /usr/bin/tlsboot
01500000-01600000 rw-p 00000000 00:00 0
7f0000000000-7f0000100000 r-xp 00000000 fd:01 456 /usr/lib/libc.so.6
7f1000000000-7f1000001000 r--p 00000000 fd:01 789 /opt/my tools/tlsboot (deleted)
7fff00000000-7fff00001000 r-xp 00000000 00:00 0 [vdso]
garbage line
`
	for _, tc := range []struct {
		exe  string
		want []addrRange
	}{
		{"/usr/bin/tlsboot", []addrRange{{0x400000, 0xc00000}, {0xc00000, 0x1400000}}},
		{"/opt/my tools/tlsboot (deleted)", []addrRange{{0x7f1000000000, 0x7f1000001000}}},
		{"/usr/bin/other", nil},
	} {
		t.Run(tc.exe, func(t *testing.T) {
			if got := executableRanges([]byte(maps), tc.exe); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("executableRanges(%q) = %#x, want %#x", tc.exe, got, tc.want)
			}
		})
	}
}

// TestReleaseExecutable releases the test binary's own pages and keeps
// running: what it uses next is read back from the file.
func TestReleaseExecutable(t *testing.T) {
	n, err := releaseExecutable()
	if errors.Is(err, unix.EINVAL) {
		t.Skipf("the kernel has no MADV_PAGEOUT: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("found no read-only mapping of the executable in /proc/self/maps")
	}
	if _, err := os.Executable(); err != nil { // runs released code
		t.Fatal(err)
	}
}
