// Parameter axes of a campaign (CampaignConfig.axes): resolution of a field path to a scalar field
// of CandidateSpec through protobuf reflection, parsing and canonical text of values, the value of
// a candidate's level (a seeded draw inside a CONTINUOUS stratum), and applying it to a spec. A new
// recipe field needs no code here to become an axis. Pure; thread-safe.
#ifndef QUARTET_COORDINATOR_CORE_AXES_H_
#define QUARTET_COORDINATOR_CORE_AXES_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "quartet/v1/campaign.pb.h"
#include "quartet/v1/spec.pb.h"

namespace quartet::coordinator {

// Checks a candidate spec that carries one axis value (recipe and data): INVALID_ARGUMENT naming
// the spec's field when the value breaks the recipe's or the campaign's rules.
using SpecCheck = std::function<absl::Status(const quartet::v1::CandidateSpec&)>;

// Validates and normalises config.axes in place: paths resolve to a scalar field of the spec's
// `recipe` or `data`; CATEGORICAL values parse for the field's type, are canonicalised (enum
// names in full, numbers as the shortest round-trip text) and are distinct; CONTINUOUS ranges
// have finite lo < hi, lo > 0 on a log scale, strata in [1, 1024] (unset: 8), on a number field;
// every value (both ends of a range) applied to `base` passes `check`. INVALID_ARGUMENT names the
// axis ("axes[1] (recipe.top_k): ...") for each kind of bad input; at most 16 axes, one per path.
absl::Status ResolveAxes(quartet::v1::CampaignConfig* config,
                         const quartet::v1::CandidateSpec& base, const SpecCheck& check);

// The value text of `level` on `axis` for the candidate (rank, repeat) of a campaign seeded
// `seed`: the level's value (CATEGORICAL), or a uniform draw inside the stratum (CONTINUOUS; in
// log space on a log scale; rounded for an integer field), a pure function of its arguments.
// Precondition: the axis is resolved and 0 <= level < its levels.
std::string AxisValueText(const quartet::v1::ParameterAxis& axis, int axis_index, int level,
                          uint64_t seed, uint64_t rank, int repeat);

// A level's label for reports: the value, or the stratum "[lo, hi)".
std::string LevelLabel(const quartet::v1::ParameterAxis& axis, int level);

// Sets the field at `path` of `spec` from its canonical text. INVALID_ARGUMENT when the path or
// the text does not fit the field.
absl::Status ApplyAxisValue(const std::string& path, const std::string& text,
                            quartet::v1::CandidateSpec* spec);

}  // namespace quartet::coordinator

#endif  // QUARTET_COORDINATOR_CORE_AXES_H_
