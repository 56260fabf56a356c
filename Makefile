# IronClaw build / test entry points.  `make help` lists the targets.
#
# Everything here is meant to run on a Debian bookworm host (root in CI).
# Tools that tests need (chromium, chromedriver, tmux for the terminal client,
# postgresql and haproxy for the cluster, mmdebstrap, e2fsprogs for the
# workspace quota filesystems) are apt-installed
# on demand by `test-deps`.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# cargo parallelises itself; running apt-get/docker steps concurrently
# (make -j) would only fight over the dpkg lock.
.NOTPARALLEL:

CARGO            ?= cargo
CARGO_TEST_FLAGS ?=
RUN_ARGS         ?=
SANDBOX_IMAGE    ?= ironclaw-sandbox:latest
export SANDBOX_IMAGE

# The sandbox's exec agent is its own crate (not part of the server's
# package), with its own target dir; sandbox-image builds its static binary.
AGENT_CARGO := --manifest-path sandbox-agent/Cargo.toml --target-dir target/sandbox-agent

APT_GET := DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300
SUDO    := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: help sandbox-image sandbox-image-clean build-deps test-deps test test-postgres test-cluster run bench lint

help: ## Show this help
	@echo "IronClaw make targets:"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) \
	  | awk 'BEGIN {FS = ":.*## "} {printf "  %-20s %s\n", $$1, $$2}'
	@echo "Variables: CARGO_TEST_FLAGS='$(CARGO_TEST_FLAGS)' RUN_ARGS='$(RUN_ARGS)' SANDBOX_IMAGE=$(SANDBOX_IMAGE)"

sandbox-image: ## Build the sandbox image (and its exec agent) if missing or sandbox-images/ or sandbox-agent/ changed (no-op otherwise)
	@bash sandbox-images/build.sh

sandbox-image-clean: ## Remove the sandbox image and its bootstrapped base
	-docker image rm -f $(SANDBOX_IMAGE) ironclaw-base:bookworm

build-deps: ## apt-install libpq-dev (the PostgreSQL client library the server links) when missing
	@if [ -e /usr/include/postgresql/libpq-fe.h ] && command -v pg_config >/dev/null; then exit 0; fi; \
	echo "build-deps: installing libpq-dev"; \
	$(SUDO) $(APT_GET) update -qq; \
	$(SUDO) $(APT_GET) install -y -qq --no-install-recommends libpq-dev

test-deps: build-deps ## apt-install chromium, chromedriver, tmux, postgresql, haproxy, mmdebstrap and e2fsprogs when missing
	@chrome=""; boot=""; \
	command -v chromium     >/dev/null || chrome="$$chrome chromium fonts-liberation"; \
	command -v chromedriver >/dev/null || chrome="$$chrome chromium-driver"; \
	command -v tmux         >/dev/null || chrome="$$chrome tmux"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || chrome="$$chrome postgresql"; \
	PATH="$$PATH:/usr/sbin:/sbin" command -v haproxy >/dev/null || chrome="$$chrome haproxy"; \
	command -v mmdebstrap   >/dev/null || boot="mmdebstrap"; \
	PATH="$$PATH:/usr/sbin:/sbin" command -v mkfs.ext4 >/dev/null || boot="$$boot e2fsprogs"; \
	if [ -z "$$chrome$$boot" ]; then \
	  echo "test-deps: chromium, chromedriver, tmux, postgresql, haproxy, mmdebstrap and e2fsprogs are present"; exit 0; \
	fi; \
	echo "test-deps: installing$$chrome $$boot"; \
	$(SUDO) $(APT_GET) update -qq; \
	if [ -n "$$chrome" ]; then $(SUDO) $(APT_GET) install -y -qq --no-install-recommends $$chrome; fi; \
	if [ -n "$$boot" ]; then $(SUDO) $(APT_GET) install -y -qq $$boot; fi

test: test-deps sandbox-image ## Run the full test suite: the exec agent's tests, then cargo test --all-targets (tune with CARGO_TEST_FLAGS)
	@if command -v node >/dev/null; then node --test web/test/; \
	 else echo "node not installed: the Markdown renderer's node tests are left out (the Chromium test still renders Markdown)"; fi
	$(CARGO) test $(AGENT_CARGO)
	$(CARGO) test --all-targets $(CARGO_TEST_FLAGS)

# The database-touching tests (the integration suite, the database and agent
# unit tests, the two-node tests) again, on a throwaway PostgreSQL server
# started as its own user on 127.0.0.1 and stopped at the end
# (tests/postgres.sh).
test-postgres: test-deps sandbox-image ## Run the database-touching tests on PostgreSQL
	@dir="$$(bash tests/postgres.sh start)"; \
	trap 'bash tests/postgres.sh stop "$$dir"' EXIT; \
	echo "test-postgres: PostgreSQL on $$(sed -E 's#//([^:]*):[^@]*@#//\1:***@#' "$$dir/url")"; \
	export IRONCLAW_TEST_POSTGRES="$$(cat "$$dir/url")"; \
	$(CARGO) test --lib $(CARGO_TEST_FLAGS) -- db:: agent:: && \
	$(CARGO) test --test it $(CARGO_TEST_FLAGS) && \
	$(CARGO) test --test cluster $(CARGO_TEST_FLAGS)

test-cluster: test-deps sandbox-image ## The forty-people cluster test: two nodes behind HAProxy, one SIGKILLed (its own PostgreSQL)
	$(CARGO) test --test cluster $(CARGO_TEST_FLAGS) -- --ignored forty_people

run: build-deps sandbox-image ## Start the server (cargo run --release -- serve)
	$(CARGO) run --release -- serve $(RUN_ARGS)

bench: build-deps sandbox-image ## Run the benchmark test (tests/bench.rs), single-threaded
	$(CARGO) test --release --test bench -- --ignored --nocapture --test-threads=1

lint: build-deps ## rustfmt check + clippy with warnings as errors (server and exec agent)
	$(CARGO) fmt --all -- --check && $(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) fmt --manifest-path sandbox-agent/Cargo.toml -- --check && $(CARGO) clippy $(AGENT_CARGO) --all-targets -- -D warnings
