// Command fake-cri serves k8s.io/cri-client's in-memory container runtime and
// image service on a unix socket, so that a real kubelet runs without a
// container runtime. It reports what the kubelet needs before it registers
// its Node: runtime and network Ready, the cgroupfs cgroup driver, an image
// filesystem, and one image of non-zero size (the kubelet rejects size 0).
// It runs no containers. It stops on SIGTERM or SIGINT and removes its socket.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-client/pkg/fake"
)

func main() {
	socket := flag.String("socket", "", "absolute path of the unix socket to serve on (required)")
	imageFS := flag.String("image-fs", "", "existing directory reported as the image filesystem (required)")
	flag.Parse()
	if err := run(*socket, *imageFS); err != nil {
		fmt.Fprintln(os.Stderr, "fake-cri:", err)
		os.Exit(1)
	}
}

func run(socket, imageFS string) error {
	if !filepath.IsAbs(socket) {
		return fmt.Errorf("--socket %q is not an absolute path: give the unix socket's absolute path", socket)
	}
	if fi, err := os.Stat(imageFS); err != nil || !fi.IsDir() {
		return fmt.Errorf("--image-fs %q is not an existing directory: give a directory for the image filesystem", imageFS)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)

	r := fake.NewFakeRemoteRuntime()
	r.RuntimeService.FakeLinuxConfiguration = &runtimeapi.LinuxRuntimeConfiguration{
		CgroupDriver: runtimeapi.CgroupDriver_CGROUPFS,
	}
	r.ImageService.SetFakeImageSize(1 << 20)
	r.ImageService.SetFakeImages([]string{"registry.k8s.io/pause:3.10"})
	r.ImageService.SetFakeFilesystemUsage([]*runtimeapi.FilesystemUsage{{
		Timestamp:  time.Now().UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: imageFS},
		UsedBytes:  &runtimeapi.UInt64Value{Value: 1 << 20},
		InodesUsed: &runtimeapi.UInt64Value{Value: 1},
	}})
	if err := r.Start("unix://" + socket); err != nil {
		return err
	}
	fmt.Println("fake-cri: serving on", socket)
	<-sigs
	r.Stop()
	if err := os.Remove(socket); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("removing %s: %w", socket, err)
	}
	return nil
}
