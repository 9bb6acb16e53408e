// Shared by the benchmarks: machine description and appending a section to bench/RESULTS.md.
#ifndef QUARTET_BENCH_BENCH_UTIL_H_
#define QUARTET_BENCH_BENCH_UTIL_H_

#include <string>

namespace quartet::bench {

// "<cpu model>, <cores> cores, <memory> GiB RAM, <os>" read from /proc and /etc/os-release.
std::string MachineDescription();

// Today's date, UTC, as YYYY-MM-DD.
std::string Today();

// The command line as typed (argv joined by spaces).
std::string CommandLine(int argc, char** argv);

// The source tree's bench/RESULTS.md, wherever the benchmark runs from.
std::string ResultsPath();

// Appends "## <title>\n\n<machine, date, command>\n\n<body>\n" to `path`. Returns false (and
// prints why to stderr) when the file cannot be written.
bool AppendResults(const std::string& path, const std::string& title, const std::string& command,
                   const std::string& body);

}  // namespace quartet::bench

#endif  // QUARTET_BENCH_BENCH_UTIL_H_
