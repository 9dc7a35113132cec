// Generic conversion between JSON objects and protobuf messages, driven by
// the message descriptors and each field's json_name.
//
// This is the only place that knows how a JSON value maps onto a protobuf
// field; the per-event-type messages in proto/ need no code of their own.

#ifndef FANOUT_SERVER_CONVERT_JSON_MESSAGE_H_
#define FANOUT_SERVER_CONVERT_JSON_MESSAGE_H_

#include <google/protobuf/message.h>
#include <google/protobuf/struct.pb.h>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <string>

#include "absl/strings/string_view.h"
#include "staffify/fanout/v1/fanout.pb.h"

namespace fanout {

// Fills `message` from `object`, matching keys to fields by json_name.
//
// Never fails as a whole: every key whose value does not fit its field (a
// string for an integer, a null, a fraction for an integer, a key no field
// models) is skipped and recorded in `problems` with its JSON path, formed
// as `path` + "." + key (and "[i]" for list elements). Fields already set in
// `message` are overwritten or, for lists, appended to.
//
// Integer fields take JSON integers in range, exactly up to 64 bits, and
// integral numbers written with a fraction or exponent (85.0, 1e3) of
// magnitude below 2^53, which a double holds exactly; larger ones may have
// been rounded on parsing, and are problems. Floating-point fields take any
// JSON number; bool fields take true/false; string fields take strings; enum
// fields take the value's name or number; message fields take objects.
void JsonObjectToMessage(
    const boost::json::object& object, absl::string_view path,
    google::protobuf::Message* message,
    google::protobuf::RepeatedPtrField<staffify::fanout::v1::ConversionProblem>*
        problems);

// Copies `object`, found at JSON path `path`, into `out`. Numbers become
// doubles (the Struct rule); those that may not survive that are recorded
// in `problems`: out of range, integers beyond 2^53, and numbers of
// magnitude 2^53 or more written with a fraction or exponent or beyond 64
// bits (the parser already rounded those).
void JsonObjectToStruct(
    const boost::json::object& object, absl::string_view path,
    google::protobuf::Struct* out,
    google::protobuf::RepeatedPtrField<staffify::fanout::v1::ConversionProblem>*
        problems);

// Returns `message` as a JSON object keyed by json_name. Only fields that
// are present are written (for proto3 fields without presence: non-default
// ones). 64-bit integers are written as JSON numbers, not strings, so the
// result reads like the JSON it was converted from.
boost::json::object MessageToJsonObject(
    const google::protobuf::Message& message);

// As MessageToJsonObject, except that the well-known types print as their
// JSON forms: Timestamp as an RFC 3339 string, Struct as an object.
boost::json::value MessageToJsonValue(const google::protobuf::Message& message);

}  // namespace fanout

#endif  // FANOUT_SERVER_CONVERT_JSON_MESSAGE_H_
