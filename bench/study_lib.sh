# Shared by the study scripts (bench/*_study.sh, bench/asha_campaign.sh): run from the repository
# root, they train through a real coordinator, workers and quartetctl from a build directory, on a
# fresh database of the test cluster (tests/e2e/lib.sh).
#   source bench/study_lib.sh; study_init BUILD_DIR NAME
study_init() {
  build=$1
  COORDINATOR=$build/coordinator/quartet-coordinator WORKER=$build/worker/quartet-worker
  CTL=$build/cli/quartetctl
  source tests/e2e/lib.sh
  e2e_init "$2"
}

# The CPU model, for the RESULTS.md machine line.
study_cpu() { sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1; }
