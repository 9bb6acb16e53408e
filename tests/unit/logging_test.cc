// Log formats: the JSON format writes one parseable object per event whatever the message holds.
#include "common/logging.h"

#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace quartet::common {
namespace {

TEST(LoggingTest, JsonFormatWritesOneObjectPerEventWithTheMessageEscaped) {
  const std::string path = "/tmp/quartet-logging-test-" + std::to_string(getpid()) + ".log";
  std::remove(path.c_str());
  // Restored at the end: dropping the default logger would leave later tests' log calls on null.
  const auto previous = spdlog::default_logger();
  ASSERT_TRUE(InitLogging("jsontest", "info", path, "json").ok());
  const std::string forged =
      "failed: boom\n2026-12-02T00:00:00.000 I coordinator: \"forged\"\t\x01";
  spdlog::info("{}", forged);
  spdlog::warn("second");
  spdlog::default_logger()->flush();
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 2u);  // the newline in the message did not start a line
  const auto first = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(first["message"], forged);
  EXPECT_EQ(first["level"], "info");
  EXPECT_EQ(first["process"], "jsontest");
  EXPECT_EQ(nlohmann::json::parse(lines[1])["level"], "warning");
  spdlog::set_default_logger(previous);
  spdlog::drop("jsontest");
  std::remove(path.c_str());
}

TEST(LoggingTest, UnknownFormatIsRefused) {
  absl::Status s = InitLogging("badformat", "info", "", "xml");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("--log_format"), std::string::npos);
}

}  // namespace
}  // namespace quartet::common
