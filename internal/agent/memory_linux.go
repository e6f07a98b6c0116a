package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// releaseExecutable asks the kernel to reclaim the resident pages of the
// executable's read-only mappings (code, read-only data), with
// madvise(MADV_PAGEOUT), and returns how many bytes those mappings span.
// Writable mappings are left alone. Pages the process uses again are read
// back from the file on access; MADV_RANDOM first makes each such fault
// read and map that page alone, where read-ahead and fault-around would
// bring back tens of kilobytes around each one and undo most of the
// release within a few faults.
func releaseExecutable() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	var span int64
	for _, r := range executableRanges(maps, exe) {
		for _, advice := range []struct {
			name string
			n    uintptr
		}{{"MADV_RANDOM", unix.MADV_RANDOM}, {"MADV_PAGEOUT", unix.MADV_PAGEOUT}} {
			if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, advice.n); errno != 0 {
				return span, fmt.Errorf("madvise(%s) on %s: %w", advice.name, exe, errno)
			}
		}
		span += int64(r.end - r.start)
	}
	return span, nil
}

type addrRange struct{ start, end uintptr }

// executableRanges returns the read-only mappings of the file exe in a
// /proc/PID/maps listing ("start-end perms offset dev inode path").
func executableRanges(maps []byte, exe string) []addrRange {
	var out []addrRange
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// The path may hold spaces, and ends in " (deleted)" once the
		// binary has been replaced on disk, as /proc/self/exe does.
		f := bytes.Fields(sc.Bytes())
		if len(f) < 6 || string(bytes.Join(f[5:], []byte(" "))) != exe || len(f[1]) < 2 || f[1][0] != 'r' || f[1][1] != '-' {
			continue
		}
		lo, hi, ok := bytes.Cut(f[0], []byte("-"))
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, addrRange{uintptr(start), uintptr(end)})
	}
	return out
}
