#!/usr/bin/env bash
# Installs, idempotently, what building and testing Sealgate needs beyond the
# Rust toolchain: Debian packages for RocksDB's build (libclang for bindgen, a
# C++ compiler), and a Python venv with the two libraries the independent
# export verifier (tools/verify_export.py) uses. Re-running only fills in what
# is missing. Prints the venv's python as SEALGATE_VERIFY_PYTHON=... at the end.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need=()
for pkg in libclang-dev g++ python3-venv; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

VENV="${SEALGATE_CACHE:-$HOME/.cache/sealgate}/venv-verify"
BLAKE3_V=1.0.11; PYNACL_V=1.6.2
if ! "$VENV/bin/python" -c "import importlib.metadata as m; assert (m.version('blake3'), m.version('PyNaCl')) == ('$BLAKE3_V', '$PYNACL_V')" 2>/dev/null; then
  echo "setup: creating $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "blake3==$BLAKE3_V" "PyNaCl==$PYNACL_V"
fi
echo "SEALGATE_VERIFY_PYTHON=$VENV/bin/python"
