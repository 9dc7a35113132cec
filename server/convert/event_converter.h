// Turns the body of a Staffify webhook delivery into an Event envelope with
// its typed payload.
//
// First step of the ingest path: HTTP hands the raw body here; what comes
// out is ready to be sequenced and fanned out. The mapping from event type to
// payload message comes from the `event_type` option on the messages in
// proto/, so a new event type needs a new message and nothing else.

#ifndef FANOUT_SERVER_CONVERT_EVENT_CONVERTER_H_
#define FANOUT_SERVER_CONVERT_EVENT_CONVERTER_H_

#include <google/protobuf/descriptor.h>
#include <google/protobuf/timestamp.pb.h>

#include <cstddef>
#include <string>
#include <unordered_map>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "staffify/fanout/v1/fanout.pb.h"

namespace fanout {

// The largest max_json_depth allowed. Untyped data is sent as a
// google.protobuf.Struct, up to three message levels per JSON level, and
// subscribers parse with protobuf's default limit of 100 levels; deeper
// documents would be stored but could not be read back by any subscriber.
inline constexpr size_t kMaxJsonDepthLimit = 32;

struct EventConverterOptions {
  // Deepest nesting of JSON arrays and objects accepted in a body.
  size_t max_json_depth = 32;
  // Longest delivery id and event type accepted, in bytes.
  size_t max_id_bytes = 256;
  size_t max_event_type_bytes = 256;
  // Most conversion problems listed on one event; the rest are summed up in
  // one last entry. Paths longer than max_problem_path_bytes are cut. Both
  // keep an event at most about twice the size of its body.
  size_t max_conversion_problems = 64;
  size_t max_problem_path_bytes = 256;
  // Largest event, serialised, that conversion may produce: one whose typed
  // payload would make it larger keeps only raw_body and says so. The
  // default fits gRPC's default 4 MiB receive limit with room to spare.
  size_t max_event_bytes = (4 << 20) - (64 << 10);
};

// Stores `time` in `out`. REQUIRES: `time` is within the Timestamp range
// (years 1 to 9999).
void SetTimestamp(absl::Time time, google::protobuf::Timestamp* out);

// The time `timestamp` holds.
absl::Time TimeFromTimestamp(const google::protobuf::Timestamp& timestamp);

class EventConverter {
 public:
  explicit EventConverter(EventConverterOptions options = {});

  EventConverter(const EventConverter&) = delete;
  EventConverter& operator=(const EventConverter&) = delete;

  // Parses `body` and returns the Event it describes, with id, event_type,
  // timestamp, payload, conversion_problems and raw_body set; sequence and
  // received_at are left for the caller.
  //
  // Returns InvalidArgument, with a message naming the problem, when the body
  // is not strict JSON (see strict_json.h: valid UTF-8, nested at most
  // max_json_depth deep, no key repeated within an object), is not an
  // object, or lacks a usable `id` (non-empty string
  // without control characters), `event` (an event type, see event_type.h),
  // `timestamp` (RFC 3339 string) or `data` (object). Problems inside `data`
  // never fail the call; they are listed in the Event's conversion_problems.
  //
  // Thread-safe.
  absl::StatusOr<staffify::fanout::v1::Event> Convert(
      absl::string_view body) const;

  // Returns the oneof member of Event that carries `event_type`'s payload,
  // or nullptr when the type is not modelled (its payload is `untyped`).
  const google::protobuf::FieldDescriptor* PayloadField(
      absl::string_view event_type) const;

 private:
  // Applies max_event_bytes.
  void LimitSize(staffify::fanout::v1::Event* event) const;
  // Applies max_conversion_problems and max_problem_path_bytes.
  void LimitProblems(google::protobuf::RepeatedPtrField<
                     staffify::fanout::v1::ConversionProblem>* problems) const;

  const EventConverterOptions options_;
  // Event type -> member of Event.payload; built once from descriptors.
  std::unordered_map<std::string, const google::protobuf::FieldDescriptor*>
      payload_fields_;
};

}  // namespace fanout

#endif  // FANOUT_SERVER_CONVERT_EVENT_CONVERTER_H_
