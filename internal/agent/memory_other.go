//go:build !linux

package agent

import "errors"

// releaseExecutable is only implemented on Linux.
func releaseExecutable() (int64, error) {
	return 0, errors.New("releasing the executable's pages is only implemented on Linux")
}
