#!/usr/bin/env bash
# bench/gpu/fetch-debs.sh: downloads, on this Debian 12 machine, the Debian packages that
# bench/gpu/run.sh unpacks on a GPU machine with no network (QUARTET_TRAINER_ONLY needs abseil,
# protobuf and protoc, spdlog and fmt, nlohmann-json, yaml-cpp, OpenSSL and zlib; LibTorch comes from
# that machine's PyTorch). The folder is carried with the working tree, so it is kept out of git.
#
#   bench/gpu/fetch-debs.sh [DIR]          # DIR defaults to .gpu-debs at the repository root
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly ROOT
readonly DIR="${1:-${ROOT}/.gpu-debs}"
# The carry limit is 64 MiB for the whole working tree; the packages must leave room for it.
readonly MAX_MIB=40

# Development packages and the runtime libraries their .so links and protoc point at.
readonly PACKAGES=(
  libabsl-dev libabsl20220623
  libprotobuf-dev libprotobuf32 libprotobuf-lite32 protobuf-compiler libprotoc32
  libspdlog-dev libspdlog1.10 libfmt-dev libfmt9
  nlohmann-json3-dev
  libyaml-cpp-dev libyaml-cpp0.7
  libssl-dev libssl3
  zlib1g-dev zlib1g
)

main() {
  mkdir -p "${DIR}"
  rm -f "${DIR}"/*.deb
  (cd "${DIR}" && apt-get download "${PACKAGES[@]}")
  exclude_from_git
  local mib
  mib=$(du -sm "${DIR}" | cut -f1)
  echo "fetch-debs: ${#PACKAGES[@]} packages, ${mib} MiB in ${DIR}"
  if ((mib > MAX_MIB)); then
    echo "fetch-debs: more than ${MAX_MIB} MiB; the carry would not fit" >&2
    exit 1
  fi
}

# Keeps the folder out of commits (info/exclude of the repository, shared by its worktrees).
exclude_from_git() {
  local common rel
  common=$(git -C "${ROOT}" rev-parse --git-common-dir 2>/dev/null) || return 0
  [[ "${common}" = /* ]] || common="${ROOT}/${common}"
  rel=$(realpath --relative-to="${ROOT}" "${DIR}")
  [[ "${rel}" = ..* ]] && return 0
  mkdir -p "${common}/info"
  grep -qxF "/${rel}/" "${common}/info/exclude" 2>/dev/null ||
    echo "/${rel}/" >>"${common}/info/exclude"
}

main "$@"
