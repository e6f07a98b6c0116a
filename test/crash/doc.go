// Package crash proves tlsboot's crash-safety claims by force (issue 11 §3):
// its tests SIGKILL the real `tlsboot bootstrap` and `tlsboot run` at random
// instants against a real local control plane, fill the file systems under
// them until a write fails with ENOSPC, and check after every cycle that
// nothing a node relies on is lost, torn or duplicated.
//
// `go test ./test/crash/` runs the short form (50 cycles of each kind);
// `make crashtest` runs 500 of each and writes the counts and the seed to
// BENCHMARKS.md. The package has no API: everything is in its tests.
package crash
