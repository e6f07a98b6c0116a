package csrwait_test

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/certstore"
	"github.com/tlsboot/tlsboot/csr"
	"github.com/tlsboot/tlsboot/csrwait"
	"github.com/tlsboot/tlsboot/kubeconfig"
)

// Submit and ForCSR are the two calls to the API server of a certificate
// request: create (or re-attach to) the CSR, then wait for its certificate.
// The key is the store's pending key, so that a request interrupted by a
// crash is found again under the same CSR name. It needs a cluster, so this
// example is not run.
func ExampleSubmit() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute) // bounds the wait
	defer cancel()

	cfg, err := kubeconfig.Load("/var/lib/agent/kubelet.conf") // the node's current credentials
	if err != nil {
		log.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		log.Fatal(err)
	}
	store, err := certstore.Open(certstore.Options{Dir: "/var/lib/agent/pki", Prefix: "kubelet-client"})
	if err != nil {
		log.Fatal(err)
	}
	key, keyPEM, _, _, err := store.LoadPendingKey(func() (crypto.Signer, error) { return csr.GenerateKey(csr.ECDSAP256) })
	if err != nil {
		log.Fatal(err)
	}

	req := csr.NodeClient("node-1", key.Public())
	name, err := req.Name(key.Public()) // the kubelet's deterministic name
	if err != nil {
		log.Fatal(err)
	}
	obj, created, err := csrwait.Submit(ctx, client, name, req, key)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("CSR", obj.Name, "created:", created)

	certPEM, err := csrwait.ForCSR(ctx, client, obj, csrwait.Options{Progress: csrwait.LogProgress(klog.Background())})
	var outcome *csr.OutcomeError
	switch {
	case errors.As(err, &outcome) && (outcome.Kind == csr.ErrDenied || outcome.Kind == csr.ErrFailed):
		// This CSR will never be issued, and it stays: drop the key, so
		// that the next request is a new CSR under a new name.
		if err := store.DropPendingKey(); err != nil {
			log.Print(err)
		}
		log.Fatal(err) // names the CSR, the reason and the message
	case err != nil:
		log.Fatal(err) // *csr.TimeoutError at ctx's deadline, *csr.ServerError, ...
	}
	// Never store a certificate without checking it is what was asked for.
	roots, err := kubeconfig.CAPool(cfg)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := csr.CheckIssued(obj.Name, certPEM, key, req, time.Now(), roots); err != nil {
		log.Fatal(err)
	}
	if _, err := store.Update(certPEM, keyPEM); err != nil {
		log.Fatal(err)
	}
	if err := store.DropPendingKey(); err != nil { // the next request uses a new key
		log.Fatal(err)
	}
}

// Wait finds a CSR by name alone, for a process that knows the name but not
// the object, such as one restarted while its CSR was pending. An empty UID
// accepts the first CSR of that name.
func ExampleWait() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cfg, err := kubeconfig.Load("/var/lib/agent/kubelet.conf")
	if err != nil {
		log.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		log.Fatal(err)
	}
	certPEM, err := csrwait.Wait(ctx, client, "node-csr-example", "", csrwait.Options{})
	var timeout *csr.TimeoutError
	switch {
	case errors.As(err, &timeout):
		log.Fatalf("CSR %s not issued after %s (approved: %t)", timeout.CSR, timeout.Waited, timeout.Approved)
	case err != nil:
		log.Fatal(err)
	}
	fmt.Printf("%d bytes of PEM\n", len(certPEM))
}
