#include "common/spec_io.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "yaml-cpp/yaml.h"

namespace quartet::common {
namespace {

// YAML scalars carry no type; guess it the way a YAML 1.2 core-schema reader would.
nlohmann::json ScalarToJson(const YAML::Node& node) {
  const std::string& s = node.Scalar();
  if (node.Tag() == "!") return s;  // explicitly quoted
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  if (s == "null" || s == "~" || s.empty()) return nullptr;
  char* end = nullptr;
  errno = 0;
  long long i = std::strtoll(s.c_str(), &end, 10);
  if (errno == 0 && end && *end == '\0') return i;
  errno = 0;
  double d = std::strtod(s.c_str(), &end);
  if (errno == 0 && end && *end == '\0') return d;
  return s;
}

nlohmann::json YamlToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      nlohmann::json out = nlohmann::json::object();
      for (const auto& kv : node) out[kv.first.as<std::string>()] = YamlToJson(kv.second);
      return out;
    }
    case YAML::NodeType::Sequence: {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& item : node) out.push_back(YamlToJson(item));
      return out;
    }
    case YAML::NodeType::Scalar:
      return ScalarToJson(node);
    default:
      return nullptr;
  }
}

// A scalar as axis value text: strings as they are, numbers and booleans as JSON writes them.
std::string ValueText(const nlohmann::json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

absl::StatusOr<nlohmann::json> RangeAxis(const std::string& path, const nlohmann::json& spec) {
  const bool log = spec.contains("log");
  const nlohmann::json& bounds = log ? spec["log"] : spec["linear"];
  if (!bounds.is_array() || bounds.size() != 2 || !bounds[0].is_number() ||
      !bounds[1].is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat("axes.", path, ": give {log: [lo, hi]} or {linear: [lo, hi]} with numbers"));
  }
  nlohmann::json range = {{"lo", bounds[0]}, {"hi", bounds[1]}, {"log", log}};
  if (spec.contains("strata")) range["strata"] = spec["strata"];
  return nlohmann::json{{"path", path}, {"range", range}};
}

// The short axes form of a CampaignConfig (see ParseMessage) rewritten to the proto form, and
// CATEGORICAL values made strings.
absl::Status NormalizeAxes(nlohmann::json* config) {
  if (!config->is_object() || !config->contains("axes")) return absl::OkStatus();
  nlohmann::json& axes = (*config)["axes"];
  nlohmann::json out = nlohmann::json::array();
  if (axes.is_object()) {
    for (const auto& [path, spec] : axes.items()) {
      if (spec.is_array()) {
        out.push_back({{"path", path}, {"values", spec}});
      } else if (spec.is_object() && (spec.contains("log") || spec.contains("linear"))) {
        auto axis = RangeAxis(path, spec);
        if (!axis.ok()) return axis.status();
        out.push_back(*axis);
      } else if (spec.is_object()) {
        nlohmann::json axis = spec;
        axis["path"] = path;
        out.push_back(axis);
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "axes.", path, ": give a list of values or {log|linear: [lo, hi], strata: L}"));
      }
    }
  } else if (axes.is_array()) {
    out = axes;
  } else {
    return absl::OkStatus();  // the proto parser explains
  }
  for (nlohmann::json& axis : out) {
    if (!axis.is_object() || !axis.contains("values") || !axis["values"].is_array()) continue;
    for (nlohmann::json& v : axis["values"]) {
      if (!v.is_object() && !v.is_array() && !v.is_null()) v = ValueText(v);
    }
  }
  axes = out;
  return absl::OkStatus();
}

}  // namespace

std::string EnumValuePrefix(const google::protobuf::EnumDescriptor* e) {
  const std::string& first = e->value(0)->name();
  return first.substr(0, first.rfind('_') + 1);
}

std::string ShortEnumValue(absl::string_view text) {
  // The wire format's two files hold every enum (spec.proto and campaign.proto, which imports it).
  const google::protobuf::EnumValueDescriptor* value = nullptr;
  for (const auto* file : {quartet::v1::CandidateSpec::descriptor()->file(),
                           quartet::v1::CampaignConfig::descriptor()->file()}) {
    if (value == nullptr) value = file->FindEnumValueByName(std::string(text));
  }
  if (value == nullptr) return std::string(text);
  const std::string prefix = EnumValuePrefix(value->type());
  return absl::StartsWith(text, prefix) ? std::string(text.substr(prefix.size()))
                                        : std::string(text);
}

absl::StatusOr<quartet::v1::ParameterAxis> ParseAxisFlag(absl::string_view flag) {
  const size_t eq = flag.find('=');
  if (eq == absl::string_view::npos || eq == 0 || eq + 1 == flag.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--axis '", flag,
        "': expected PATH=V1,V2,... or PATH=log:LO:HI[:STRATA] or PATH=linear:LO:HI[:STRATA]"));
  }
  quartet::v1::ParameterAxis axis;
  axis.set_path(std::string(flag.substr(0, eq)));
  const absl::string_view rest = flag.substr(eq + 1);
  if (absl::StartsWith(rest, "log:") || absl::StartsWith(rest, "linear:")) {
    const std::vector<std::string> parts = absl::StrSplit(rest, ':');
    double lo, hi;
    int strata = 0;
    if ((parts.size() != 3 && parts.size() != 4) || !absl::SimpleAtod(parts[1], &lo) ||
        !absl::SimpleAtod(parts[2], &hi) ||
        (parts.size() == 4 && !absl::SimpleAtoi(parts[3], &strata))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--axis '", flag, "': a range is log:LO:HI[:STRATA] or linear:LO:HI[:STRATA]"));
    }
    axis.mutable_range()->set_log(parts[0] == "log");
    axis.mutable_range()->set_lo(lo);
    axis.mutable_range()->set_hi(hi);
    axis.mutable_range()->set_strata(strata);
    return axis;
  }
  for (absl::string_view v : absl::StrSplit(rest, ',')) axis.add_values(std::string(v));
  return axis;
}

absl::Status ParseMessage(absl::string_view text, TextFormat format, absl::string_view source,
                          google::protobuf::Message* message) {
  message->Clear();
  std::string json;
  if (format == TextFormat::kYaml) {
    try {
      YAML::Node root = YAML::Load(std::string(text));
      json = YamlToJson(root).dump();
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": not valid YAML: ", e.what()));
    } catch (const nlohmann::json::exception& e) {
      // A scalar that is not valid UTF-8 cannot become JSON text.
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": not valid YAML text (strings must be UTF-8): ", e.what()));
    }
  } else {
    json = std::string(text);
  }
  if (message->GetDescriptor()->full_name() == "quartet.v1.CampaignConfig") {
    nlohmann::json parsed = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
    if (!parsed.is_discarded()) {
      if (parsed.is_object() && parsed.contains("axes")) {
        absl::Status axes = NormalizeAxes(&parsed);
        if (!axes.ok()) {
          return absl::InvalidArgumentError(absl::StrCat(source, ": ", axes.message()));
        }
        json = parsed.dump();
      }
    }
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(json, message, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": does not match ",
                                                   message->GetDescriptor()->full_name(), ": ",
                                                   status.message().as_string()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read '", path, "': ", std::strerror(errno)));
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

absl::Status ReadMessageFile(const std::string& path, google::protobuf::Message* message) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  if (absl::EndsWith(path, ".json")) return ParseMessage(*text, TextFormat::kJson, path, message);
  if (absl::EndsWith(path, ".yaml") || absl::EndsWith(path, ".yml")) {
    return ParseMessage(*text, TextFormat::kYaml, path, message);
  }
  absl::Status as_json = ParseMessage(*text, TextFormat::kJson, path, message);
  if (as_json.ok()) return as_json;
  return ParseMessage(*text, TextFormat::kYaml, path, message);
}

std::string MessageToJson(const google::protobuf::Message& message, bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = pretty;
  options.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

}  // namespace quartet::common
