# Quick start (as root, on a fresh Debian/Ubuntu machine with a Rust toolchain):
#   make validate   # set the host up, then validate the bundled stack under every runtime
#   make test       # set the host up, then run the test suite
# HYDRA_REQUIRE=docker,podman,podman-rootless,podman-v2,podman-rootless-v2 turns a missing target
# into a failure (CI sets it).

CARGO ?= cargo

.PHONY: setup validate test doctor gc

setup:
	bash scripts/setup-host.sh

validate: setup
	$(CARGO) run --release --bin harness -- validate

# Setup builds the test binaries here, and uses their harness, instead of a release build.
test:
	HYDRA_SETUP_BUILD=tests bash scripts/setup-host.sh
	$(CARGO) test --workspace

doctor:
	$(CARGO) run --release --bin harness -- doctor

gc:
	$(CARGO) run --release --bin harness -- gc
