// Reading protobuf messages (campaign configs, candidate specs) from JSON or YAML text and files,
// using protobuf's JSON mapping (field names in snake_case or lowerCamelCase, enums by name).
#ifndef QUARTET_COMMON_SPEC_IO_H_
#define QUARTET_COMMON_SPEC_IO_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "quartet/v1/campaign.pb.h"

namespace quartet::common {

enum class TextFormat { kJson, kYaml };

// Parses `text` into `message` (cleared first). A quartet.v1.CampaignConfig may write its axes
// in the short form, a map from field path to a list of values (CATEGORICAL) or to
// {log: [lo, hi], strata: L} / {linear: [lo, hi], strata: L} (CONTINUOUS), for example
//   axes: {recipe.router: [dense, top-k], recipe.learning_rate: {log: [1e-4, 1e-2], strata: 8}}
// as well as in the proto form (a list of {path, values} / {path, range}); values may be numbers
// or booleans as well as strings. INVALID_ARGUMENT with the parser's explanation
// (unknown field, wrong type, bad enum name) prefixed by `source`.
absl::Status ParseMessage(absl::string_view text, TextFormat format, absl::string_view source,
                          google::protobuf::Message* message);

// One axis from a command-line flag: "PATH=V1,V2,..." (CATEGORICAL) or "PATH=log:LO:HI[:STRATA]" /
// "PATH=linear:LO:HI[:STRATA]" (CONTINUOUS). INVALID_ARGUMENT explaining the form otherwise.
absl::StatusOr<quartet::v1::ParameterAxis> ParseAxisFlag(absl::string_view flag);

// The prefix every value of a Quartet enum carries, from its UNSPECIFIED value ("ROUTER_" for
// Router, "HEAD_KIND_" for HeadKind).
std::string EnumValuePrefix(const google::protobuf::EnumDescriptor* e);

// "ROUTER_TOP_K" -> "TOP_K": the name of a value of an enum of spec.proto or campaign.proto
// without its enum's prefix; any other text unchanged (numbers, booleans, strings).
std::string ShortEnumValue(absl::string_view text);

// Reads a file: .json is JSON, .yaml/.yml is YAML, anything else is tried as JSON then YAML.
// NOT_FOUND when the file cannot be read; INVALID_ARGUMENT when it does not parse.
absl::Status ReadMessageFile(const std::string& path, google::protobuf::Message* message);

// Compact or indented JSON of a message with every field printed (defaults included).
std::string MessageToJson(const google::protobuf::Message& message, bool pretty = false);

// Reads a whole file. NOT_FOUND naming the path when it cannot be opened.
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace quartet::common

#endif  // QUARTET_COMMON_SPEC_IO_H_
