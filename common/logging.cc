#include "common/logging.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "spdlog/sinks/basic_file_sink.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace quartet::common {

absl::Status InitLogging(const std::string& name, const std::string& level,
                         const std::string& file) {
  spdlog::level::level_enum lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--log_level: '", level, "' is not one of trace, debug, info, warn, error, off"));
  }
  std::shared_ptr<spdlog::logger> logger;
  try {
    if (file.empty()) {
      logger = spdlog::stderr_color_mt(name);
    } else {
      logger = spdlog::basic_logger_mt(name, file);
    }
  } catch (const spdlog::spdlog_ex& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot open log file '", file, "': ", e.what()));
  }
  logger->set_level(lvl);
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%L%$ %n: %v");
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  return absl::OkStatus();
}

}  // namespace quartet::common
