// Generic schema enforcement for configuration protos: reads a YAML document
// into a proto2 message by reflection, and checks the `(bounds)` option of
// proto/switchboard/config/v1/config.proto.
//
// The schema lives in the .proto alone: YAML keys are field names, nested
// mappings are sub-messages, lists are repeated fields, enum values are
// written in lower case without their enum's prefix (`Overflow` value
// `OVERFLOW_DROP_OLDEST` is `drop_oldest`). Used by config.h; nothing here
// knows Switchboard's fields. Every error is INVALID_ARGUMENT and starts with
// the field's path: `topics[1].overflow: ...`.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "server/config/env_expansion.h"

namespace switchboard::config {

// Parses `yaml` and merges it into `message`. Strict: a syntax error, an
// unknown or repeated key, a value of the wrong type, a null value or an
// empty list is an error. Every scalar goes through ExpandEnvReferences
// before it is converted. An empty document leaves `message` unchanged.
absl::Status ReadYamlIntoMessage(absl::string_view yaml, const EnvLookup& env,
                                 google::protobuf::Message* message);

// Checks every set numeric field of `message` (recursively) against the
// field's `(bounds)` option.
absl::Status CheckFieldBounds(const google::protobuf::Message& message);

// How `value` is written in YAML: "drop_oldest" for OVERFLOW_DROP_OLDEST.
std::string YamlEnumName(const google::protobuf::EnumValueDescriptor& value);

}  // namespace switchboard::config
