#!/usr/bin/env bash
# bench/gpu/run.sh: the GPU route in one go, on a machine with a CUDA PyTorch and no network.
#
# Builds quartet-train and the benches (zoo, train_throughput) against that PyTorch's LibTorch
# (QUARTET_TRAINER_ONLY; the Debian packages bench/gpu/fetch-debs.sh downloaded are unpacked into
# a prefix, never into /), then runs, each step under a timeout and the whole under 12 minutes:
#   protocol_*      the published protocol (50,016 CIFAR-10-shaped images at 256 px, 1 epoch,
#                   batch 32, the benchmark MoE4): Quartet's trainer against the same model in
#                   PyTorch eager (pre-batched, and the published PIL + DataLoader pipeline);
#   slots_scaling   1, 2, 4, 8 candidates trained at once in one process, as quartet-worker
#                   --slots runs them (bench/slots_scaling: a CUDA stream per slot);
#   zoo             every family's forward + backward on the device;
#   trainer         one short quartet-train run on the device.
# Writes results.json (every figure, the device, the versions) and RESULTS.md (a section for
# bench/RESULTS.md) to $OUT, else to --out. Without CUDA, or with --cpu, every step runs on the CPU
# at tiny sizes (the ctest gpu_route_cpu_fallback).
#
#   bench/gpu/run.sh [--out=DIR] [--cpu] [--build-dir=DIR | --build[=DIR]] [--jobs=N]
#                    [--debs=DIR] [--prefix=DIR] [--python=PYTHON] [--no-time-limits]
#
#   --build-dir=DIR  reuse the binaries of an existing build tree (no build step)
#   --build[=DIR]    build into DIR (default /tmp/quartet-gpu-build); the default
#   --debs=DIR       the .deb files to unpack (default .gpu-debs; none: use the system's packages)
#   --prefix=DIR     where to unpack them (default /tmp/qdeps)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly ROOT
readonly HELPER="${ROOT}/bench/gpu/gpu_route.py"
readonly TARGETS=(quartet-train zoo train_throughput slots_scaling)
# train_throughput --sides of the published protocol: Quartet's trainer, PyTorch eager fed
# pre-batched tensors, PyTorch eager fed the published way (PIL, torchvision, a DataLoader).
readonly PROTOCOL_SIDES=(quartet prebatched published)
readonly MOE4_FAMILIES=AirNet,ResNet,ShuffleNet,MobileNetV3
# The whole run, build included, stays under 12 minutes; each step's cap below is also cut to
# what is left of this, and a step with less than MIN_STEP_S left is skipped.
# --no-time-limits lifts them all (a build at -j1 on a small machine).
TOTAL_BUDGET_S=690
readonly MIN_STEP_S=15
BUILD_CAP_S=330
PROTOCOL_CAP_S=150 # per side
SLOTS_CAP_S=45 # per slot count
ZOO_CAP_S=100
TRAINER_CAP_S=40
readonly NO_LIMIT_S=86400

OUT_DIR="${OUT:-}"
FORCE_CPU=0
BUILD_DIR=/tmp/quartet-gpu-build
DO_BUILD=1
JOBS="$(nproc)"
DEBS="${ROOT}/.gpu-debs"
PREFIX=/tmp/qdeps
PYTHON=python3

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

parse_args() {
  local arg
  for arg in "$@"; do
    case "${arg}" in
      --out=*) OUT_DIR="${arg#*=}" ;;
      --cpu) FORCE_CPU=1 ;;
      --build-dir=*) BUILD_DIR="${arg#*=}" DO_BUILD=0 ;;
      --build) DO_BUILD=1 ;;
      --build=*) BUILD_DIR="${arg#*=}" DO_BUILD=1 ;;
      --jobs=*) JOBS="${arg#*=}" ;;
      --debs=*) DEBS="${arg#*=}" ;;
      --prefix=*) PREFIX="${arg#*=}" ;;
      --python=*) PYTHON="${arg#*=}" ;;
      --no-time-limits)
        TOTAL_BUDGET_S=${NO_LIMIT_S} BUILD_CAP_S=${NO_LIMIT_S} PROTOCOL_CAP_S=${NO_LIMIT_S}
        SLOTS_CAP_S=${NO_LIMIT_S} ZOO_CAP_S=${NO_LIMIT_S} TRAINER_CAP_S=${NO_LIMIT_S}
        ;;
      *) usage ;;
    esac
  done
  [[ -n "${OUT_DIR}" ]] || usage
  # What an earlier run left there must not pass for this run's figures.
  rm -rf "${OUT_DIR}/steps" "${OUT_DIR}/logs" "${OUT_DIR}/slots" "${OUT_DIR}/protocol"
  rm -f "${OUT_DIR}"/{torch,zoo,trainer,results}.json "${OUT_DIR}/RESULTS.md"
  mkdir -p "${OUT_DIR}/steps" "${OUT_DIR}/logs"
  OUT_DIR="$(cd "${OUT_DIR}" && pwd)"
  BUILD_DIR="$(realpath -m "${BUILD_DIR}")"
}

# GPU sizes (the published protocol) or CPU-fallback sizes (a few batches of 32-px images).
set_sizes() {
  if [[ "${MODE}" == gpu ]]; then
    DEVICE=cuda:0
    PROTOCOL_SIZE=256 PROTOCOL_STEPS=1561 PROTOCOL_WARMUP=2 # 1,563 steps x 32 = 50,016 images
    SLOT_COUNTS=(1 2 4 8) SLOTS_SIZE=256 SLOTS_IMAGES=2048 SLOTS_TEST_IMAGES=256
    ZOO_ARGS=(--batch=32 --iterations=3)
    TRAINER_ARGS=(--train_limit=2048 --test_limit=512 --input_size=256)
  else
    DEVICE=cpu
    PROTOCOL_SIZE=32 PROTOCOL_STEPS=1 PROTOCOL_WARMUP=1
    SLOT_COUNTS=(1 2) SLOTS_SIZE=32 SLOTS_IMAGES=64 SLOTS_TEST_IMAGES=32
    ZOO_ARGS=("--families=AirNet,ShuffleNet" --batch=4 --iterations=1) # the MoE4's two fastest
    TRAINER_ARGS=(--train_limit=64 --test_limit=32 --input_size=32)
  fi
}

# run_step NAME CAP_S COMMAND...: runs COMMAND under the smaller of CAP_S and the time left, logs
# to logs/NAME.log, records {name, status, seconds, timeout_s, rc} in steps/NAME.json. Never fails.
run_step() {
  local name="$1" cap="$2"
  shift 2
  local left=$((TOTAL_BUDGET_S - SECONDS)) limit status rc=0 start=${SECONDS}
  limit=$((cap < left ? cap : left))
  if ((limit < MIN_STEP_S)); then
    status=skipped rc=-1
    echo "run.sh: ${name}: skipped, ${left} s left" >&2
  else
    echo "run.sh: ${name} (at most ${limit} s)" >&2
    timeout --kill-after=10 "${limit}" "$@" >"${OUT_DIR}/logs/${name}.log" 2>&1 || rc=$?
    case "${rc}" in
      0) status=ok ;;
      124 | 137) status=timeout ;;
      *) status=failed ;;
    esac
    [[ "${status}" == ok ]] || tail -n 20 "${OUT_DIR}/logs/${name}.log" >&2
  fi
  printf '{"name": "%s", "status": "%s", "start_s": %d, "seconds": %d, "timeout_s": %d, "rc": %d}\n' \
    "${name}" "${status}" "${start}" $((SECONDS - start)) "${limit}" "${rc}" \
    >"${OUT_DIR}/steps/${name}.json"
  echo "run.sh: ${name}: ${status} in $((SECONDS - start)) s" >&2
}

# PyTorch's view of the machine (torch.json); sets MODE to gpu or cpu.
probe_torch() {
  "${PYTHON}" - >"${OUT_DIR}/torch.json" <<'EOF'
import json, platform, sys
import torch
cuda = torch.cuda.is_available()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
           platform.machine())
print(json.dumps({
    "torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": cuda,
    "cudnn": torch.backends.cudnn.version() if cuda else None,
    "python": sys.version.split()[0],
    "device_name": torch.cuda.get_device_name(0) if cuda else cpu,
    "capability": ".".join(map(str, torch.cuda.get_device_capability(0))) if cuda else None,
    "cmake_prefix_path": torch.utils.cmake_prefix_path}))
EOF
  MODE=cpu
  if ((!FORCE_CPU)) && grep -q '"cuda_available": true' "${OUT_DIR}/torch.json"; then
    MODE=gpu
  fi
}

# Unpacks the carried .deb files into PREFIX and points the compiler, CMake and the loader there.
unpack_debs() {
  local deb
  shopt -s nullglob
  local debs=("${DEBS}"/*.deb)
  shopt -u nullglob
  if ((${#debs[@]} == 0)); then
    echo "run.sh: no .deb files in ${DEBS}; using the system's packages" >&2
    DEPS_PREFIX=""
    return 0
  fi
  mkdir -p "${PREFIX}"
  for deb in "${debs[@]}"; do
    if command -v dpkg-deb >/dev/null; then
      dpkg-deb -x "${deb}" "${PREFIX}"
    else
      (cd "${PREFIX}" && ar p "${deb}" "$(ar t "${deb}" | grep '^data\.tar')" | tar -x)
    fi
  done
  relink_into_prefix
  DEPS_PREFIX="${PREFIX}/usr"
  export PATH="${DEPS_PREFIX}/bin:${PATH}"
  add_loader_path "${PREFIX}"
  echo "run.sh: unpacked ${#debs[@]} packages into ${PREFIX}" >&2
}

# A package's absolute symbolic links (libz.so -> /lib/...) point into the prefix instead.
relink_into_prefix() {
  local link target
  while IFS= read -r -d '' link; do
    target="$(readlink "${link}")"
    if [[ -e "${PREFIX}${target}" ]]; then ln -sfn "${PREFIX}${target}" "${link}"; fi
  done < <(find "${PREFIX}" -type l -lname '/*' -print0)
}

# add_loader_path ROOT: the libraries unpacked under ROOT (usr/lib and lib) are found at run time.
add_loader_path() {
  local dirs="$1/usr/lib/x86_64-linux-gnu:$1/lib/x86_64-linux-gnu"
  export LD_LIBRARY_PATH="${dirs}${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}"
}

# build TARGET...: the configure and build of the build step (run under run_step's timeout, in a
# child bash: exported with export -f).
build() {
  local torch_prefix cuda_args=() py_bin tool
  # CMake and ninja may be Python packages beside that python3 rather than on PATH.
  py_bin="$(dirname "$(command -v "${PYTHON}")")"
  export PATH="${PATH}:${py_bin}"
  for tool in cmake ninja; do
    command -v "${tool}" >/dev/null || {
      echo "run.sh: no ${tool} on PATH" >&2
      return 1
    }
  done
  torch_prefix="$("${PYTHON}" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
  if [[ "${MODE}" == gpu ]]; then
    [[ -x /usr/local/cuda/bin/nvcc ]] && export PATH="${PATH}:/usr/local/cuda/bin"
    # Only this GPU's architecture: nothing to detect, nothing extra to compile.
    TORCH_CUDA_ARCH_LIST="$("${PYTHON}" -c \
      'import torch; print("%d.%d" % torch.cuda.get_device_capability(0))')"
    export TORCH_CUDA_ARCH_LIST
    cuda_args=(-DCMAKE_CUDA_ARCHITECTURES="${TORCH_CUDA_ARCH_LIST/./}")
  fi
  cmake -S "${ROOT}" -B "${BUILD_DIR}" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DQUARTET_TRAINER_ONLY=ON -DQUARTET_DEPS_PREFIX="${DEPS_PREFIX}" \
    -DCMAKE_PREFIX_PATH="${torch_prefix}" "${cuda_args[@]}"
  cmake --build "${BUILD_DIR}" -j "${JOBS}" --target "$@"
}

# The loader path of a build tree made by an earlier --build (its unpacked packages).
use_build_prefix() {
  DEPS_PREFIX="$(sed -n 's/^QUARTET_DEPS_PREFIX:PATH=//p' "${BUILD_DIR}/CMakeCache.txt" 2>/dev/null || true)"
  if [[ -n "${DEPS_PREFIX}" ]]; then add_loader_path "${DEPS_PREFIX%/usr}"; fi
}

binary() {
  local path
  for path in "${BUILD_DIR}/bench/$1" "${BUILD_DIR}/worker/$1"; do
    [[ -x "${path}" ]] && echo "${path}" && return 0
  done
  echo "${BUILD_DIR}/missing/$1"
}

# One step per side, so that a side cut short by its cap leaves the others' figures.
measure_protocol() {
  local side
  mkdir -p "${OUT_DIR}/protocol"
  for side in "${PROTOCOL_SIDES[@]}"; do
    run_step "protocol_${side}" "${PROTOCOL_CAP_S}" "$(binary train_throughput)" \
      --device="${DEVICE}" --python="${PYTHON}" --sides="${side}" --sizes="${PROTOCOL_SIZE}" \
      --steps_32="${PROTOCOL_STEPS}" --steps_large="${PROTOCOL_STEPS}" \
      --warmup="${PROTOCOL_WARMUP}" --repeats=1 --threads="${JOBS}" \
      --json="${OUT_DIR}/protocol/${side}.json"
  done
}

# Slots scaling: N whole candidates (one epoch of SLOTS_IMAGES images each) trained at once in one
# process, a TorchTrainer per slot on a thread and CUDA stream of its own, as quartet-worker
# --slots=N runs them; a step per N, so a step cut short leaves the others' figures.
measure_slots() {
  local n
  mkdir -p "${OUT_DIR}/slots"
  for n in "${SLOT_COUNTS[@]}"; do
    run_step "slots_scaling_${n}" "${SLOTS_CAP_S}" "$(binary slots_scaling)" --device="${DEVICE}" \
      --slots="${n}" --size="${SLOTS_SIZE}" --train_images="${SLOTS_IMAGES}" \
      --test_images="${SLOTS_TEST_IMAGES}" --json="${OUT_DIR}/slots/${n}.json"
  done
}

measure_zoo() {
  run_step zoo "${ZOO_CAP_S}" "$(binary zoo)" --device="${DEVICE}" --threads="${JOBS}" \
    "${ZOO_ARGS[@]}" --json="${OUT_DIR}/zoo.json"
}

measure_trainer() {
  run_step trainer "${TRAINER_CAP_S}" "$(binary quartet-train)" --families="${MOE4_FAMILIES}" \
    --dataset=synthetic --epochs=1 --device="${DEVICE}" --threads="${JOBS}" \
    "${TRAINER_ARGS[@]}" --output="${OUT_DIR}/trainer.json" --log_level=warn
}

summarize() {
  local slots
  slots="$(
    IFS=,
    echo "${SLOT_COUNTS[*]}"
  )"
  "${PYTHON}" "${HELPER}" summarize --out="${OUT_DIR}" --root="${ROOT}" \
    --build-dir="${BUILD_DIR}" --mode="${MODE}" --device="${DEVICE}" --slots="${slots}" \
    --command="bench/gpu/run.sh ${ARGS[*]}" --total-seconds="${SECONDS}"
}

main() {
  ARGS=("$@")
  parse_args "$@"
  probe_torch
  set_sizes
  echo "run.sh: ${MODE} mode on ${DEVICE}; results in ${OUT_DIR}" >&2
  if ((DO_BUILD)); then
    unpack_debs
    export -f build
    export ROOT BUILD_DIR JOBS PYTHON MODE DEPS_PREFIX
    # shellcheck disable=SC2016 # expanded by the child bash
    run_step build "${BUILD_CAP_S}" bash -c 'set -euo pipefail; build "$@"' build "${TARGETS[@]}"
  else
    use_build_prefix
    printf '{"name": "build", "status": "skipped", "start_s": 0, "seconds": 0, "timeout_s": 0, "rc": 0}\n' \
      >"${OUT_DIR}/steps/build.json"
  fi
  measure_protocol
  measure_slots
  measure_zoo
  measure_trainer
  summarize
  local check_args=()
  if ((DO_BUILD)); then check_args=(--expect-build); fi
  "${PYTHON}" "${HELPER}" check "${OUT_DIR}/results.json" "${check_args[@]}"
}

main "$@"
