// Package testbin builds the tlsboot command for the test suites that run
// it as a user would (test/e2e, test/crash): once per test binary, from
// TestMain, into a temporary directory.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Build builds github.com/tlsboot/tlsboot/cmd/tlsboot with the go command
// on PATH into a new temporary directory, printing the compiler's output
// to standard error. It returns the binary's path and a function that
// removes the directory; on error nothing is left behind.
func Build() (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "tlsboot-bin-")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(dir, "tlsboot")
	build := exec.Command("go", "build", "-o", bin, "github.com/tlsboot/tlsboot/cmd/tlsboot")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("building tlsboot: %w", err)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}
