// A campaign spec file, as quartetctl reads it and the coordinator validates it: the first byte
// picks the format (odd: YAML, even: JSON; the seeds use 'y' and 'j'), the rest is the file.
// Whatever the input, parsing and ResolveCampaign must return a Status (no crash, no exception, no
// sanitizer report), an accepted campaign must respect the bounds (family axis, parameter axes, the
// space and the budget), and a refusal must stay short.
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
  if (c.budget() < 1) std::abort();
  if (c.without_families()) {
    // No family axis: no pool, no k, at least one parameter axis.
    if (c.pool_size() != 0 || c.k() != 0 || c.axes_size() < 1) std::abort();
  } else if (c.pool_size() < 1 || c.k() < 1 || c.k() > c.pool_size()) {
    std::abort();
  }
  // Axes: within bounds, and the space they span below 2^63 points with room for the budget.
  if (c.axes_size() > quartet::coordinator::space::kMaxAxes) std::abort();
  for (const auto& axis : c.axes()) {
    const int levels = axis.values_size() > 0 ? axis.values_size() : axis.range().strata();
    if (levels < 1 || levels > quartet::coordinator::space::kMaxLevels) std::abort();
    if (axis.values_size() > 0 && axis.has_range()) std::abort();
  }
  auto space = quartet::coordinator::SpaceOf(*resolved);
  if (!space.ok() || space->size() >= quartet::coordinator::space::kMaxSpaceSize) std::abort();
  if (static_cast<long double>(c.budget()) >
      static_cast<long double>(space->size()) * c.repeats()) {
    std::abort();
  }
  std::set<int> families;
  for (const std::string& name : c.pool()) {
    auto m = quartet::common::FamilyCatalog::Get().Resolve(name);
    if (!m.ok() || !families.insert(m->family->id).second) std::abort();
  }
  return 0;
}
