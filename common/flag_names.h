// Command-line parsing shared by the binaries that use absl flags: --some-flag is accepted as
// well as --some_flag, and --help lists the flags the binary's own main file defines.
#ifndef QUARTET_COMMON_FLAG_NAMES_H_
#define QUARTET_COMMON_FLAG_NAMES_H_

#include <algorithm>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace quartet::common {

// Rewrites "--a-b=c" to "--a_b=c" (the name only, never the value) in place. `storage` owns the
// rewritten strings and must outlive argv's use.
inline void NormalizeFlagNames(int argc, char** argv, std::vector<std::string>& storage) {
  storage.reserve(argc);
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") break;
    if (arg.rfind("--", 0) != 0) continue;
    const size_t end = std::min(arg.find('='), arg.size());
    for (size_t j = 2; j < end; ++j) {
      if (arg[j] == '-') arg[j] = '_';
    }
    storage.push_back(arg);
    argv[i] = storage.back().data();
  }
}

// Sets the usage message, makes --help list the flags defined in the calling file (absl only lists
// files named after the program by default, and ours are main.cc), normalizes flag names and
// parses. `storage` as for NormalizeFlagNames.
inline void ParseFlags(int argc, char** argv, absl::string_view usage,
                       std::vector<std::string>& storage,
                       const char* main_file = __builtin_FILE()) {
  absl::SetProgramUsageMessage(usage);
  absl::FlagsUsageConfig config;
  const std::string own_file = main_file;
  config.contains_help_flags = [own_file](absl::string_view file) {
    return absl::EndsWith(own_file, file) || absl::EndsWith(file, own_file);
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  absl::SetFlagsUsageConfig(config);
  NormalizeFlagNames(argc, argv, storage);
  absl::ParseCommandLine(argc, argv);
}

}  // namespace quartet::common

#endif  // QUARTET_COMMON_FLAG_NAMES_H_
