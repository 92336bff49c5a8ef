# codebench: two commands on a fresh Debian 12 machine (as root):
#   make demo   install what is missing, build, start RabbitMQ and the worker,
#               run the seed's hello-world job and print its three statuses
#   make test   every test, unit and integration (real RabbitMQ, real VMs)
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
DATA_DIR ?= $(or $(CODEBENCH_DATA_DIR),/var/lib/codebench)
export CODEBENCH_DATA_DIR := $(DATA_DIR)
RABBITMQ_USER ?= admin
RABBITMQ_PASSWORD ?= admin
export RABBITMQ_USER RABBITMQ_PASSWORD

.PHONY: all build deps image image-all rabbitmq demo test unit lint host-check fresh-check soak stop clean cluster-test bench-languages

all: build

build:
	$(GO) build -o bin/codebench ./cmd/codebench
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o bin/codebench-agent ./cmd/codebench-agent

deps:
	scripts/install-deps.sh

# The guest image is cached by content hash under $(DATA_DIR)/images/: the
# language profile CODEBENCH_LANGUAGES names (default: 8 languages).
image: build
	bin/codebench image build

# The full profile, every language of the table (make test runs each
# language in it).
image-all: build
	bin/codebench image build --languages all

# The demo's broker; it declares codebench's topology once up (needs the build).
rabbitmq: build
	scripts/rabbitmq.sh start

demo: deps image rabbitmq
	scripts/demo.sh

# Every test, against a RabbitMQ node of its own started from an empty state
# (scripts/test.sh); integration tests must not skip here.
test: deps image image-all lint
	scripts/test.sh

# The shell scripts, linted (shellcheck comes with make deps), and no build
# output tracked (scripts/tracked-files.sh).
lint:
	shellcheck scripts/*.sh .ci/run
	scripts/tracked-files.sh

# doctor --strict on every driver this host can run: fails when a wall is
# missing, or runsc/QEMU is older than the host's apt sources serve.
host-check: deps image
	scripts/host-check.sh

# Rehearse a new machine: remove runsc, QEMU and the backports source, run
# the install as a new machine would, then host-check. Changes the host.
fresh-check:
	scripts/fresh-check.sh

# The cluster test at full size: 3 RabbitMQ nodes, 100 jobs, one node
# killed (make test runs it with 20).
cluster-test: deps image
	CODEBENCH_CLUSTER_JOBS=100 scripts/test.sh -v -run 'TestClusterLosesANode' ./cmd/codebench/

# Unit tests only: no VM, no broker (integration tests skip with a reason).
unit:
	CODEBENCH_UNIT_ONLY=1 CODEBENCH_DATA_DIR=/nonexistent RABBITMQ_URL=amqp://127.0.0.1:1/ $(GO) test -count=1 ./...

# Not in CI: 2,000 jobs through one worker; fds, RSS, goroutines and run-dir
# entries must not grow (SOAK_JOBS=N for another count).
soak: deps image rabbitmq
	scripts/soak.sh

# Not in CI: every language's hello world in sandboxes beside natively on
# this host (installs the toolchains on the host: the benchmark's set-up,
# not the product's), and each profile's image size and build time.
bench-languages: deps image-all
	scripts/bench-languages.sh

stop:
	-@if [ -f /run/codebench-sandboxes.pid ]; then kill -TERM $$(cat /run/codebench-sandboxes.pid) 2>/dev/null; \
		for i in $$(seq 300); do kill -0 $$(cat /run/codebench-sandboxes.pid) 2>/dev/null || break; sleep 0.2; done; \
		rm -f /run/codebench-sandboxes.pid; echo "sandbox host stopped (running sandboxes paused)"; fi
	-@if [ -f /run/codebench-api.pid ]; then kill -TERM $$(cat /run/codebench-api.pid) 2>/dev/null; \
		for i in $$(seq 100); do kill -0 $$(cat /run/codebench-api.pid) 2>/dev/null || break; sleep 0.2; done; \
		rm -f /run/codebench-api.pid; echo "api stopped"; fi
	-@if [ -f /run/codebench-worker.pid ]; then kill -TERM $$(cat /run/codebench-worker.pid) 2>/dev/null; \
		for i in $$(seq 100); do kill -0 $$(cat /run/codebench-worker.pid) 2>/dev/null || break; sleep 0.2; done; \
		rm -f /run/codebench-worker.pid; echo "worker stopped"; fi
	scripts/rabbitmq.sh stop

clean:
	rm -rf bin
