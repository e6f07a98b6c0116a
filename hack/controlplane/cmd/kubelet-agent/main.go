// Command kubelet-agent runs the kubelet's own client-certificate path with
// rotation on, as cmd/kubelet/app does at start-up: bootstrap.LoadClientConfig,
// a client certificate manager (pkg/kubelet/certificate, built on client-go's
// util/certificate) started in the background, and UpdateTransport keeping
// connections on the newest certificate. It prints "ready" once the manager
// has a certificate and then idles until SIGTERM. It is the upstream peer
// that bench/agent measures `tlsboot run` against.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	clientset "k8s.io/client-go/kubernetes"
	restclient "k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/kubelet/certificate"
	"k8s.io/kubernetes/pkg/kubelet/certificate/bootstrap"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "path of the kubeconfig to write")
	bootstrapKubeconfig := flag.String("bootstrap-kubeconfig", "", "path of the bootstrap kubeconfig")
	certDir := flag.String("cert-dir", "", "directory for the certificate store")
	nodeName := flag.String("node-name", "", "node name")
	klog.InitFlags(nil)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *kubeconfig, *bootstrapKubeconfig, *certDir, types.NodeName(*nodeName)); err != nil {
		fmt.Fprintln(os.Stderr, "kubelet-agent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, kubeconfig, bootstrapKubeconfig, certDir string, nodeName types.NodeName) error {
	logger := klog.FromContext(ctx)
	certConfig, clientConfig, err := bootstrap.LoadClientConfig(logger, kubeconfig, bootstrapKubeconfig, certDir)
	if err != nil {
		return err
	}
	// As the kubelet's buildClientCertificateManager: request with the
	// bootstrap config until a certificate exists, then with the store's.
	newClientset := func(current *tls.Certificate) (clientset.Interface, error) {
		config := certConfig
		if current != nil {
			config = clientConfig
		}
		return clientset.NewForConfig(config)
	}
	m, err := certificate.NewKubeletClientCertificateManager(certDir, nodeName,
		clientConfig.CertData, clientConfig.KeyData, clientConfig.CertFile, clientConfig.KeyFile, newClientset)
	if err != nil {
		return err
	}
	m.Start()
	defer m.Stop()
	transportConfig := restclient.AnonymousClientConfig(clientConfig)
	if _, err := certificate.UpdateTransport(logger, wait.NeverStop, transportConfig, m, 5*time.Minute); err != nil {
		return err
	}
	if err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		return m.Current() != nil, nil
	}); err != nil {
		return err
	}
	fmt.Println("ready")
	<-ctx.Done()
	return nil
}
