// Command kubelet-fleet runs the kubelet's own TLS bootstrap code
// (k8s.io/kubernetes/pkg/kubelet/certificate/bootstrap.LoadClientCert) for
// a fleet of nodes at once: one goroutine per node, each with its own
// directory (so its own key, certificate store and kubeconfig) and node
// name, all sharing one bootstrap kubeconfig, as a fleet sharing its
// bootstrap token does. The goroutines wait at a start line and are released
// together. It is the upstream peer that bench/fleet measures tlsboot
// against, and prints one JSON report on stdout:
//
//	{"wall_ns": ..., "nodes": [{"name": ..., "dir": ..., "join_ns": ..., "error": ...}, ...]}
//
// join_ns is the time from the release to the node's kubeconfig being
// written; wall_ns the time from the release until every node has ended.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/kubelet/certificate/bootstrap"
)

type node struct {
	Name  string        `json:"name"`
	Dir   string        `json:"dir"`
	Join  time.Duration `json:"join_ns"`
	Error string        `json:"error,omitempty"`
}

type report struct {
	Wall  time.Duration `json:"wall_ns"`
	Nodes []*node       `json:"nodes"`
}

func main() {
	n := flag.Int("n", 1000, "number of nodes")
	dir := flag.String("dir", "", "directory under which each node gets <dir>/<name>/{kubelet.conf,pki}")
	bootstrapKubeconfig := flag.String("bootstrap-kubeconfig", "", "bootstrap kubeconfig shared by every node")
	prefix := flag.String("prefix", "fleet-", "node names are <prefix><index>")
	timeout := flag.Duration("timeout", 30*time.Minute, "give up on a node after this long")
	klog.InitFlags(nil)
	flag.Parse()
	if *n < 1 || *dir == "" || *bootstrapKubeconfig == "" {
		fmt.Fprintln(os.Stderr, "kubelet-fleet: -n (at least 1), -dir and -bootstrap-kubeconfig are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	nodes := make([]*node, *n)
	for i := range nodes {
		name := fmt.Sprintf("%s%d", *prefix, i)
		nodes[i] = &node{Name: name, Dir: filepath.Join(*dir, name)}
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
			err := bootstrap.LoadClientCert(ctx, filepath.Join(nd.Dir, "kubelet.conf"), *bootstrapKubeconfig, filepath.Join(nd.Dir, "pki"), types.NodeName(nd.Name))
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
	r := report{Wall: time.Since(start), Nodes: nodes}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		fmt.Fprintln(os.Stderr, "kubelet-fleet:", err)
		os.Exit(1)
	}
}
