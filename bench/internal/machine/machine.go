// Package machine describes the machine a benchmark ran on, for the
// reports in BENCHMARKS.md.
package machine

import (
	"fmt"
	"os"
	"runtime"
	"strings"
)

// CPUModel is the first "model name" of /proc/cpuinfo, or GOARCH when
// there is none.
func CPUModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// Describe is the CPU model and the number of CPUs this process may use.
func Describe() string {
	return fmt.Sprintf("%s, %d CPUs visible", CPUModel(), runtime.NumCPU())
}
