# relctl — see README.md. `make demo` and `make test` are the two commands a newcomer needs.
GO      ?= go
BIN     := bin/relctl
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build test test-deps demo lint bench bench-fleet fuzz chaos clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/relctl

# Installs what the tests need (openssh-server, ...) when missing, then runs
# vet, the gofmt check and every test with the race detector.
test: test-deps lint
	$(GO) test -race -count=1 -timeout 20m ./...

test-deps:
	@scripts/install-test-deps.sh

lint:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Installs what the local cluster runs (sshd tools, monit, HAProxy) when missing.
demo: build test-deps
	@scripts/demo.sh $(BIN)

# Deploys to 50 testenv hosts and prints wall time and SSH handshakes per host;
# then relctl check's peak RSS for an artifact that unpacks to 1 GiB, on 2, 8
# and 50 hosts.
bench:
	$(GO) test -run '^$$' -bench Deploy50Hosts -benchtime 3x ./bench/
	$(GO) test -run '^$$' -bench ArtifactInspectionRSS -benchtime 1x ./bench/

HOSTS ?= 200
PULL ?= 1

# Starts HOSTS real OpenSSH sshd on 127.0.0.1 and runs the relctl binary's
# deploy 1.0.0, deploy 1.1.0 and rollback --to prev --parallel all against
# them; prints one row per command: phases, handshakes and sessions per host,
# peak RSS, CPU. With PULL=1 (default), also a 50 MiB release pushed over SSH
# against one pulled by the hosts over HTTP, on the first 50 hosts. 1000
# hosts take about 5 minutes on 2 cores.
bench-fleet: test-deps
	RELCTL_BENCH_PULL=$(PULL) RELCTL_BENCH_HOSTS=$(HOSTS) $(GO) test -run '^$$' -bench '^BenchmarkFleet$$' -benchtime 1x -timeout 30m ./bench/

# Runs every native Go fuzz target for FUZZTIME each (default 30s) and prints
# a table; their seed corpora (testdata/fuzz/) already run in `make test`.
fuzz:
	@GO=$(GO) scripts/fuzz.sh

# Runs the hostile-host matrix (fault x phase) against a local cluster and
# prints a table of outcomes; the same matrix runs in `make test`.
chaos: test-deps
	@GO=$(GO) scripts/chaos.sh

clean:
	rm -rf bin
