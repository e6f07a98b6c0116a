// Command tlsboot bootstraps and keeps valid the TLS identity of a Kubernetes
// node or node agent. See README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx = klog.NewContext(ctx, klog.Background())
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	klog.Flush()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tlsboot: "+err.Error())
		os.Exit(exitCode(err))
	}
}

// run executes the command line args and is what the tests call.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newRootCommand(stdout, stderr)
	cmd.SetArgs(args)
	return cmd.ExecuteContext(ctx)
}
