// A campaign spec file, as quartetctl reads it and the coordinator validates it: the first byte
// picks the format (odd: YAML, even: JSON; the seeds use 'y' and 'j'), the rest is the file.
// Whatever the input, parsing and ResolveCampaign must return a Status (no crash, no exception, no
// sanitizer report), an accepted campaign must respect the bounds, and a refusal must stay short.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>

#include "absl/strings/string_view.h"
#include "common/catalog.h"
#include "common/input_bounds.h"
#include "common/spec_io.h"
#include "coordinator/core/campaign_config.h"
#include "quartet/v1/campaign.pb.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const auto format =
      (data[0] & 1) ? quartet::common::TextFormat::kYaml : quartet::common::TextFormat::kJson;
  const absl::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  quartet::v1::CampaignConfig config;
  if (!quartet::common::ParseMessage(text, format, "fuzz", &config).ok()) return 0;
  auto resolved = quartet::coordinator::ResolveCampaign(config);
  if (!resolved.ok()) {
    // Refusals echo at most 64 bytes of any one input, so they stay short.
    if (resolved.status().message().size() > 1024) std::abort();
    return 0;
  }
  const quartet::v1::CampaignConfig& c = resolved->config;
  if (quartet::common::CountChars(c.name()) > quartet::common::kMaxNameChars) std::abort();
  if (c.name().find('\0') != std::string::npos) std::abort();
  if (c.pool_size() < 2 || c.k() < 2 || c.k() > c.pool_size() || c.budget() < 1) std::abort();
  std::set<int> families;
  for (const std::string& name : c.pool()) {
    auto m = quartet::common::FamilyCatalog::Get().Resolve(name);
    if (!m.ok() || !families.insert(m->family->id).second) std::abort();
  }
  return 0;
}
