package bootstrap_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/tlsboot/tlsboot/bootstrap"
	"github.com/tlsboot/tlsboot/csr"
)

// Run gives a node its own client certificate and kubeconfig from a
// bootstrap kubeconfig, as the kubelet does at its first start, and does
// nothing when the kubeconfig already works. It needs a cluster that
// approves node CSRs, so this example is not run.
func ExampleRun() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	res, err := bootstrap.Run(ctx, bootstrap.Options{
		KubeconfigPath:          "/var/lib/agent/kubelet.conf", // written, pointing at the store
		BootstrapKubeconfigPath: "/etc/kubernetes/bootstrap-kubelet.conf",
		CertDir:                 "/var/lib/agent/pki", // kubelet-client-current.pem
		NodeName:                "node-1",
		WaitTimeout:             15 * time.Minute, // for approval and signing
	})
	if err != nil {
		// Every error is one line that names what to fix. The typed errors
		// of package csr tell the cases apart: *csr.TimeoutError (the CSR
		// is still there: approve it and run again), *csr.OutcomeError
		// (denied, failed, deleted), *csr.ServerError (401, 403, TLS,
		// unreachable), *csr.CertificateError (an unusable certificate).
		var timeout *csr.TimeoutError
		if errors.As(err, &timeout) && timeout.Approved {
			log.Fatalf("approved but never signed; is a signer for %s running? %v", timeout.Signer, err)
		}
		log.Fatal(err)
	}
	if !res.Bootstrapped {
		fmt.Println("already bootstrapped:", res.Reason)
		return
	}
	fmt.Printf("%s from CSR %s, valid until %s\n", res.Certificate.Subject.CommonName, res.CSRName, res.Certificate.NotAfter)
}
