#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need (setup.sh,
# peers.sh), then checks formatting and lints, and runs every unit, property,
# crash and end-to-end test. The target dir lives outside the clone so repeat
# runs, and fresh clones, build incrementally.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(tools/setup.sh | grep '^SEALGATE_VERIFY_PYTHON=')"
export SEALGATE_VERIFY_PYTHON
# The real peers (MCP servers, conformance suite, MCP client SDK, OTLP
# receiver) the end-to-end tests run against.
eval "$(tools/peers.sh | grep -E '^[A-Z_]+=')"
export SEALGATE_EVERYTHING="$EVERYTHING" SEALGATE_FILESYSTEM="$FILESYSTEM" SEALGATE_MEMORY="$MEMORY" \
  SEALGATE_CONFORMANCE="$CONFORMANCE" SEALGATE_MCP_PYTHON="$MCP_PYTHON" SEALGATE_ROTEL_AGENT="$ROTEL_AGENT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sealgate/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets --all-features -- -D warnings
cargo test --locked --workspace --all-features
