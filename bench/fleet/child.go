package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tlsboot/tlsboot/bootstrap"
)

// fleetNode is one node of a fleet report, the JSON both fleet programs
// (this one with -child, and hack/controlplane's kubelet-fleet) print.
type fleetNode struct {
	Name  string        `json:"name"`
	Dir   string        `json:"dir"`
	Join  time.Duration `json:"join_ns"`
	Error string        `json:"error,omitempty"`
}

// fleetReport is what a fleet program prints on stdout.
type fleetReport struct {
	Wall  time.Duration `json:"wall_ns"`
	Nodes []*fleetNode  `json:"nodes"`
}

// nodePrefix names the nodes of a fleet: <prefix><index>.
const nodePrefix = "fleet-"

// childFleet bootstraps n nodes with bootstrap.Run, one goroutine each,
// released together, and prints the fleet report: the same shape, inputs
// and start line as kubelet-fleet.
func childFleet(ctx context.Context, n int, dir, boot string) error {
	if n < 1 || dir == "" || boot == "" {
		return fmt.Errorf("-child needs -n (at least 1), -dir and -bootstrap-kubeconfig")
	}
	nodes := make([]*fleetNode, n)
	for i := range nodes {
		name := fmt.Sprintf("%s%d", nodePrefix, i)
		nodes[i] = &fleetNode{Name: name, Dir: filepath.Join(dir, name)}
	}
	release := make(chan struct{})
	var ready, done sync.WaitGroup
	var start time.Time
	for _, nd := range nodes {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-release
			_, err := bootstrap.Run(ctx, bootstrap.Options{
				KubeconfigPath:          filepath.Join(nd.Dir, "kubelet.conf"),
				BootstrapKubeconfigPath: boot,
				CertDir:                 filepath.Join(nd.Dir, "pki"),
				NodeName:                nd.Name,
			})
			nd.Join = time.Since(start)
			if err != nil {
				nd.Error = err.Error()
			}
		}()
	}
	ready.Wait()
	start = time.Now()
	close(release)
	done.Wait()
	return json.NewEncoder(os.Stdout).Encode(fleetReport{Wall: time.Since(start), Nodes: nodes})
}
