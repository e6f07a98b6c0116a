// Package version holds the build's version, set by the linker.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is set with -ldflags "-X github.com/tlsboot/tlsboot/internal/version.Version=...".
// When unset it falls back to the module version recorded by the Go toolchain.
var Version = ""

// String returns a one-line description of the build.
func String() string {
	v := Version
	if v == "" {
		v = "devel"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	return fmt.Sprintf("tlsboot %s (%s, %s/%s)", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
