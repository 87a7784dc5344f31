#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need (setup.sh,
# peers.sh), then checks formatting and lints, and runs every test: the fast
# tier (unit, property, in-process, CLI, crash) and the end-to-end tier
# (real MCP peers, a tmpfs), which a plain `cargo test` lists as ignored.
# A missing prerequisite fails the run; nothing is skipped. The target dir
# lives outside the clone so repeat runs, and fresh clones, build
# incrementally.
set -euo pipefail
cd "$(dirname "$0")/.."

# An assignment keeps a failing command's status (an argument to eval
# would not): a failed install stops the run here.
setup_out=$(tools/setup.sh)
peers_out=$(tools/peers.sh)
value() { printf '%s\n' "$1" | sed -n "s/^$2=//p" | tail -n 1 | sed "s/^'\\(.*\\)'\$/\\1/"; }
export SEALGATE_VERIFY_PYTHON="$(value "$setup_out" SEALGATE_VERIFY_PYTHON)"
# The real peers the end-to-end tests run against.
export SEALGATE_EVERYTHING="$(value "$peers_out" EVERYTHING)"
export SEALGATE_FILESYSTEM="$(value "$peers_out" FILESYSTEM)"
export SEALGATE_CONFORMANCE="$(value "$peers_out" CONFORMANCE)"
export SEALGATE_MCP_PYTHON="$(value "$peers_out" MCP_PYTHON)"
export SEALGATE_DUCKDB_PYTHON="$(value "$peers_out" DUCKDB_PYTHON)"
export SEALGATE_ROTEL_AGENT="$(value "$peers_out" ROTEL_AGENT)"
export SEALGATE_OCSF_PYTHON="$(value "$peers_out" OCSF_PYTHON)"
export SEALGATE_OIDC_PROVIDER="$(value "$peers_out" OIDC_PROVIDER)"
for v in SEALGATE_VERIFY_PYTHON SEALGATE_EVERYTHING SEALGATE_FILESYSTEM SEALGATE_CONFORMANCE SEALGATE_MCP_PYTHON SEALGATE_DUCKDB_PYTHON \
         SEALGATE_ROTEL_AGENT SEALGATE_OCSF_PYTHON SEALGATE_OIDC_PROVIDER; do
  if [ -z "${!v}" ]; then
    echo "test.sh: $v is empty: tools/setup.sh or tools/peers.sh did not say where it installed it" >&2
    exit 1
  fi
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sealgate/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

started=$(date +%s)
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets --all-features -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked --workspace --all-features --no-fail-fast -- --include-ignored 2>&1 | tee "$log" || status=$?
# What ran, in all test binaries.
awk '/^test result:/ {
       for (i = 1; i <= NF; i++) {
         if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) g += $i
       }
     }
     END { printf "test.sh: %d passed, %d failed, %d ignored\n", p, f, g; if (g > 0) exit 1 }' "$log" || {
  echo "test.sh: a test was ignored; every test must run here" >&2
  status=1
}
echo "test.sh: $(( $(date +%s) - started )) s for lints and tests"
exit "$status"
