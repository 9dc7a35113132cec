#include "server/convert/json_message.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/timestamp.pb.h>
#include <google/protobuf/util/time_util.h>

#include <boost/json.hpp>
#include <cmath>
#include <cstdint>
#include <limits>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace fanout {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using Problems =
    google::protobuf::RepeatedPtrField<staffify::fanout::v1::ConversionProblem>;

// Payload messages have a handful of fields, so a scan beats a map here.
const FieldDescriptor* FindFieldByJsonName(const Descriptor* descriptor,
                                           const std::string& json_name) {
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    if (field->json_name() == json_name) return field;
  }
  return nullptr;
}

void AddProblem(absl::string_view path, absl::string_view reason,
                Problems* problems) {
  auto* problem = problems->Add();
  problem->set_field(std::string(path));
  problem->set_reason(std::string(reason));
}

const char* KindName(const boost::json::value& value) {
  switch (value.kind()) {
    case boost::json::kind::null:
      return "null";
    case boost::json::kind::bool_:
      return "a boolean";
    case boost::json::kind::int64:
    case boost::json::kind::uint64:
      return "an integer";
    case boost::json::kind::double_:
      return "a number with a fraction";
    case boost::json::kind::string:
      return "a string";
    case boost::json::kind::array:
      return "an array";
    case boost::json::kind::object:
      return "an object";
  }
  return "an unknown value";
}

std::string Expected(absl::string_view what, const boost::json::value& value) {
  return absl::StrCat("expected ", what, ", got ", KindName(value));
}

// Doubles hold every integer of smaller magnitude exactly, no larger one.
constexpr double kDoubleExactLimit = 0x1p53;

constexpr char kInexactIntegerReason[] =
    "integer written with a fraction or exponent at or beyond 2^53 may be "
    "rounded; write it without one";

// Reads `value` as an integer within [min, max]. Integral doubles are taken
// because some JSON writers print every number with a fraction (85.0).
bool ToInteger(const boost::json::value& value, long double min,
               long double max, long double* out, std::string* reason) {
  long double v = 0;
  switch (value.kind()) {
    case boost::json::kind::int64:
      v = static_cast<long double>(value.get_int64());
      break;
    case boost::json::kind::uint64:
      v = static_cast<long double>(value.get_uint64());
      break;
    case boost::json::kind::double_: {
      double d = value.get_double();
      if (!std::isfinite(d)) {
        *reason = "number out of range";
        return false;
      }
      if (std::trunc(d) != d) {
        *reason = Expected("an integer", value);
        return false;
      }
      // boost::json parses an integer below INT64_MIN as a double, and one
      // just below rounds to exactly -2^63 (INT64_MIN): such a double cannot
      // be told from an overflow, so it is refused rather than taken.
      if (d <= -0x1p63 || d < min || d > max) {
        *reason = "integer out of range for this field";
        return false;
      }
      // From 2^53 on, a double no longer holds every integer: what was
      // written (9007199254740993.0) may have been rounded on parsing.
      // Integers written without a fraction or exponent are parsed exactly.
      if (std::fabs(d) >= kDoubleExactLimit) {
        *reason = kInexactIntegerReason;
        return false;
      }
      v = d;
      break;
    }
    default:
      *reason = Expected("an integer", value);
      return false;
  }
  if (v < min || v > max) {
    *reason = "integer out of range for this field";
    return false;
  }
  *out = v;
  return true;
}

bool ToDouble(const boost::json::value& value, double* out) {
  switch (value.kind()) {
    case boost::json::kind::int64:
      *out = static_cast<double>(value.get_int64());
      return true;
    case boost::json::kind::uint64:
      *out = static_cast<double>(value.get_uint64());
      return true;
    case boost::json::kind::double_:
      *out = value.get_double();
      return true;
    default:
      return false;
  }
}

void JsonToValue(const boost::json::value& json, absl::string_view path,
                 google::protobuf::Value* value, Problems* problems) {
  // Integers a double holds exactly: beyond them a Struct number is
  // rounded, and says so.
  constexpr int64_t kExactLimit = int64_t{1} << 53;
  double number = 0;
  switch (json.kind()) {
    case boost::json::kind::null:
      value->set_null_value(google::protobuf::NULL_VALUE);
      break;
    case boost::json::kind::bool_:
      value->set_bool_value(json.get_bool());
      break;
    case boost::json::kind::int64:
    case boost::json::kind::uint64:
    case boost::json::kind::double_:
      ToDouble(json, &number);
      if (!std::isfinite(number)) {
        // 1e400 parses as infinity, which JSON cannot print back.
        value->set_null_value(google::protobuf::NULL_VALUE);
        AddProblem(path, "number out of range; kept in rawBody", problems);
        break;
      }
      value->set_number_value(number);
      if ((json.is_int64() && (json.get_int64() > kExactLimit ||
                               json.get_int64() < -kExactLimit)) ||
          (json.is_uint64() &&
           json.get_uint64() > static_cast<uint64_t>(kExactLimit))) {
        AddProblem(path,
                   "integer beyond 2^53 is rounded here; exact in rawBody",
                   problems);
      } else if (json.is_double() && std::fabs(number) >= kDoubleExactLimit) {
        // An integer beyond 64 bits arrives here as a double, and so does
        // any number written with a fraction or exponent; from 2^53 on
        // either may already be rounded.
        AddProblem(path,
                   "number at or beyond 2^53 may be rounded here; exact in "
                   "rawBody",
                   problems);
      }
      break;
    case boost::json::kind::string:
      value->set_string_value(std::string(json.get_string()));
      break;
    case boost::json::kind::array: {
      auto* list = value->mutable_list_value();
      const boost::json::array& array = json.get_array();
      for (size_t i = 0; i < array.size(); ++i) {
        JsonToValue(array[i], absl::StrCat(path, "[", i, "]"),
                    list->add_values(), problems);
      }
      break;
    }
    case boost::json::kind::object:
      JsonObjectToStruct(json.get_object(), path, value->mutable_struct_value(),
                         problems);
      break;
  }
}

// Sets one singular field, or appends one element to a repeated field, from
// `value`. Returns false with `reason` set when the value does not fit.
bool SetField(const boost::json::value& value, const FieldDescriptor* field,
              absl::string_view path, Message* message, Problems* problems,
              std::string* reason) {
  const Reflection* reflection = message->GetReflection();
  const bool repeated = field->is_repeated();
  long double integer = 0;

  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      if (!ToInteger(value, std::numeric_limits<int32_t>::min(),
                     std::numeric_limits<int32_t>::max(), &integer, reason)) {
        return false;
      }
      repeated ? reflection->AddInt32(message, field, integer)
               : reflection->SetInt32(message, field, integer);
      return true;
    case FieldDescriptor::CPPTYPE_INT64:
      if (!ToInteger(value, std::numeric_limits<int64_t>::min(),
                     std::numeric_limits<int64_t>::max(), &integer, reason)) {
        return false;
      }
      repeated ? reflection->AddInt64(message, field, integer)
               : reflection->SetInt64(message, field, integer);
      return true;
    case FieldDescriptor::CPPTYPE_UINT32:
      if (!ToInteger(value, 0, std::numeric_limits<uint32_t>::max(), &integer,
                     reason)) {
        return false;
      }
      repeated ? reflection->AddUInt32(message, field, integer)
               : reflection->SetUInt32(message, field, integer);
      return true;
    case FieldDescriptor::CPPTYPE_UINT64:
      if (!ToInteger(value, 0, std::numeric_limits<uint64_t>::max(), &integer,
                     reason)) {
        return false;
      }
      repeated ? reflection->AddUInt64(message, field, integer)
               : reflection->SetUInt64(message, field, integer);
      return true;
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: {
      double number = 0;
      if (!ToDouble(value, &number)) {
        *reason = Expected("a number", value);
        return false;
      }
      // 1e400 parses as infinity, which JSON cannot print back.
      if (!std::isfinite(number)) {
        *reason = "number out of range";
        return false;
      }
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE) {
        repeated ? reflection->AddDouble(message, field, number)
                 : reflection->SetDouble(message, field, number);
      } else {
        repeated ? reflection->AddFloat(message, field, number)
                 : reflection->SetFloat(message, field, number);
      }
      return true;
    }
    case FieldDescriptor::CPPTYPE_BOOL:
      if (!value.is_bool()) {
        *reason = Expected("a boolean", value);
        return false;
      }
      repeated ? reflection->AddBool(message, field, value.get_bool())
               : reflection->SetBool(message, field, value.get_bool());
      return true;
    case FieldDescriptor::CPPTYPE_STRING:
      if (!value.is_string()) {
        *reason = Expected("a string", value);
        return false;
      }
      repeated ? reflection->AddString(message, field,
                                       std::string(value.get_string()))
               : reflection->SetString(message, field,
                                       std::string(value.get_string()));
      return true;
    case FieldDescriptor::CPPTYPE_ENUM: {
      const EnumValueDescriptor* enum_value = nullptr;
      if (value.is_string()) {
        enum_value = field->enum_type()->FindValueByName(
            std::string(value.get_string()));
      } else if (ToInteger(value, std::numeric_limits<int32_t>::min(),
                           std::numeric_limits<int32_t>::max(), &integer,
                           reason)) {
        enum_value = field->enum_type()->FindValueByNumber(integer);
      }
      if (enum_value == nullptr) {
        *reason = "not a value of " + field->enum_type()->full_name();
        return false;
      }
      repeated ? reflection->AddEnum(message, field, enum_value)
               : reflection->SetEnum(message, field, enum_value);
      return true;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      if (!value.is_object()) {
        *reason = Expected("an object", value);
        return false;
      }
      Message* child = repeated ? reflection->AddMessage(message, field)
                                : reflection->MutableMessage(message, field);
      if (field->message_type()->full_name() == "google.protobuf.Struct") {
        JsonObjectToStruct(value.get_object(), path,
                           static_cast<google::protobuf::Struct*>(child),
                           problems);
      } else {
        JsonObjectToMessage(value.get_object(), path, child, problems);
      }
      return true;
    }
  }
  *reason = "field type not supported";
  return false;
}

boost::json::value FieldValueToJson(const Message& message,
                                    const FieldDescriptor* field, int index);

boost::json::value StructValueToJson(const google::protobuf::Value& value) {
  switch (value.kind_case()) {
    case google::protobuf::Value::kBoolValue:
      return value.bool_value();
    case google::protobuf::Value::kNumberValue: {
      // Integral numbers print as integers (42, not 4.2E1), as they came.
      const double number = value.number_value();
      if (std::trunc(number) == number && std::fabs(number) <= 9.0e15) {
        return static_cast<int64_t>(number);
      }
      return number;
    }
    case google::protobuf::Value::kStringValue:
      return boost::json::string(value.string_value());
    case google::protobuf::Value::kListValue: {
      boost::json::array array;
      for (const auto& element : value.list_value().values()) {
        array.push_back(StructValueToJson(element));
      }
      return array;
    }
    case google::protobuf::Value::kStructValue: {
      boost::json::object object;
      for (const auto& [key, element] : value.struct_value().fields()) {
        object[key] = StructValueToJson(element);
      }
      return object;
    }
    default:
      return nullptr;
  }
}

}  // namespace

boost::json::value MessageToJsonValue(const Message& message) {
  const std::string& type = message.GetDescriptor()->full_name();
  if (type == "google.protobuf.Timestamp") {
    google::protobuf::Timestamp timestamp;
    timestamp.CopyFrom(message);
    return boost::json::string(
        google::protobuf::util::TimeUtil::ToString(timestamp));
  }
  if (type == "google.protobuf.Struct") {
    google::protobuf::Value value;
    value.mutable_struct_value()->CopyFrom(message);
    return StructValueToJson(value);
  }
  return MessageToJsonObject(message);
}

namespace {

boost::json::value FieldValueToJson(const Message& message,
                                    const FieldDescriptor* field, int index) {
  const Reflection* reflection = message.GetReflection();
  const bool repeated = field->is_repeated();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return repeated ? reflection->GetRepeatedInt32(message, field, index)
                      : reflection->GetInt32(message, field);
    case FieldDescriptor::CPPTYPE_INT64:
      return repeated ? reflection->GetRepeatedInt64(message, field, index)
                      : reflection->GetInt64(message, field);
    case FieldDescriptor::CPPTYPE_UINT32:
      return repeated ? reflection->GetRepeatedUInt32(message, field, index)
                      : reflection->GetUInt32(message, field);
    case FieldDescriptor::CPPTYPE_UINT64:
      return repeated ? reflection->GetRepeatedUInt64(message, field, index)
                      : reflection->GetUInt64(message, field);
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return repeated ? reflection->GetRepeatedDouble(message, field, index)
                      : reflection->GetDouble(message, field);
    case FieldDescriptor::CPPTYPE_FLOAT:
      return repeated ? reflection->GetRepeatedFloat(message, field, index)
                      : reflection->GetFloat(message, field);
    case FieldDescriptor::CPPTYPE_BOOL:
      return repeated ? reflection->GetRepeatedBool(message, field, index)
                      : reflection->GetBool(message, field);
    case FieldDescriptor::CPPTYPE_ENUM:
      return boost::json::string(
          (repeated ? reflection->GetRepeatedEnum(message, field, index)
                    : reflection->GetEnum(message, field))
              ->name());
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string text =
          repeated ? reflection->GetRepeatedString(message, field, index)
                   : reflection->GetString(message, field);
      if (field->type() == FieldDescriptor::TYPE_BYTES) {
        return boost::json::string(absl::Base64Escape(text));
      }
      return boost::json::string(text);
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return MessageToJsonValue(
          repeated ? reflection->GetRepeatedMessage(message, field, index)
                   : reflection->GetMessage(message, field));
  }
  return nullptr;
}

}  // namespace

void JsonObjectToStruct(const boost::json::object& object,
                        absl::string_view path, google::protobuf::Struct* out,
                        Problems* problems) {
  auto* fields = out->mutable_fields();
  for (const auto& entry : object) {
    const std::string key(entry.key());
    JsonToValue(entry.value(), absl::StrCat(path, ".", key), &(*fields)[key],
                problems);
  }
}

void JsonObjectToMessage(const boost::json::object& object,
                         absl::string_view path, Message* message,
                         Problems* problems) {
  const Descriptor* descriptor = message->GetDescriptor();
  for (const auto& entry : object) {
    const std::string key(entry.key());
    const std::string field_path = absl::StrCat(path, ".", key);
    const FieldDescriptor* field = FindFieldByJsonName(descriptor, key);
    if (field == nullptr) {
      AddProblem(field_path, "not modelled; kept in rawBody", problems);
      continue;
    }

    const boost::json::value& value = entry.value();
    std::string reason;
    if (!field->is_repeated()) {
      if (!SetField(value, field, field_path, message, problems, &reason)) {
        AddProblem(field_path, reason, problems);
      }
      continue;
    }
    if (!value.is_array()) {
      AddProblem(field_path, Expected("an array", value), problems);
      continue;
    }
    const boost::json::array& array = value.get_array();
    for (size_t i = 0; i < array.size(); ++i) {
      const std::string element_path = absl::StrCat(field_path, "[", i, "]");
      if (!SetField(array[i], field, element_path, message, problems,
                    &reason)) {
        AddProblem(element_path, reason, problems);
      }
    }
  }
}

boost::json::object MessageToJsonObject(const Message& message) {
  boost::json::object object;
  const Reflection* reflection = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    if (!field->is_repeated()) {
      object[field->json_name()] = FieldValueToJson(message, field, 0);
      continue;
    }
    boost::json::array array;
    const int size = reflection->FieldSize(message, field);
    for (int i = 0; i < size; ++i) {
      array.push_back(FieldValueToJson(message, field, i));
    }
    object[field->json_name()] = std::move(array);
  }
  return object;
}

}  // namespace fanout
