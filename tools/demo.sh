#!/usr/bin/env bash
# Sets up and runs Sealgate's ledger on embedded defaults: builds the binary,
# creates ./sealgate-data with a generated signing key (first run only),
# appends the example events of an audited MCP tool call, then shows the log,
# verifies it and prints the head an auditor would pin.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup.sh >/dev/null
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sealgate/target}"
cargo build --locked --bin sealgate
sealgate="$CARGO_TARGET_DIR/debug/sealgate"

data="${SEALGATE_DATA_DIR:-./sealgate-data}"
if [ ! -e "$data/ledger/CURRENT" ]; then
  "$sealgate" --data-dir "$data" init
fi
echo "== append docs/examples/events.jsonl (SEQ HASH per durable event)"
"$sealgate" --data-dir "$data" append < docs/examples/events.jsonl
echo "== log"
"$sealgate" --data-dir "$data" log
echo "== verify"
"$sealgate" --data-dir "$data" verify
echo "== head (write this down to pin the log: sealgate verify --head SEQ:HASH)"
"$sealgate" --data-dir "$data" head
