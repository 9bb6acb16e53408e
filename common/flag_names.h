// Lets the binaries that use absl flags accept --some-flag as well as --some_flag.
#ifndef QUARTET_COMMON_FLAG_NAMES_H_
#define QUARTET_COMMON_FLAG_NAMES_H_

#include <string>
#include <vector>

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

}  // namespace quartet::common

#endif  // QUARTET_COMMON_FLAG_NAMES_H_
