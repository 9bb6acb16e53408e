#include "common/spec_io.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
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

}  // namespace

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
