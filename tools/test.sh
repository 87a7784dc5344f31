#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need, then
# checks formatting and lints, and runs every unit, property, crash and
# end-to-end test. The target dir lives outside the clone so repeat runs,
# and fresh clones, build incrementally.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(tools/setup.sh | grep '^SEALGATE_VERIFY_PYTHON=')"
export SEALGATE_VERIFY_PYTHON
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sealgate/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets --all-features -- -D warnings
cargo test --locked --workspace --all-features
