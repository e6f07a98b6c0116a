#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager),
# a node (kubelet and fake-cri, an in-memory container runtime for it) and the
# upstream peers (kubelet-bootstrap, kubelet-agent, ...; kubeadm and
# kubeadm-discovery, which runs kubeadm's token discovery) from the pinned Go
# modules of this directory's go.mod into a versioned cache directory:
#
#   $TLSBOOT_CACHE (default <repo>/.cache)/controlplane/<version>/bin/
#
# Idempotent: a binary that is present and newer than go.mod/go.sum and the
# programs' sources is not built again; when all are, it returns in well
# under a second.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
version=v1.37.2
etcd_version=v3.7.0
cache=${TLSBOOT_CACHE:-$root/.cache}
bin="$cache/controlplane/$version/bin"
tools=(etcd kube-apiserver kube-controller-manager kubelet fake-cri kubelet-bootstrap kubelet-agent kubeadm kubeadm-discovery kubelet-fleet)

# fresh TOOL: the binary exists and is newer than every input.
fresh() {
  [[ -x "$bin/$1" ]] || return 1
  local src
  for src in "$here/go.mod" "$here/go.sum" "$here"/cmd/*/main.go; do
    [[ "$bin/$1" -nt "$src" ]] || return 1
  done
}

up_to_date() {
  local t
  for t in "${tools[@]}"; do
    fresh "$t" || return 1
  done
}

if up_to_date; then
  echo "controlplane: $version binaries up to date in $bin"
  exit 0
fi

mkdir -p "$bin"
cd "$here"
echo "controlplane: building etcd $etcd_version, kube-apiserver, kube-controller-manager and kubelet $version into $bin"
echo "controlplane: the first build takes about 6 minutes on 2 cores (Go build cache empty); later runs take seconds"

ldflags="-s -w"
for kv in "gitVersion=$version" "gitMajor=1" "gitMinor=37" "gitTreeState=clean" "buildDate=1970-01-01T00:00:00Z"; do
  ldflags+=" -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
done

start=$SECONDS
# build TOOL PKG LDFLAGS: build TOOL unless it is fresh.
build() {
  if fresh "$1"; then
    return
  fi
  go build -trimpath -ldflags "$3" -o "$bin/$1" "$2"
  echo "controlplane: $1 built ($((SECONDS - start))s)"
}
# The version ldflags matter: without them kube-apiserver and the kubelet's
# Node report v0.0.0-master, which kubectl cannot parse.
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$ldflags"
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$ldflags"
build kubelet k8s.io/kubernetes/cmd/kubelet "$ldflags"
build etcd go.etcd.io/etcd/server/v3 "-s -w"
build fake-cri ./cmd/fake-cri "-s -w"
build kubelet-bootstrap ./cmd/kubelet-bootstrap "$ldflags"
build kubelet-agent ./cmd/kubelet-agent "$ldflags"
build kubeadm k8s.io/kubernetes/cmd/kubeadm "$ldflags"
build kubeadm-discovery ./cmd/kubeadm-discovery "$ldflags"
build kubelet-fleet ./cmd/kubelet-fleet "$ldflags"
echo "controlplane: done in $((SECONDS - start))s: $bin"
