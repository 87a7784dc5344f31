#!/usr/bin/env bash
# Sets up and runs Sealgate on embedded defaults: builds the binary, installs
# the official MCP `server-everything` and the Python MCP SDK (tools/peers.sh),
# starts the gateway in front of server-everything with a ledger in
# ./sealgate-data (created with a generated signing key on first run), the
# server registered and approved, a policy (docs/examples/policy.yaml) and a
# grant, all as events; makes an MCP tool call through it with a real MCP
# client, then shows the events in the ledger, the registry replayed from it,
# verifies the whole log and prints the head an auditor would pin.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup.sh >/dev/null
# An assignment keeps a failed install's status (an argument to eval would not).
peers_out=$(tools/peers.sh)
eval "$(printf '%s\n' "$peers_out" | grep -E '^[A-Z_]+=')"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sealgate/target}"
cargo build --locked --bin sealgate
sealgate="$CARGO_TARGET_DIR/debug/sealgate"

data="${SEALGATE_DATA_DIR:-./sealgate-data}"
mkdir -p "$data"
data=$(cd "$data" && pwd)
listen="${SEALGATE_DEMO_LISTEN:-127.0.0.1:8080}"
config="$data/demo.toml"
cat > "$config" <<EOF
# Written by tools/demo.sh; see docs/CONFIG.md for every key.
data_dir = "$data"

[gateway]
listen = "$listen"

[auth]
tokens_file = "$data/tokens.toml"

[governance]
policy_file = "$PWD/docs/examples/policy.yaml"

[servers.everything]
transport = "stdio"
command = "node"
args = ["$EVERYTHING", "stdio"]
env = ["demo"]
owner = "platform-team"
approve = true        # approved (and its tools pinned) at start, as sealgate:config

[[grants]]
team = "demo"
server = "everything"
EOF

if [ ! -s "$data/demo-token" ]; then
  echo "== a bearer token for principal demo-user (the tokens file keeps only its SHA-256)"
  (umask 077; "$sealgate" --config "$config" token create --principal demo-user --team demo \
    --file "$data/tokens.toml" > "$data/demo-token")
fi
token=$(cat "$data/demo-token")

echo "== sealgate serve ($config)"
"$sealgate" --config "$config" serve > "$data/serve.out" 2> "$data/serve.log" &
gateway=$!
trap 'kill $gateway 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q '^listening on' "$data/serve.out" 2>/dev/null && break
  kill -0 $gateway 2>/dev/null || { cat "$data/serve.log" >&2; exit 1; }
  sleep 0.1
done
url="$(sed -n 's/^listening on //p' "$data/serve.out")/mcp/everything"
echo "gateway at $url"

echo "== an MCP tool call through the gateway (Python MCP SDK client)"
"$MCP_PYTHON" tools/mcp_scenario.py --call echo --args '{"message": "hello through sealgate"}' \
  "$url" --header "Authorization: Bearer $token" | "$MCP_PYTHON" -c '
import json, sys
r = json.load(sys.stdin)
print("result:", " ".join(c.get("text", "") for c in r.get("result", {}).get("content", [])) or r)
sys.exit(0 if r.get("ok") else 1)'
kill $gateway
wait $gateway 2>/dev/null || true
trap - EXIT

echo "== the ledger: governance declared by the config, then the session and its call"
"$sealgate" --config "$config" log | tail -n 12
echo "== the registry as the ledger tells it (sealgate state registry)"
"$sealgate" --config "$config" state registry | head -n 20
echo "== who called what, as an auditor asks it (sealgate report calls-by-principal --verify)"
"$sealgate" --config "$config" report calls-by-principal --verify
echo "== verify"
"$sealgate" --config "$config" verify
echo "== head (write this down to pin the log: sealgate verify --head SEQ:HASH)"
"$sealgate" --config "$config" head
