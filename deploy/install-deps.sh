#!/usr/bin/env bash
# Installs every Debian package Quartet needs to build, test and run. Idempotent: packages already
# present are skipped, so a second run costs one dpkg query. Run as root (or with sudo).
#
#   deploy/install-deps.sh            # build + test + runtime dependencies
#   QUARTET_NO_WORKER=1 deploy/install-deps.sh   # coordinator-only host: no LibTorch
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libgrpc++-dev libgrpc-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
  libpqxx-dev libpq-dev postgresql postgresql-contrib
  libabsl-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libyaml-cpp-dev libcli11-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  zlib1g-dev procps
  # The dashboard and /metrics (coordinator, worker); Chromium runs the dashboard's e2e test.
  libcpp-httplib-dev prometheus-cpp-dev chromium curl
)
if [[ "${QUARTET_NO_WORKER:-0}" != "1" ]]; then
  # libopenblas0-openmp: Debian's LibTorch calls BLAS through the libblas.so.3 alternative, which
  # is the slow reference BLAS unless an optimised one is installed (15x on Linear-heavy families).
  packages+=(libtorch-dev libopenblas0-openmp dataset-fashion-mnist python3-torch
             python3-torchvision python3-grpcio)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=sudo
  else
    echo "install-deps: missing packages (${missing[*]}) and not root; rerun as root" >&2
    exit 1
  fi
else
  SUDO=
fi

echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# The package lists on a fresh machine may be stale or empty; refresh once, retry once on a
# transient mirror error.
$SUDO apt-get update -qq || { sleep 5; $SUDO apt-get update -qq; }
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
  { sleep 5; $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; }
echo "install-deps: done"
