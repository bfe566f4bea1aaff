#include "server/config/yaml_proto.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/wire_format_lite.h"
#include "server/common/status_macros.h"
#include "switchboard/config/v1/config.pb.h"

namespace switchboard::config {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

std::string FieldPath(const std::string& parent, absl::string_view name) {
  return parent.empty() ? std::string(name) : absl::StrCat(parent, ".", name);
}

std::string IndexPath(const std::string& parent, size_t index) {
  return absl::StrCat(parent, "[", index, "]");
}

template <typename... Args>
absl::Status PathError(const std::string& path, const Args&... message) {
  return absl::InvalidArgumentError(
      absl::StrCat(path.empty() ? "(top level)" : path, ": ", message...));
}

// Errors quote a value only when it is short and plainly not a secret: a
// number, or a word without digits (a typo of an enum value, "yes" for a
// boolean). A URL with a key, a token or a password given in the wrong place
// must not end up in logs, and neither must a megabyte of garbage.
constexpr size_t kMaxShownValue = 24;
constexpr absl::string_view kNumberCharacters = "0123456789+-.eE";
constexpr absl::string_view kWordCharacters =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-";

// Whether `text` is short and plainly not a secret.
bool Showable(absl::string_view text) {
  const bool plain = text.find_first_not_of(kNumberCharacters) == absl::string_view::npos ||
                     text.find_first_not_of(kWordCharacters) == absl::string_view::npos;
  return !text.empty() && text.size() <= kMaxShownValue && plain;
}

// How an error names a value: quoted when Showable(), else only its length.
std::string Shown(absl::string_view text) {
  if (Showable(text)) return absl::StrCat("\"", text, "\"");
  return absl::StrCat("a value of ", text.size(), " characters (not shown)");
}

// How an error names a value read as `raw` and expanded to `text`: an
// expanded value may be a secret, so only the reference is shown.
std::string Shown(absl::string_view raw, absl::string_view text) {
  if (raw == text) return Shown(text);
  if (raw.size() <= 64) {
    return absl::StrCat("the expansion of \"", absl::CHexEscape(raw), "\" (not shown)");
  }
  return absl::StrCat("an expanded value of ", text.size(), " characters (not shown)");
}

std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return Shown(node.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing (null)";
}

std::string EnumChoices(const EnumDescriptor& descriptor) {
  std::vector<std::string> names;
  for (int i = 0; i < descriptor.value_count(); ++i) {
    names.push_back(YamlEnumName(*descriptor.value(i)));
  }
  return absl::StrJoin(names, ", ");
}

std::string ExpectedValue(const FieldDescriptor& field) {
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      return "a string";
    case FieldDescriptor::CPPTYPE_BOOL:
      return "true or false";
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
      return "an integer";
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64:
      return "a non-negative integer";
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT:
      return "a number";
    case FieldDescriptor::CPPTYPE_ENUM:
      return absl::StrCat("one of ", EnumChoices(*field.enum_type()));
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  return "a mapping";
}

std::string FieldNames(const Descriptor& descriptor) {
  std::vector<std::string> names;
  for (int i = 0; i < descriptor.field_count(); ++i) names.push_back(descriptor.field(i)->name());
  return absl::StrJoin(names, ", ");
}

// YAML 1.2 core schema booleans; YAML 1.1's yes/no/on/off are refused.
bool ParseBool(absl::string_view text, bool* value) {
  if (text == "true" || text == "True" || text == "TRUE") {
    *value = true;
    return true;
  }
  if (text == "false" || text == "False" || text == "FALSE") {
    *value = false;
    return true;
  }
  return false;
}

const EnumValueDescriptor* FindEnumValue(const EnumDescriptor& descriptor, absl::string_view text) {
  for (int i = 0; i < descriptor.value_count(); ++i) {
    if (YamlEnumName(*descriptor.value(i)) == text) return descriptor.value(i);
  }
  return nullptr;
}

// Reads YAML nodes into a message by reflection. Lives for one document.
class YamlMessageReader {
 public:
  explicit YamlMessageReader(const EnvLookup& env) : env_(env) {}

  absl::Status ReadMessage(const YAML::Node& node, const std::string& path, Message* message) {
    if (!node.IsMap()) return PathError(path, "must be a mapping, got ", Describe(node));
    const Descriptor& descriptor = *message->GetDescriptor();
    std::set<std::string> seen_keys;
    for (YAML::const_iterator entry = node.begin(); entry != node.end(); ++entry) {
      if (!entry->first.IsScalar()) {
        return PathError(path, "keys must be field names, got ", Describe(entry->first));
      }
      const std::string& key = entry->first.Scalar();
      const FieldDescriptor* field = descriptor.FindFieldByName(key);
      if (field == nullptr && !Showable(key)) {
        return PathError(path, "unknown field ", Shown(key), "; expected one of ",
                         FieldNames(descriptor));
      }
      const std::string field_path = FieldPath(path, key);
      if (field == nullptr) {
        return PathError(field_path, "unknown field; expected one of ", FieldNames(descriptor));
      }
      if (!seen_keys.insert(key).second) return PathError(field_path, "appears more than once");
      SB_RETURN_IF_ERROR(ReadField(entry->second, field_path, *field, message));
    }
    return absl::OkStatus();
  }

 private:
  absl::Status ReadField(const YAML::Node& node, const std::string& path,
                         const FieldDescriptor& field, Message* message) {
    if (field.is_map()) return ReadMap(node, path, field, message);
    if (!field.is_repeated()) return ReadValue(node, path, field, message);
    if (!node.IsSequence()) return PathError(path, "must be a list, got ", Describe(node));
    // A repeated field cannot tell an empty list from an absent key.
    if (node.size() == 0) return PathError(path, "must not be empty; omit the key instead");
    for (size_t i = 0; i < node.size(); ++i) {
      SB_RETURN_IF_ERROR(ReadValue(node[i], IndexPath(path, i), field, message));
    }
    return absl::OkStatus();
  }

  // A map field is a YAML mapping: `method_cost: {getProgramAccounts: 10}`.
  // Each entry's path is the map's path and its key.
  absl::Status ReadMap(const YAML::Node& node, const std::string& path,
                       const FieldDescriptor& field, Message* message) {
    if (!node.IsMap()) return PathError(path, "must be a mapping, got ", Describe(node));
    if (node.size() == 0) return PathError(path, "must not be empty; omit the key instead");
    const Descriptor& entry_descriptor = *field.message_type();
    const FieldDescriptor& key_field = *entry_descriptor.map_key();
    const FieldDescriptor& value_field = *entry_descriptor.map_value();
    std::set<std::string> seen_keys;
    for (YAML::const_iterator entry = node.begin(); entry != node.end(); ++entry) {
      if (!entry->first.IsScalar()) {
        return PathError(path, "keys must be scalars, got ", Describe(entry->first));
      }
      const std::string entry_path = FieldPath(path, entry->first.Scalar());
      if (!seen_keys.insert(entry->first.Scalar()).second) {
        return PathError(entry_path, "appears more than once");
      }
      std::unique_ptr<Message> map_entry(
          message->GetReflection()->GetMessageFactory()->GetPrototype(&entry_descriptor)->New());
      SB_RETURN_IF_ERROR(ReadValue(entry->first, entry_path, key_field, map_entry.get()));
      SB_RETURN_IF_ERROR(ReadValue(entry->second, entry_path, value_field, map_entry.get()));
      AppendMapEntry(*map_entry, field, message);
    }
    return absl::OkStatus();
  }

  // Adds `entry` to map field `field` through the wire format, so the map's
  // own parser fills it. (Reflection on a map field goes through a repeated
  // view of it that crashes in TSan builds against Debian's uninstrumented
  // libprotobuf.)
  static void AppendMapEntry(const Message& entry, const FieldDescriptor& field, Message* message) {
    std::string fragment;
    {
      google::protobuf::io::StringOutputStream stream(&fragment);
      google::protobuf::io::CodedOutputStream out(&stream);
      google::protobuf::internal::WireFormatLite::WriteBytes(field.number(),
                                                             entry.SerializeAsString(), &out);
    }
    message->MergeFromString(fragment);
  }

  // Sets a singular field, or appends one element to a repeated field.
  absl::Status ReadValue(const YAML::Node& node, const std::string& path,
                         const FieldDescriptor& field, Message* message) {
    const Reflection& reflection = *message->GetReflection();
    const bool repeated = field.is_repeated();
    if (field.cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      Message* child = repeated ? reflection.AddMessage(message, &field)
                                : reflection.MutableMessage(message, &field);
      return ReadMessage(node, path, child);
    }
    if (!node.IsScalar()) {
      return PathError(path, "must be ", ExpectedValue(field), ", got ", Describe(node));
    }
    absl::StatusOr<std::string> text = ExpandEnvReferences(node.Scalar(), env_);
    if (!text.ok()) return PathError(path, text.status().message());
    auto wrong_value = [&] {
      return PathError(path, "must be ", ExpectedValue(field), ", got ",
                       Shown(node.Scalar(), *text));
    };

    switch (field.cpp_type()) {
      case FieldDescriptor::CPPTYPE_STRING:
        repeated ? reflection.AddString(message, &field, *text)
                 : reflection.SetString(message, &field, *text);
        return absl::OkStatus();
      case FieldDescriptor::CPPTYPE_BOOL: {
        bool value = false;
        if (!ParseBool(*text, &value)) return wrong_value();
        repeated ? reflection.AddBool(message, &field, value)
                 : reflection.SetBool(message, &field, value);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_INT32: {
        int32_t value = 0;
        if (!absl::SimpleAtoi(*text, &value)) return wrong_value();
        repeated ? reflection.AddInt32(message, &field, value)
                 : reflection.SetInt32(message, &field, value);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_INT64: {
        int64_t value = 0;
        if (!absl::SimpleAtoi(*text, &value)) return wrong_value();
        repeated ? reflection.AddInt64(message, &field, value)
                 : reflection.SetInt64(message, &field, value);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_UINT32: {
        uint32_t value = 0;
        if (!absl::SimpleAtoi(*text, &value)) return wrong_value();
        repeated ? reflection.AddUInt32(message, &field, value)
                 : reflection.SetUInt32(message, &field, value);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_UINT64: {
        uint64_t value = 0;
        if (!absl::SimpleAtoi(*text, &value)) return wrong_value();
        repeated ? reflection.AddUInt64(message, &field, value)
                 : reflection.SetUInt64(message, &field, value);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_DOUBLE: {
        double value = 0;
        if (!absl::SimpleAtod(*text, &value) || !std::isfinite(value)) return wrong_value();
        repeated ? reflection.AddDouble(message, &field, value)
                 : reflection.SetDouble(message, &field, value);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_ENUM: {
        const EnumValueDescriptor* value = FindEnumValue(*field.enum_type(), *text);
        if (value == nullptr) return wrong_value();
        repeated ? reflection.AddEnum(message, &field, value)
                 : reflection.SetEnum(message, &field, value);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_FLOAT:
      case FieldDescriptor::CPPTYPE_MESSAGE:
        break;
    }
    return absl::UnimplementedError(absl::StrCat(
        path, ": the YAML reader does not support the type of field ", field.full_name()));
  }

  const EnvLookup& env_;
};

// A numeric field value, for comparison with bounds. long double holds every
// int64, uint64 and double exactly.
struct NumericValue {
  long double value;
  std::string text;
};

template <typename Integer>
std::string FormatNumber(Integer value) {
  return absl::StrCat(value);
}

// The shortest text that reads back as `value` (StrCat rounds to 6 digits).
std::string FormatNumber(double value) {
  char buffer[32];
  const std::to_chars_result result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

std::optional<NumericValue> GetNumericValue(const Message& message, const FieldDescriptor& field,
                                            int index) {
  const Reflection& reflection = *message.GetReflection();
  const bool repeated = field.is_repeated();
  auto numeric = [](auto value) {
    return NumericValue{static_cast<long double>(value), FormatNumber(value)};
  };
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return numeric(repeated ? reflection.GetRepeatedInt32(message, &field, index)
                              : reflection.GetInt32(message, &field));
    case FieldDescriptor::CPPTYPE_INT64:
      return numeric(repeated ? reflection.GetRepeatedInt64(message, &field, index)
                              : reflection.GetInt64(message, &field));
    case FieldDescriptor::CPPTYPE_UINT32:
      return numeric(repeated ? reflection.GetRepeatedUInt32(message, &field, index)
                              : reflection.GetUInt32(message, &field));
    case FieldDescriptor::CPPTYPE_UINT64:
      return numeric(repeated ? reflection.GetRepeatedUInt64(message, &field, index)
                              : reflection.GetUInt64(message, &field));
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return numeric(repeated ? reflection.GetRepeatedDouble(message, &field, index)
                              : reflection.GetDouble(message, &field));
    default:
      return std::nullopt;
  }
}

absl::Status CheckValueBounds(const NumericValue& value, const v1::Bounds& bounds,
                              const std::string& path) {
  if (value.value >= static_cast<long double>(bounds.min()) &&
      value.value <= static_cast<long double>(bounds.max())) {
    return absl::OkStatus();
  }
  return PathError(path, "must be between ", bounds.min(), " and ", bounds.max(), ", got ",
                   value.text);
}

absl::Status CheckMessageBounds(const Message& message, const std::string& path) {
  const Reflection& reflection = *message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection.ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    // Map entries carry no bounds (and reflection on maps is avoided; see
    // AppendMapEntry).
    if (field->is_map()) continue;
    const std::string field_path = FieldPath(path, field->name());
    const int count = field->is_repeated() ? reflection.FieldSize(message, field) : 1;
    for (int i = 0; i < count; ++i) {
      const std::string element_path = field->is_repeated() ? IndexPath(field_path, i) : field_path;
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        SB_RETURN_IF_ERROR(CheckMessageBounds(field->is_repeated()
                                                  ? reflection.GetRepeatedMessage(message, field, i)
                                                  : reflection.GetMessage(message, field),
                                              element_path));
        continue;
      }
      if (!field->options().HasExtension(v1::bounds)) continue;
      std::optional<NumericValue> value = GetNumericValue(message, *field, i);
      if (!value.has_value()) continue;
      SB_RETURN_IF_ERROR(
          CheckValueBounds(*value, field->options().GetExtension(v1::bounds), element_path));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string YamlEnumName(const EnumValueDescriptor& value) {
  // The enum's name in UPPER_SNAKE_CASE: "Overflow" -> "OVERFLOW_".
  std::string prefix;
  for (char c : value.type()->name()) {
    if (absl::ascii_isupper(static_cast<unsigned char>(c)) && !prefix.empty()) prefix += '_';
    prefix += absl::ascii_toupper(static_cast<unsigned char>(c));
  }
  prefix += '_';
  absl::string_view name = value.name();
  absl::ConsumePrefix(&name, prefix);
  return absl::AsciiStrToLower(name);
}

namespace {

// Parses documents and keeps nothing: what counts them.
class DocumentCounter : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// Whether `yaml` holds more than one document. Stops at the second: yaml-cpp
// 0.7 reads a stray top-level ',' as an empty document without consuming
// it, so YAML::LoadAll never returns on ",".
bool HoldsSeveralDocuments(const std::string& yaml) {
  std::istringstream stream(yaml);
  YAML::Parser parser(stream);
  DocumentCounter counter;
  return parser.HandleNextDocument(counter) && parser.HandleNextDocument(counter);
}

}  // namespace

absl::Status ReadYamlIntoMessage(absl::string_view yaml, const EnvLookup& env,
                                 google::protobuf::Message* message) {
  // yaml-cpp reports errors by throwing; they stop here.
  try {
    const std::string text(yaml);
    const YAML::Node root = YAML::Load(text);
    if (HoldsSeveralDocuments(text)) {
      return absl::InvalidArgumentError(
          "YAML: the config holds more than one document (separated by ---, or after a stray "
          "',' at the top level); Switchboard reads exactly one");
    }
    if (root.IsNull()) return absl::OkStatus();
    return YamlMessageReader(env).ReadMessage(root, "", message);
  } catch (const YAML::Exception& error) {
    if (error.mark.is_null()) return absl::InvalidArgumentError(absl::StrCat("YAML: ", error.msg));
    return absl::InvalidArgumentError(absl::StrCat("YAML line ", error.mark.line + 1, ", column ",
                                                   error.mark.column + 1, ": ", error.msg));
  }
}

absl::Status CheckFieldBounds(const google::protobuf::Message& message) {
  return CheckMessageBounds(message, "");
}

}  // namespace switchboard::config
