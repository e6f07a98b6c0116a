package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// cpuSeconds reads a process's user+system CPU time from /proc; 0 if gone.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name may hold spaces: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / clockTicks
}

// controlPlanePIDs finds the processes of the cluster whose files are
// under dir, by program name (etcd, kube-apiserver,
// kube-controller-manager).
func controlPlanePIDs(dir string) map[string]int {
	pids := map[string]int{}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(dir+"/")) {
			continue
		}
		argv0, _, _ := bytes.Cut(b, []byte{0})
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		pids[filepath.Base(string(argv0))] = pid
	}
	return pids
}

// cpuUse is CPU-seconds spent during a measurement.
type cpuUse struct{ etcd, apiserver, approver float64 }

// cpuMeter samples the CPU time of the control plane and the approver.
type cpuMeter struct {
	etcd, apiserver, approver int // pids; approver 0: none measured
}

func (m cpuMeter) sample() cpuUse {
	u := cpuUse{etcd: cpuSeconds(m.etcd), apiserver: cpuSeconds(m.apiserver)}
	if m.approver != 0 {
		u.approver = cpuSeconds(m.approver)
	}
	return u
}

func (u cpuUse) sub(before cpuUse) cpuUse {
	return cpuUse{etcd: u.etcd - before.etcd, apiserver: u.apiserver - before.apiserver, approver: u.approver - before.approver}
}
