package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tlsboot/tlsboot/bootstrap"
	"github.com/tlsboot/tlsboot/csr"
)

// TestLibraryErrors: the command reads the library's typed errors to name
// its flags and to choose the exit code; it never matches their text.
func TestLibraryErrors(t *testing.T) {
	timeout := &csr.TimeoutError{CSR: "node-csr-x", Signer: "kubernetes.io/kube-apiserver-client-kubelet", Waited: time.Hour}
	denied := &csr.OutcomeError{Name: "node-csr-x", Kind: csr.ErrDenied}
	gaveUp := fmt.Errorf("%w: %w", bootstrap.ErrWaitTimeout,
		fmt.Errorf("creating certificate signing request: %w", &csr.ServerError{Kind: csr.ErrUnreachable, Err: errors.New("connection refused")}))
	tests := []struct {
		name     string
		err      error
		wantCode int
		want     string
		wantAs   any // a pointer to the typed error that must still be found
	}{
		{"expiration names its flag", invalidOptions(fmt.Errorf("options: %w", csr.CheckExpiration(time.Minute))), 2,
			"--expiration: expiration 1m0s is too short: the API server requires at least 10m0s", new(*csr.ExpirationError)},
		{"other option errors are usage errors as they are", invalidOptions(errors.New("the node name is required")), 2,
			"the node name is required", nil},
		{"a timeout says which flag waits longer", explainFailure(fmt.Errorf("bootstrapping: %w", timeout)), 1,
			"certificate signing request node-csr-x was not issued within 1h0m0s: approve it with 'kubectl certificate approve node-csr-x' or check that a signer issues kubernetes.io/kube-apiserver-client-kubelet, or raise --wait-timeout",
			new(*csr.TimeoutError)},
		{"giving up before the CSR exists says which flag waits longer", explainFailure(fmt.Errorf("bootstrapping: %w", gaveUp)), 1,
			"gave up when the wait timeout (Options.WaitTimeout) ran out: creating certificate signing request: the API server did not answer (connection refused): check that the API server is running and reachable from here; raise --wait-timeout to keep trying longer",
			new(*csr.ServerError)},
		{"other failures are left alone", explainFailure(denied), 1, denied.Error(), new(*csr.OutcomeError)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err); got != tt.wantCode {
				t.Errorf("exit code %d, want %d", got, tt.wantCode)
			}
			if msg := tt.err.Error(); !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q does not contain %q on one line", msg, tt.want)
			}
			if tt.wantAs != nil && !errors.As(tt.err, tt.wantAs) {
				t.Errorf("errors.As(%v, %T) = false", tt.err, tt.wantAs)
			}
		})
	}
}

func TestApproverSignersDefault(t *testing.T) {
	cmd := newApproverCommand()
	got, err := cmd.Flags().GetStringSlice("signers")
	if err != nil {
		t.Fatal(err)
	}
	if want := csr.NodeSigners(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("--signers defaults to %v, want csr.NodeSigners() %v", got, want)
	}
}
