# podipc Makefile. Every tool is built from its Go module at a pinned version
# and cached under $(CACHE), so a fresh machine needs only Go and the module proxy.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

CACHE ?= $(HOME)/.cache/podipc
BIN := $(CACHE)/bin
export GOCACHE ?= $(CACHE)/go-build
export GOFLAGS ?= -mod=readonly

GO ?= go
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(BIN)/staticcheck-$(STATICCHECK_VERSION)

# The test control plane (kube-apiserver and etcd) that envtest runs, built from
# Go module sources by hack/envtest/build.sh at the versions its wrapper modules pin.
ENVTEST_K8S_VERSION := $(shell awk '$$1 == "k8s.io/kubernetes" { print $$2 }' hack/envtest/kube-apiserver/go.mod)
export KUBEBUILDER_ASSETS ?= $(CACHE)/envtest/$(ENVTEST_K8S_VERSION)

# Packages under test. Multi-process tests re-exec the test binary, so they run
# as part of the ordinary `go test`.
PKGS := ./...

.PHONY: build
build: ## Build every command into bin/.
	$(GO) build -o bin/ ./cmd/...

.PHONY: test
test: lint verify unit c-test python-test ## Lint, check generated files and run the whole default test suite (what CI runs).

.PHONY: unit
unit: export PODIPC_REQUIRE_ENVTEST := 1
unit: envtest-bins ## Unit, property, multi-process and envtest tests with the race detector.
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	cd bench && $(GO) test -race -count=1 -timeout 10m ./...

.PHONY: c-test
c-test: ## The C client (clients/c): unit tests under ASan+UBSan and TSan, and its header and ring fuzzer.
	$(MAKE) -C clients/c test

# Debian's interpreter: python3-pytest, python3-numpy and python3-mypy are its packages.
PYTHON ?= $(shell [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || echo python3)

.PHONY: python-test
python-test: ## The Python client (clients/python): mypy --strict, then pytest against the C library and a real broker.
	$(MAKE) -s -C clients/c build/libpodipc.so
	$(GO) build -o bin/podipc-sidecar ./cmd/sidecar
	cd clients/python && $(PYTHON) -m mypy --strict podipc tests examples
	cd clients/python && PODIPC_LIBRARY=$(CURDIR)/clients/c/build/libpodipc.so PODIPC_SIDECAR=$(CURDIR)/bin/podipc-sidecar \
		$(PYTHON) -m pytest -q tests

.PHONY: envtest-bins
envtest-bins: ## Build kube-apiserver and etcd for envtest from Go module sources (once; cached).
	CACHE=$(CACHE) bash hack/envtest/build.sh

.PHONY: lint
lint: $(STATICCHECK) ## gofmt, go vet and staticcheck.
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)
	$(GO) vet -tags e2e ./test/e2e
	$(STATICCHECK) -tags e2e ./test/e2e
	cd bench && $(GO) vet ./... && $(STATICCHECK) ./...

$(STATICCHECK):
	@mkdir -p $(BIN)
	GOBIN=$(BIN)/.tmp-staticcheck GOFLAGS= $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(BIN)/.tmp-staticcheck/staticcheck $@ && rmdir $(BIN)/.tmp-staticcheck

CONTROLLER_TOOLS_VERSION := v0.23.0
CONTROLLER_GEN := $(BIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate the deepcopy code of the API types (api/...).
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD manifests in config/crd from the API types.
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:dir=config/crd

.PHONY: verify
verify: $(CONTROLLER_GEN) ## Fail on stale generated files; check the CRD with the API server's own validation code.
	CONTROLLER_GEN=$(CONTROLLER_GEN) bash hack/tools/verify-generated.sh
	cd hack/tools/crdcheck && $(GO) test -count=1 ./...

$(CONTROLLER_GEN):
	@mkdir -p $(BIN)
	GOBIN=$(BIN)/.tmp-controller-gen GOFLAGS= $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(BIN)/.tmp-controller-gen/controller-gen $@ && rmdir $(BIN)/.tmp-controller-gen

.PHONY: fmt
fmt: ## Format the code.
	gofmt -w $$(git ls-files '*.go')

.PHONY: demo
demo: ## Run the sidecar with example producer and consumer apps on a local tmpfs for a few seconds (no cluster).
	GO=$(GO) bash hack/demo.sh

.PHONY: demo-shm
demo-shm: ## Two processes on one pkg/shm channel, no sidecar: live throughput, then round-trip latency (~3 s).
	$(GO) build -o bin/shmdemo ./examples/shmdemo
	bin/shmdemo -duration 3s

# Extra flags for the benchmark, e.g. BENCH_FLAGS="-quick" or "-json".
BENCH_FLAGS ?=

.PHONY: bench
bench: ## Run the cross-process IPC benchmark, every job 3 times (about 25-30 minutes; BENCH_FLAGS, docs/benchmarks.md).
	@# The NATS baseline needs Debian's nats-server: installed here when running
	@# as root, otherwise the report marks NATS n/a with the reason.
	@if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null 2>&1 || \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server; } >&2 || \
	    echo "could not install nats-server: NATS will be n/a" >&2; \
	  else echo "nats-server not installed (apt-get install nats-server): NATS will be n/a" >&2; fi; \
	fi
	cd bench && $(GO) build -o ../bin/podipc-bench ./cmd/podipc-bench
	bin/podipc-bench $(BENCH_FLAGS)

# ---- Helm chart, container images and the end-to-end test on kind ----------

HELM_VERSION := v3.22.0
HELM := $(BIN)/helm-$(HELM_VERSION)
CHART := charts/podipc

$(HELM):
	@mkdir -p $(BIN)
	GOBIN=$(BIN)/.tmp-helm GOFLAGS= $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(BIN)/.tmp-helm/helm $@ && rmdir $(BIN)/.tmp-helm

.PHONY: helm
helm: $(HELM) ## Build the helm CLI from its Go module (once; cached).

.PHONY: chart-crds
chart-crds: ## Copy config/crd into the chart (charts/podipc/files/crds), its only source.
	rm -f $(CHART)/files/crds/*.yaml
	cp config/crd/*.yaml $(CHART)/files/crds/

.PHONY: verify-chart-crds
verify-chart-crds: ## Fail when the chart's copy of the CRDs differs from config/crd.
	@diff -r config/crd $(CHART)/files/crds || { echo "$(CHART)/files/crds is stale: run 'make chart-crds'" >&2; exit 1; }

.PHONY: helm-lint
helm-lint: $(HELM) verify-chart-crds ## helm lint --strict the chart with every value set in its ci/.
	for values in $(CHART)/ci/*-values.yaml; do $(HELM) lint --strict --kube-version v1.34.4 $(CHART) --values "$$values"; done

.PHONY: chart-test
chart-test: export PODIPC_REQUIRE_ENVTEST := 1
chart-test: $(HELM) envtest-bins ## Lint and render the chart with every value set; server-side dry run against envtest.
	HELM=$(HELM) $(GO) test -count=1 ./charts/...

# Static binaries for the FROM-scratch images, and the images (local Docker engine).
IMAGE_TAG ?= dev
IMAGE_PREFIX ?=
IMAGE_BUILD := bin/images
GOARCH_IMAGE ?= $(shell $(GO) env GOARCH)
# main.version stamps the injector's version (recorded in every injected pod's podipc.io/status); the
# other commands have no such variable, and -X ignores it for them.
IMAGE_GO_BUILD := CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH_IMAGE) $(GO) build -trimpath -ldflags "-s -w -X main.version=$(IMAGE_TAG)"

.PHONY: image-binaries
image-binaries: ## Build the static binaries the images contain into bin/images/.
	rm -rf $(IMAGE_BUILD) && mkdir -p $(IMAGE_BUILD)/sidecar $(IMAGE_BUILD)/injector $(IMAGE_BUILD)/examples
	$(IMAGE_GO_BUILD) -o $(IMAGE_BUILD)/sidecar/podipc-sidecar ./cmd/sidecar
	$(IMAGE_GO_BUILD) -o $(IMAGE_BUILD)/injector/podipc-injector ./cmd/injector
	$(IMAGE_GO_BUILD) -o $(IMAGE_BUILD)/examples/ $(EXAMPLE_PKGS)
	$(MAKE) -s -C examples/c BUILD=$(CURDIR)/$(IMAGE_BUILD)/examples
	chmod 0555 $(IMAGE_BUILD)/*/*

# The example programs the end-to-end test runs as application containers
# (and the C examples of examples/c, static too).
EXAMPLE_PKGS ?= ./examples/app/producer ./examples/app/consumer

.PHONY: images
images: image-binaries ## Build the podipc-sidecar, podipc-injector and podipc-examples images (IMAGE_TAG, default dev).
	docker build -f build/sidecar.Dockerfile -t $(IMAGE_PREFIX)podipc-sidecar:$(IMAGE_TAG) $(IMAGE_BUILD)/sidecar
	docker build -f build/injector.Dockerfile -t $(IMAGE_PREFIX)podipc-injector:$(IMAGE_TAG) $(IMAGE_BUILD)/injector
	docker build -f build/examples.Dockerfile -t $(IMAGE_PREFIX)podipc-examples:$(IMAGE_TAG) $(IMAGE_BUILD)/examples

.PHONY: e2e
e2e: $(HELM) ## End-to-end test on a kind cluster (docs/e2e.md): minutes with a cached node image.
	HELM=$(HELM) CACHE=$(CACHE) kind-test/run.sh

# `make unit` (and so `make test`) runs the chart's tests, which need the helm CLI;
# `make verify` holds the chart's copy of the CRDs to config/crd.
unit: $(HELM)
unit: export HELM := $(HELM)
verify: verify-chart-crds verify-tidy

.PHONY: verify-tidy
verify-tidy: ## Fail when a go.mod or go.sum (the product's, the benchmark's) is not what `go mod tidy` makes of it.
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy" >&2; exit 1; }
	@cd bench && $(GO) mod tidy -diff || { echo "bench/go.mod/go.sum are not tidy: run go mod tidy in bench/" >&2; exit 1; }

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'
