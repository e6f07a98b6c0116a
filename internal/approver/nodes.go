package approver

import (
	"fmt"
	"slices"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/tlsboot/tlsboot/approval"
)

// nodeIndex indexes CSRs by the node their common name names, so that a
// Node appearing (or reporting new addresses) requeues the CSRs waiting for it.
const nodeIndex = "node"

func indexByNode(obj any) ([]string, error) {
	csr, ok := obj.(*certificatesv1.CertificateSigningRequest)
	if !ok || approval.Decided(csr) {
		return nil, nil
	}
	if name := approval.NodeName(csr); name != "" {
		return []string{name}, nil
	}
	return nil, nil
}

// watchNodes reads Nodes from a shared informer; serving CSRs are checked
// against the cached Node's status.addresses.
func (c *Controller) watchNodes() error {
	f := informers.NewSharedInformerFactory(c.opts.Client, c.opts.Resync)
	inf := f.Core().V1().Nodes()
	_, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.nodeChanged(obj) },
		UpdateFunc: func(old, obj any) {
			o, ok1 := old.(*corev1.Node)
			n, ok2 := obj.(*corev1.Node)
			if ok1 && ok2 && !slices.Equal(o.Status.Addresses, n.Status.Addresses) {
				c.nodeChanged(n)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("watching nodes: %w", err)
	}
	c.nodes = inf.Lister()
	c.synced = append(c.synced, inf.Informer().HasSynced)
	c.starts = append(c.starts, f.Start)
	return nil
}

// nodeChanged requeues the pending CSRs that name the node.
func (c *Controller) nodeChanged(obj any) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	for signer, inf := range c.csrs {
		objs, _ := inf.Informer().GetIndexer().ByIndex(nodeIndex, node.Name)
		for _, o := range objs {
			if csr, ok := o.(*certificatesv1.CertificateSigningRequest); ok {
				c.queue.Add(key{signer, csr.Name})
			}
		}
	}
}
