// Validation of a submitted campaign: every field checked against the family catalog and the
// combination space, defaults filled in. Pure; no I/O.
#ifndef QUARTET_COORDINATOR_CORE_CAMPAIGN_CONFIG_H_
#define QUARTET_COORDINATOR_CORE_CAMPAIGN_CONFIG_H_

#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/space/product_space.h"
#include "coordinator/space/sampler.h"
#include "coordinator/space/space.h"
#include "quartet/v1/campaign.pb.h"

namespace quartet::coordinator {

// A validated campaign config and what follows from it.
struct ResolvedCampaign {
  // Defaults filled; pool = resolved model names in catalog order (exclusions removed); required
  // in catalog order; recipe complete.
  quartet::v1::CampaignConfig config;
  // Pool indices of the required families.
  std::vector<int> required;
  space::SamplerKind sampler;
  space::SamplerOptions sampler_options;
};

// INVALID_ARGUMENT naming the field ("name", "pool", "exclude", "required", "k", "budget",
// "repeats", "max_attempts", "recipe.<field>", "data.<field>", "adaptive.exploration_share") for
// every kind of bad input: unknown family, k < 2 or above the pool size (or 8), a budget above
// the distinct combinations times repeats, negative or NaN recipe values, an empty name, an input
// size below a pool family's minimum, two variants of one family in the pool (DPN68 and DPN131),
// a name over 200 characters, NUL bytes or control characters in the name or data.data_dir, more
// than 1000 names in pool, exclude or required. Messages echo at most 64 bytes of client input.
absl::StatusOr<ResolvedCampaign> ResolveCampaign(const quartet::v1::CampaignConfig& config);

// The space of a resolved campaign: its family axis (none when without_families) times its
// parameter axes.
absl::StatusOr<space::ProductSpace> SpaceOf(const ResolvedCampaign& campaign);

space::SamplerKind FromProto(quartet::v1::SamplerKind kind);
quartet::v1::SamplerKind ToProto(space::SamplerKind kind);

}  // namespace quartet::coordinator

#endif  // QUARTET_COORDINATOR_CORE_CAMPAIGN_CONFIG_H_
