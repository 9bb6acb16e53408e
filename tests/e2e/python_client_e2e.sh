#!/usr/bin/env bash
# An outside client: stubs generated from proto/ with protoc and grpc_python_plugin, run by
# Debian's python3 (grpcio) against a real coordinator and PostgreSQL (tests/python/axes_client.py).
# Skipped (77) when the generator or grpcio is missing.
#   python_client_e2e.sh COORDINATOR QUARTETCTL
COORDINATOR=$1 WORKER=/bin/true CTL=$2
source "$(dirname "$0")/lib.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
command -v protoc >/dev/null && [[ -x /usr/bin/grpc_python_plugin ]] &&
  /usr/bin/python3 -c 'import grpc' 2>/dev/null || { echo "SKIP: protoc, grpc_python_plugin or grpcio missing"; exit 77; }
e2e_init pyclient
mkdir -p "$E2E_DIR/stubs"
protoc -I"$root/proto" --python_out="$E2E_DIR/stubs" --grpc_out="$E2E_DIR/stubs" \
  --plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin "$root"/proto/quartet/v1/*.proto
touch "$E2E_DIR/stubs/quartet/__init__.py" "$E2E_DIR/stubs/quartet/v1/__init__.py"
start_coordinator --lease=30s
/usr/bin/python3 "$root/tests/python/axes_client.py" "$E2E_DIR/stubs" "$COORD_ADDR" ||
  e2e_fail "the Python client failed"
