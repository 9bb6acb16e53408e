#include "coordinator/core/axes.h"

#include <cmath>
#include <cstdio>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/input_bounds.h"
#include "common/log_escape.h"
#include "common/spec_io.h"
#include "common/status_macros.h"
#include "coordinator/space/product_space.h"
#include "coordinator/space/sampler.h"
#include "coordinator/storage/records.h"

namespace quartet::coordinator {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using quartet::v1::CandidateSpec;
using quartet::v1::ParameterAxis;

// Top-level messages of the spec an axis may reach into; the rest is the coordinator's.
constexpr const char* kAxisRoots[] = {"recipe", "data"};
constexpr size_t kMaxStringValueBytes = 256;
constexpr int kLabelDigits = 4;
// Client input echoed in an error message, at most this many bytes.
constexpr size_t kEchoBytes = 64;

std::string Echo(absl::string_view text) { return common::EscapeForLog(text, kEchoBytes); }

absl::Status AxisError(int index, const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("axes[", index, "] (", Echo(path), "): ", what));
}

// Shortest decimal text that parses back to exactly `v`.
std::string ShortestText(double v) {
  char buffer[64];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(buffer, sizeof(buffer), "%.*g", digits, v);
    if (std::strtod(buffer, nullptr) == v) break;
  }
  return buffer;
}

std::string DigitsText(double v, int digits) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*g", digits, v);
  return buffer;
}

bool IsNumber(const FieldDescriptor* f) {
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT:
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64:
      return true;
    default:
      return false;
  }
}

bool IsInteger(const FieldDescriptor* f) {
  return IsNumber(f) && f->cpp_type() != FieldDescriptor::CPPTYPE_DOUBLE &&
         f->cpp_type() != FieldDescriptor::CPPTYPE_FLOAT;
}

// The message holding the field at `path` inside `root` (created on the way when `mutable_root`)
// and the field. INVALID_ARGUMENT when the path does not name a singular scalar field under one
// of kAxisRoots.
absl::StatusOr<std::pair<Message*, const FieldDescriptor*>> Locate(const std::string& path,
                                                                   Message* root) {
  const std::vector<std::string> parts = absl::StrSplit(path, '.');
  bool allowed_root = false;
  for (const char* r : kAxisRoots) allowed_root |= parts[0] == r;
  if (parts.size() < 2 || !allowed_root) {
    return absl::InvalidArgumentError(
        "an axis names a field under recipe or data, for example recipe.learning_rate");
  }
  Message* message = root;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Descriptor* d = message->GetDescriptor();
    const FieldDescriptor* f = d->FindFieldByName(parts[i]);
    if (f == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("no field '", Echo(parts[i]), "' in ", d->full_name()));
    }
    if (f->is_repeated()) {
      return absl::InvalidArgumentError(absl::StrCat(f->full_name(), " is a list, not a value"));
    }
    const bool last = i + 1 == parts.size();
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (last) {
        return absl::InvalidArgumentError(
            absl::StrCat(f->full_name(), " is a message; name one of its fields"));
      }
      message = message->GetReflection()->MutableMessage(message, f);
      continue;
    }
    if (!last) {
      return absl::InvalidArgumentError(absl::StrCat(f->full_name(), " has no fields"));
    }
    return std::make_pair(message, f);
  }
  return absl::InvalidArgumentError("empty path");
}

// Parses `text` for the field and sets it; *canonical receives the canonical text.
absl::Status SetFromText(Message* m, const FieldDescriptor* f, absl::string_view text,
                         std::string* canonical) {
  const Reflection* r = m->GetReflection();
  const std::string trimmed(absl::StripAsciiWhitespace(text));
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_ENUM: {
      const auto* e = f->enum_type();
      const google::protobuf::EnumValueDescriptor* v = e->FindValueByName(trimmed);
      if (v == nullptr) {
        // Short names: "top-k" for ROUTER_TOP_K (the prefix of the UNSPECIFIED value).
        const std::string prefix = common::EnumValuePrefix(e);
        std::string upper = absl::AsciiStrToUpper(trimmed);
        for (char& c : upper) c = c == '-' ? '_' : c;
        v = e->FindValueByName(prefix + upper);
      }
      if (v == nullptr || v->number() == 0) {
        std::string names;
        for (int i = 1; i < e->value_count(); ++i) {
          absl::StrAppend(&names, i > 1 ? ", " : "", e->value(i)->name());
        }
        return absl::InvalidArgumentError(absl::StrCat("'", Echo(trimmed), "' is not a value of ",
                                                       e->name(), "; expected one of ", names));
      }
      r->SetEnumValue(m, f, v->number());
      *canonical = v->name();
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      const std::string lower = absl::AsciiStrToLower(trimmed);
      if (lower != "true" && lower != "false") {
        return absl::InvalidArgumentError(
            absl::StrCat("'", Echo(trimmed), "' is not true or false"));
      }
      r->SetBool(m, f, lower == "true");
      *canonical = lower;
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_STRING: {
      QUARTET_RETURN_IF_ERROR(
          common::ValidateText(f->name(), trimmed, kMaxStringValueBytes, /*single_line=*/true));
      r->SetString(m, f, trimmed);
      *canonical = trimmed;
      return absl::OkStatus();
    }
    default:
      break;
  }
  double value;
  if (!absl::SimpleAtod(trimmed, &value) || !std::isfinite(value)) {
    return absl::InvalidArgumentError(absl::StrCat("'", Echo(trimmed), "' is not a finite number"));
  }
  if (IsInteger(f)) {
    if (value != std::floor(value) || std::fabs(value) > 9.0e15) {
      return absl::InvalidArgumentError(absl::StrCat("'", Echo(trimmed), "' is not an integer"));
    }
    const bool is_unsigned = f->cpp_type() == FieldDescriptor::CPPTYPE_UINT32 ||
                             f->cpp_type() == FieldDescriptor::CPPTYPE_UINT64;
    const bool is_32 = f->cpp_type() == FieldDescriptor::CPPTYPE_INT32 ||
                       f->cpp_type() == FieldDescriptor::CPPTYPE_UINT32;
    const double lo = is_unsigned ? 0 : (is_32 ? -2147483648.0 : -9.0e15);
    const double hi = is_32 ? (is_unsigned ? 4294967295.0 : 2147483647.0) : 9.0e15;
    if (value < lo || value > hi) {
      return absl::InvalidArgumentError(absl::StrCat(trimmed, " is out of the field's range"));
    }
    const int64_t i = static_cast<int64_t>(value);
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        r->SetInt32(m, f, static_cast<int32_t>(i));
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        r->SetInt64(m, f, i);
        break;
      case FieldDescriptor::CPPTYPE_UINT32:
        r->SetUInt32(m, f, static_cast<uint32_t>(i));
        break;
      default:
        r->SetUInt64(m, f, static_cast<uint64_t>(i));
        break;
    }
    *canonical = absl::StrCat(i);
    return absl::OkStatus();
  }
  if (f->cpp_type() == FieldDescriptor::CPPTYPE_FLOAT) {
    r->SetFloat(m, f, static_cast<float>(value));
  } else {
    r->SetDouble(m, f, value);
  }
  *canonical = ShortestText(value);
  return absl::OkStatus();
}

// The value at fraction t in [0, 1] of the range.
double RangeAt(const quartet::v1::ContinuousRange& range, double t) {
  if (range.log()) {
    return std::exp(std::log(range.lo()) + t * (std::log(range.hi()) - std::log(range.lo())));
  }
  return range.lo() + t * (range.hi() - range.lo());
}

absl::Status ResolveRange(int index, ParameterAxis* axis, const FieldDescriptor* field) {
  const std::string& path = axis->path();
  auto* range = axis->mutable_range();
  if (!IsNumber(field)) {
    return AxisError(index, path, "a CONTINUOUS range needs a number field; list values instead");
  }
  if (!std::isfinite(range->lo()) || !std::isfinite(range->hi()) || !(range->lo() < range->hi())) {
    return AxisError(
        index, path,
        absl::StrCat("range [", range->lo(), ", ", range->hi(), "] needs finite lo < hi"));
  }
  if (range->log() && range->lo() <= 0) {
    return AxisError(index, path, absl::StrCat("a log scale needs lo > 0, got ", range->lo()));
  }
  if (range->strata() == 0) range->set_strata(kDefaultAxisStrata);
  if (range->strata() < 1 || range->strata() > space::kMaxLevels) {
    return AxisError(
        index, path,
        absl::StrCat("strata must be in [1, ", space::kMaxLevels, "], got ", range->strata()));
  }
  return absl::OkStatus();
}

// The texts whose application must pass the checks: every value, or both ends of a range.
std::vector<std::string> ValuesToCheck(const ParameterAxis& axis, const FieldDescriptor* field) {
  if (!axis.has_range()) return {axis.values().begin(), axis.values().end()};
  if (IsInteger(field)) {
    return {absl::StrCat(static_cast<int64_t>(std::ceil(axis.range().lo()))),
            absl::StrCat(static_cast<int64_t>(std::floor(axis.range().hi())))};
  }
  return {ShortestText(axis.range().lo()), ShortestText(axis.range().hi())};
}

absl::Status ResolveAxis(int index, ParameterAxis* axis, const CandidateSpec& base,
                         const SpecCheck& check) {
  const std::string path = axis->path();
  CandidateSpec probe = base;
  auto located = Locate(path, &probe);
  if (!located.ok()) return AxisError(index, path, located.status().message());
  const FieldDescriptor* field = located->second;
  const bool has_values = axis->values_size() > 0;
  if (has_values == axis->has_range()) {
    return AxisError(index, path,
                     has_values ? "set values or range, not both"
                                : "empty axis: list values (CATEGORICAL) or give a range "
                                  "(CONTINUOUS)");
  }
  if (axis->values_size() > space::kMaxLevels) {
    return AxisError(index, path, absl::StrCat("at most ", space::kMaxLevels, " values"));
  }
  if (has_values) {
    std::set<std::string> seen;
    for (std::string& value : *axis->mutable_values()) {
      std::string canonical;
      absl::Status parsed = SetFromText(located->first, field, value, &canonical);
      if (!parsed.ok()) return AxisError(index, path, parsed.message());
      if (!seen.insert(canonical).second) {
        return AxisError(index, path, absl::StrCat("value ", canonical, " is listed twice"));
      }
      value = canonical;
    }
  } else {
    QUARTET_RETURN_IF_ERROR(ResolveRange(index, axis, field));
  }
  for (const std::string& value : ValuesToCheck(*axis, field)) {
    CandidateSpec spec = base;
    QUARTET_RETURN_IF_ERROR(ApplyAxisValue(path, value, &spec));
    absl::Status ok = check(spec);
    if (!ok.ok()) {
      return AxisError(index, path, absl::StrCat("value ", value, ": ", ok.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ResolveAxes(quartet::v1::CampaignConfig* config, const CandidateSpec& base,
                         const SpecCheck& check) {
  if (config->axes_size() > space::kMaxAxes) {
    return absl::InvalidArgumentError(
        absl::StrCat("axes: at most ", space::kMaxAxes, " axes, got ", config->axes_size()));
  }
  std::set<std::string> paths;
  for (int i = 0; i < config->axes_size(); ++i) {
    ParameterAxis* axis = config->mutable_axes(i);
    if (!paths.insert(axis->path()).second) {
      return AxisError(i, axis->path(), "a second axis on the same field; merge them");
    }
    QUARTET_RETURN_IF_ERROR(ResolveAxis(i, axis, base, check));
  }
  return absl::OkStatus();
}

std::string AxisValueText(const ParameterAxis& axis, int axis_index, int level, uint64_t seed,
                          uint64_t rank, int repeat) {
  if (!axis.has_range()) return axis.values(level);
  const double u = space::SeededUnit(seed, rank, static_cast<uint64_t>(repeat),
                                     static_cast<uint64_t>(axis_index));
  const double t = (level + u) / axis.range().strata();
  const double value = RangeAt(axis.range(), t);
  // Integer fields: the nearest integer inside the range.
  CandidateSpec probe;
  auto located = Locate(axis.path(), &probe);
  if (located.ok() && IsInteger(located->second)) {
    const double lo = std::ceil(axis.range().lo()), hi = std::floor(axis.range().hi());
    return absl::StrCat(static_cast<int64_t>(std::clamp(std::round(value), lo, hi)));
  }
  return ShortestText(value);
}

std::string LevelLabel(const ParameterAxis& axis, int level) {
  if (!axis.has_range()) return level < axis.values_size() ? axis.values(level) : "?";
  const int strata = axis.range().strata() > 0 ? axis.range().strata() : kDefaultAxisStrata;
  return absl::StrCat(
      "[", DigitsText(RangeAt(axis.range(), double(level) / strata), kLabelDigits), ", ",
      DigitsText(RangeAt(axis.range(), double(level + 1) / strata), kLabelDigits), ")");
}

absl::Status ApplyAxisValue(const std::string& path, const std::string& text, CandidateSpec* spec) {
  QUARTET_ASSIGN_OR_RETURN(auto located, Locate(path, spec));
  std::string canonical;
  return SetFromText(located.first, located.second, text, &canonical);
}

}  // namespace quartet::coordinator
