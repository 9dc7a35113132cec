#include "server/convert/event_converter.h"

#include <google/protobuf/reflection.h>

#include <boost/json.hpp>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "server/convert/event_type.h"
#include "server/convert/json_message.h"
#include "server/convert/strict_json.h"
#include "staffify/fanout/v1/events.pb.h"

namespace fanout {
namespace {

using staffify::fanout::v1::Event;

// The earliest instant a google.protobuf.Timestamp can hold, and the first
// one after the latest (9999-12-31T23:59:59.999999999Z).
const absl::Time kMinTimestamp = absl::FromUnixSeconds(-62135596800);
const absl::Time kEndTimestamp = absl::FromUnixSeconds(253402300800);

absl::Status Invalid(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

absl::StatusOr<std::string> RequireString(const boost::json::object& envelope,
                                          absl::string_view key,
                                          size_t max_bytes) {
  const boost::json::value* value =
      envelope.if_contains(boost::json::string_view(key.data(), key.size()));
  if (value == nullptr) {
    return Invalid(absl::StrCat("missing \"", key, "\""));
  }
  if (!value->is_string()) {
    return Invalid(absl::StrCat("\"", key, "\" must be a string"));
  }
  const boost::json::string& text = value->get_string();
  if (text.empty()) {
    return Invalid(absl::StrCat("\"", key, "\" must not be empty"));
  }
  if (text.size() > max_bytes) {
    return Invalid(
        absl::StrCat("\"", key, "\" is longer than ", max_bytes, " bytes"));
  }
  return std::string(text);
}

}  // namespace

absl::Time TimeFromTimestamp(const google::protobuf::Timestamp& timestamp) {
  return absl::FromUnixSeconds(timestamp.seconds()) +
         absl::Nanoseconds(timestamp.nanos());
}

void SetTimestamp(absl::Time time, google::protobuf::Timestamp* out) {
  const absl::Duration since_epoch = time - absl::UnixEpoch();
  const int64_t seconds =
      absl::ToInt64Seconds(absl::Floor(since_epoch, absl::Seconds(1)));
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(since_epoch - absl::Seconds(seconds))));
}

EventConverter::EventConverter(EventConverterOptions options)
    : options_(options) {
  const google::protobuf::OneofDescriptor* payload =
      Event::descriptor()->FindOneofByName("payload");
  for (int i = 0; i < payload->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* field = payload->field(i);
    if (field->message_type() == nullptr) continue;
    const std::string& type = field->message_type()->options().GetExtension(
        staffify::fanout::v1::event_type);
    if (!type.empty()) payload_fields_.emplace(type, field);
  }
}

const google::protobuf::FieldDescriptor* EventConverter::PayloadField(
    absl::string_view event_type) const {
  auto it = payload_fields_.find(std::string(event_type));
  return it == payload_fields_.end() ? nullptr : it->second;
}

void EventConverter::LimitProblems(
    google::protobuf::RepeatedPtrField<staffify::fanout::v1::ConversionProblem>*
        problems) const {
  for (auto& problem : *problems) {
    std::string* field = problem.mutable_field();
    if (field->size() <= options_.max_problem_path_bytes) continue;
    // Cut on a character boundary: protobuf strings must stay UTF-8.
    size_t cut = options_.max_problem_path_bytes;
    while (cut > 0 && ((*field)[cut] & 0xC0) == 0x80) --cut;
    field->resize(cut);
    field->append("...");
  }
  const size_t count = problems->size();
  if (count <= options_.max_conversion_problems) return;
  const size_t kept = options_.max_conversion_problems > 0
                          ? options_.max_conversion_problems - 1
                          : 0;
  problems->DeleteSubrange(kept, count - kept);
  auto* summary = problems->Add();
  summary->set_field("data");
  summary->set_reason(absl::StrCat(count - kept, " more problems not listed"));
}

void EventConverter::LimitSize(Event* event) const {
  if (event->ByteSizeLong() <= options_.max_event_bytes) return;
  // A small body can expand a lot (a long array of 0s becomes as many
  // Struct values): keep the event deliverable and the body exact.
  const google::protobuf::FieldDescriptor* payload =
      event->GetReflection()->GetOneofFieldDescriptor(
          *event, Event::descriptor()->FindOneofByName("payload"));
  if (payload != nullptr) {
    event->GetReflection()->MutableMessage(event, payload)->Clear();
  }
  event->clear_conversion_problems();
  auto* problem = event->add_conversion_problems();
  problem->set_field("data");
  problem->set_reason(absl::StrCat("converted event would exceed ",
                                   options_.max_event_bytes,
                                   " bytes; data kept only in rawBody"));
}

absl::StatusOr<Event> EventConverter::Convert(absl::string_view body) const {
  // The parsed document lives only while this call converts it: it is
  // allocated from a buffer on the stack (then from blocks freed together),
  // not node by node from the heap.
  unsigned char value_buffer[4096];
  boost::json::monotonic_resource resource(value_buffer, sizeof value_buffer);
  absl::StatusOr<boost::json::value> parsed =
      ParseStrictJson(body, options_.max_json_depth, &resource);
  if (!parsed.ok()) return parsed.status();
  const boost::json::value& root = *parsed;
  if (!root.is_object()) {
    return Invalid("body must be a JSON object");
  }
  const boost::json::object& envelope = root.get_object();

  Event event;
  absl::StatusOr<std::string> id =
      RequireString(envelope, "id", options_.max_id_bytes);
  if (!id.ok()) return id.status();
  absl::StatusOr<std::string> type =
      RequireString(envelope, "event", options_.max_event_type_bytes);
  if (!type.ok()) return type.status();
  if (!IsPrintable(*id)) {
    return Invalid("\"id\" must not contain control characters");
  }
  if (!IsEventType(*type)) {
    return Invalid(
        "\"event\" is not an event type: expected segments joined by '.', "
        "without whitespace, control characters or '*'");
  }
  absl::StatusOr<std::string> timestamp =
      RequireString(envelope, "timestamp", 64);
  if (!timestamp.ok()) return timestamp.status();

  absl::Time when;
  std::string parse_error;
  if (!absl::ParseTime(absl::RFC3339_full, *timestamp, &when, &parse_error) ||
      when < kMinTimestamp || when >= kEndTimestamp) {
    return Invalid(absl::StrCat("\"timestamp\" is not an RFC 3339 time: \"",
                                *timestamp, "\""));
  }

  const boost::json::value* data = envelope.if_contains("data");
  if (data == nullptr) return Invalid("missing \"data\"");
  if (!data->is_object()) return Invalid("\"data\" must be a JSON object");

  event.set_id(*std::move(id));
  event.set_event_type(*std::move(type));
  SetTimestamp(when, event.mutable_timestamp());

  const google::protobuf::FieldDescriptor* field =
      PayloadField(event.event_type());
  if (field != nullptr) {
    google::protobuf::Message* payload =
        event.GetReflection()->MutableMessage(&event, field);
    JsonObjectToMessage(data->get_object(), "data", payload,
                        event.mutable_conversion_problems());
  } else {
    // Types this version does not model still carry their data.
    JsonObjectToStruct(data->get_object(), "data", event.mutable_untyped(),
                       event.mutable_conversion_problems());
  }

  event.set_raw_body(std::string(body));
  // Problems first: cutting a long path appends "...", which can grow the
  // event past max_event_bytes after LimitSize measured it.
  LimitProblems(event.mutable_conversion_problems());
  LimitSize(&event);
  return event;
}

}  // namespace fanout
