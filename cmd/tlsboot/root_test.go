package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRootCommand(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int // 0: no error
		wantOut  string
		wantErr  string
	}{
		{args: []string{"version"}, wantOut: "tlsboot "},
		{args: nil, wantOut: "Commands:"},
		{args: []string{"--help"}, wantOut: "bootstrap"},
		{args: []string{"boostrap"}, wantCode: 2, wantErr: `unknown command "boostrap" (did you mean bootstrap?)`},
		{args: []string{"frob"}, wantCode: 2, wantErr: `unknown command "frob" (see 'tlsboot --help')`},
		{args: []string{"bootstrap"}, wantCode: 2, wantErr: "missing required flag --bootstrap-kubeconfig, --kubeconfig, --cert-dir"},
		{args: []string{"bootstrap", "--bogus"}, wantCode: 2, wantErr: "unknown flag: --bogus"},
		{args: []string{"bootstrap", "--kubeconfig", "k", "--bootstrap-kubeconfig", "b", "--cert-dir", "d", "--key-type", "dsa"}, wantCode: 2, wantErr: "--key-type"},
		{args: []string{"bootstrap", "--kubeconfig", "k", "--bootstrap-kubeconfig", "b", "--cert-dir", "d", "--expiration", "1m"}, wantCode: 2, wantErr: "at least 10m"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, &stdout, &stderr)
			if tt.wantCode == 0 {
				if err != nil {
					t.Fatalf("run = %v", err)
				}
				if !strings.Contains(stdout.String(), tt.wantOut) {
					t.Errorf("stdout %q does not contain %q", stdout.String(), tt.wantOut)
				}
				return
			}
			if err == nil || exitCode(err) != tt.wantCode || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("run = %v (exit %d), want exit %d and %q", err, exitCode(err), tt.wantCode, tt.wantErr)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}
