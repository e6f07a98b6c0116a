# tlsboot — see README.md.
SHELL := /bin/bash
GO ?= go
BIN := bin
CONTROLPLANE_VERSION := v1.37.2
export TLSBOOT_CACHE ?= $(CURDIR)/.cache
export TLSBOOT_CONTROLPLANE_BIN ?= $(TLSBOOT_CACHE)/controlplane/$(CONTROLPLANE_VERSION)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -s -w -X github.com/tlsboot/tlsboot/internal/version.Version=$(VERSION)
FUZZTIME ?= 30s

.PHONY: all build controlplane test vet unit e2e demo bench fuzz crashtest clean

all: build

## build: the tlsboot binary in bin/ (static: no cgo, so no libc mapped at run time)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/tlsboot ./cmd/tlsboot

## controlplane: etcd, kube-apiserver, kube-controller-manager, the kubelet and
## fake-cri (and the upstream peers: kubelet-bootstrap, kubelet-agent, kubeadm and
## kubeadm-discovery, ...) built from
## hack/controlplane into $(TLSBOOT_CONTROLPLANE_BIN)
controlplane:
	hack/controlplane/build.sh

## test: the whole suite — vet and race-enabled tests, end-to-end against the real control plane
test: controlplane vet
	$(GO) test -race -count=1 -timeout 60m ./...

vet:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

## demo: setup, token create --node-name, join and tlsboot approver against a local control plane; show the result, stop
demo: controlplane build
	$(GO) run ./hack/demo

## bench: every benchmark, each rewriting its own section of BENCHMARKS.md
bench: controlplane build
	$(GO) run ./bench/bootstrap -n 41 -out BENCHMARKS.md
	$(GO) run ./bench/join -n 41 -out BENCHMARKS.md
	$(GO) run ./bench/agent -bin $(BIN)/tlsboot -idle 150s -runs 3 -out BENCHMARKS.md
	$(GO) run ./bench/approver -n 2000 -runs 3 -out BENCHMARKS.md
	$(GO) run ./bench/fleet -n 1000 -runs 3 -out BENCHMARKS.md
	$(GO) run ./bench/storm -live -out BENCHMARKS.md

## crashtest: SIGKILL tlsboot bootstrap and run at random instants $(CRASH_CYCLES) times
## each and fill their file systems (ENOSPC), checking every invariant after each cycle;
## writes the counts and the seed to BENCHMARKS.md (SEED=N replays a seed; the short
## form, 50 cycles, runs in `make test`)
CRASH_CYCLES ?= 500
crashtest: controlplane
	$(GO) run ./bench/crash -cycles $(CRASH_CYCLES) $(if $(SEED),-seed $(SEED)) -out BENCHMARKS.md

## fuzz: run each fuzz target for $(FUZZTIME)
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 10x $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf $(BIN)
