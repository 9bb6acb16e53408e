#include "bench/bench_util.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace quartet::bench {

std::string MachineDescription() {
  std::string cpu = "unknown CPU";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      cpu = std::string(absl::StripLeadingAsciiWhitespace(line.substr(line.find(':') + 1)));
      break;
    }
  }
  double mem_gib = 0;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string line; std::getline(meminfo, line);) {
    if (line.rfind("MemTotal:", 0) == 0) {
      std::istringstream in(line.substr(9));
      double kb = 0;
      in >> kb;
      mem_gib = kb / (1024.0 * 1024.0);
      break;
    }
  }
  std::string os = "Linux";
  std::ifstream release("/etc/os-release");
  for (std::string line; std::getline(release, line);) {
    if (line.rfind("PRETTY_NAME=", 0) == 0) {
      os = line.substr(12);
      os.erase(std::remove(os.begin(), os.end(), '"'), os.end());
    }
  }
  return absl::StrFormat("%s, %d cores, %.0f GiB RAM, %s", cpu, std::thread::hardware_concurrency(),
                         mem_gib, os);
}

std::string ResultsPath() { return std::string(QUARTET_SOURCE_DIR) + "/bench/RESULTS.md"; }

std::string Today() { return absl::FormatTime("%Y-%m-%d", absl::Now(), absl::UTCTimeZone()); }

std::string CommandLine(int argc, char** argv) {
  std::string out;
  for (int i = 0; i < argc; ++i) absl::StrAppend(&out, i ? " " : "", argv[i]);
  return out;
}

bool AppendResults(const std::string& path, const std::string& title, const std::string& command,
                   const std::string& body) {
  std::ofstream out(path, std::ios::app);
  if (!out) {
    std::cerr << "cannot append to " << path << "\n";
    return false;
  }
  out << "\n## " << title << "\n\n"
      << "- Machine: " << MachineDescription() << "\n"
      << "- Date: " << Today() << "\n"
      << "- Command: `" << command << "`\n\n"
      << body << "\n";
  return static_cast<bool>(out);
}

}  // namespace quartet::bench
