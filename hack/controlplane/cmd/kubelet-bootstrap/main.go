// Command kubelet-bootstrap runs the kubelet's own TLS bootstrap code
// (k8s.io/kubernetes/pkg/kubelet/certificate/bootstrap.LoadClientCert) once
// and exits. It is the upstream peer that bench/ measures tlsboot against: the
// same inputs, the same control plane, the code path a real kubelet takes.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/kubelet/certificate/bootstrap"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "path of the kubeconfig to write")
	bootstrapKubeconfig := flag.String("bootstrap-kubeconfig", "", "path of the bootstrap kubeconfig")
	certDir := flag.String("cert-dir", "", "directory for the certificate store")
	nodeName := flag.String("node-name", "", "node name")
	klog.InitFlags(nil)
	flag.Parse()
	if *kubeconfig == "" || *bootstrapKubeconfig == "" || *certDir == "" || *nodeName == "" {
		fmt.Fprintln(os.Stderr, "kubelet-bootstrap: --kubeconfig, --bootstrap-kubeconfig, --cert-dir and --node-name are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	if err := bootstrap.LoadClientCert(ctx, *kubeconfig, *bootstrapKubeconfig, *certDir, types.NodeName(*nodeName)); err != nil {
		fmt.Fprintln(os.Stderr, "kubelet-bootstrap:", err)
		os.Exit(1)
	}
	// The time of the call alone, for bench/bootstrap (tlsboot prints the same).
	fmt.Printf("took %s\n", time.Since(start))
}
