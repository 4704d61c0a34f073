# roost — see README.md. `make lab` and `make test` install what they need
# (scripts/deps.sh) and are the two set-up commands on a fresh Debian machine.

GO       ?= go
BIN      := bin
BINARIES := roost-agent roost-loader roost-sync roostctl
PKGS     := ./...
# Privileged tests run one package at a time: they start daemons and
# namespaces, and two cores do not take many at once.
TESTFLAGS ?= -count=1 -p 2 -timeout 20m
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build deps deps-test generate test unit lint lab lab-down lab-status bench images clean

all: build

deps:
	./scripts/deps.sh

# deps-test adds what the deployment test needs: Docker, docker-compose,
# debootstrap, and Salt from PyPI in a venv (/opt/roost-test/salt).
deps-test:
	./scripts/deps.sh test

# roost-lab (scripts/lab) builds, checks and tears down the lab from its
# description file (scripts/lab/lab.yaml); it is not part of the release.
build: deps
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ $(addprefix ./cmd/,$(BINARIES))
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/roost-lab ./scripts/lab

# generate rebuilds the eBPF objects and their Go bindings (bpf/) with
# Debian's clang-19; bpf's TestGeneratedCurrent checks the committed ones.
generate: deps
	$(GO) generate ./bpf

# The public CiliumNetworkPolicies the differential test also runs over
# (internal/loader TestDifferentialCorpus), when they are beside the
# repository; set ROOST_CNP_CORPUS=DIR to use another directory.
ROOST_CNP_CORPUS ?= $(abspath $(wildcard ../shared/cnp-corpus))
export ROOST_CNP_CORPUS

# test runs every test. As root it includes the privileged ones (real BIRD,
# FRR and kernel in network namespaces); CI sets ROOST_REQUIRE_PRIVILEGED=1
# so that none of them can skip.
test: deps-test lint build
	$(GO) test $(TESTFLAGS) $(PKGS)

# unit runs the tests that need neither root nor daemons quickly.
unit:
	ROOST_REQUIRE_PRIVILEGED= $(GO) test -count=1 -short $(PKGS)

lint:
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$bad" ]; then echo "gofmt needed:"; echo "$$bad"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)

lab: build
	$(BIN)/roost-lab up

lab-down: build
	$(BIN)/roost-lab down

lab-status: build
	$(BIN)/roost-lab status

bench: build
	./scripts/bench.sh

# images builds roost/bird:TAG and roost/roost:TAG (scripts/images.sh; TAG
# from ROOST_IMAGE_TAG, default the release in VERSION). Without a registry the base
# image is debootstrapped locally (scripts/base-image.sh). Needs a running
# Docker engine (DOCKER_HOST).
images: build
	./scripts/images.sh build

clean:
	rm -rf $(BIN)
