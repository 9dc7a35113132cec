// libFuzzer target for the first step of the ingest path: arbitrary bytes,
// taken as a delivery body, through EventConverter::Convert, and every
// accepted Event through the two ways it leaves the service (protobuf on
// the gRPC stream, JSON from EventToJson).
//
// A broken promise of the converter aborts with the invariant's name, which
// libFuzzer records as a crash; ASan and UBSan catch memory errors and
// undefined behaviour, in Boost.JSON too (it is compiled in from source).

#include <google/protobuf/util/field_comparator.h>
#include <google/protobuf/util/message_differencer.h>

#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/convert/event_converter.h"
#include "server/convert/event_json.h"
#include "server/convert/event_type.h"
#include "staffify/fanout/v1/fanout.pb.h"

namespace fanout {
namespace {

using google::protobuf::util::DefaultFieldComparator;
using google::protobuf::util::MessageDifferencer;
using staffify::fanout::v1::Event;

// The range of google.protobuf.Timestamp: years 1 to 9999.
constexpr int64_t kMinTimestampSeconds = -62135596800;
constexpr int64_t kEndTimestampSeconds = 253402300800;

// Aborts, naming `invariant`, unless `holds`.
void Check(bool holds, const char* invariant) {
  if (holds) return;
  std::fprintf(stderr, "fuzz_convert: invariant broken: %s\n", invariant);
  std::abort();
}

// Limits small enough that fuzzed bodies reach them: many problems, long
// paths, payloads that do not fit.
EventConverterOptions TightOptions() {
  EventConverterOptions options;
  options.max_json_depth = 6;
  options.max_conversion_problems = 3;
  options.max_problem_path_bytes = 12;
  options.max_event_bytes = 1024;
  return options;
}

const google::protobuf::Message* Payload(const Event& event) {
  const google::protobuf::FieldDescriptor* field =
      event.GetReflection()->GetOneofFieldDescriptor(
          event, Event::descriptor()->FindOneofByName("payload"));
  if (field == nullptr) return nullptr;
  return &event.GetReflection()->GetMessage(event, field);
}

// What Convert promises of an event it returns for `body`.
void CheckEvent(const Event& event, absl::string_view body,
                const EventConverter& converter,
                const EventConverterOptions& options) {
  Check(event.raw_body() == body, "raw_body is the body as received");
  Check(event.sequence() == 0 && !event.has_received_at(),
        "sequence and received_at are left for the caller");

  Check(!event.id().empty() && event.id().size() <= options.max_id_bytes &&
            IsPrintable(event.id()),
        "id is non-empty, within max_id_bytes and printable");
  Check(IsEventType(event.event_type()) &&
            event.event_type().size() <= options.max_event_type_bytes,
        "event type satisfies IsEventType and max_event_type_bytes");

  const google::protobuf::Timestamp& timestamp = event.timestamp();
  Check(timestamp.seconds() >= kMinTimestampSeconds &&
            timestamp.seconds() < kEndTimestampSeconds &&
            timestamp.nanos() >= 0 && timestamp.nanos() < 1000000000,
        "timestamp is within the Timestamp range");

  const google::protobuf::FieldDescriptor* expected =
      converter.PayloadField(event.event_type());
  Check(expected != nullptr ? event.payload_case() == expected->number()
                            : event.has_untyped(),
        "the payload member matches the event type");

  Check(static_cast<size_t>(event.conversion_problems_size()) <=
            options.max_conversion_problems + 1,
        "conversion problems are at most max_conversion_problems + 1");
  for (const auto& problem : event.conversion_problems()) {
    Check(problem.field().size() <= options.max_problem_path_bytes + 3,
          "problem paths are cut to max_problem_path_bytes plus \"...\"");
    Check(!problem.reason().empty(), "every problem has a reason");
  }

  const google::protobuf::Message* payload = Payload(event);
  Check(payload == nullptr || payload->ByteSizeLong() == 0 ||
            event.ByteSizeLong() <= options.max_event_bytes,
        "an event over max_event_bytes keeps no typed payload");

  // What subscribers receive: the serialised event must parse back, which
  // proto3 refuses for strings that are not UTF-8.
  std::string wire;
  Check(event.SerializeToString(&wire), "the event serialises");
  Event parsed;
  Check(parsed.ParseFromString(wire), "the serialised event parses back");
  Check(MessageDifferencer::Equals(event, parsed),
        "the parsed event equals the original");

  // What fanout-subscribe prints must be JSON that reads back.
  boost::json::error_code ec;
  const boost::json::value printed = boost::json::parse(
      boost::json::serialize(EventToJson(event, /*include_raw_body=*/true)),
      ec);
  Check(!ec && printed.is_object(), "EventToJson prints a JSON object");
  const boost::json::object& object = printed.get_object();
  const boost::json::value* raw = object.if_contains("rawBody");
  Check(raw != nullptr && raw->is_string() &&
            raw->get_string() ==
                boost::json::string_view(body.data(), body.size()),
        "EventToJson's rawBody is the body");
  const boost::json::value* id = object.if_contains("id");
  Check(id != nullptr && id->is_string() && id->get_string() == event.id(),
        "EventToJson's id is the event's");
}

// Builds a delivery from what EventToJson printed for `event` and converts
// it again: the typed payload must come back the same and without
// problems, since the printed data holds only what converted.
void CheckJsonRoundTrip(const Event& event, const EventConverter& converter) {
  boost::json::object printed = EventToJson(event);
  boost::json::object delivery;
  delivery["id"] = printed["id"];
  delivery["event"] = printed["event"];
  delivery["timestamp"] = printed["timestamp"];
  delivery["data"] = printed["data"];

  absl::StatusOr<Event> again =
      converter.Convert(boost::json::serialize(delivery));
  Check(again.ok(), "a delivery rebuilt from EventToJson converts");
  Check(again->id() == event.id() && again->event_type() == event.event_type(),
        "the rebuilt delivery keeps id and event type");
  Check(MessageDifferencer::Equals(again->timestamp(), event.timestamp()),
        "the printed timestamp reads back as the same instant");
  // The one exception: a Struct number of magnitude 2^53 or more prints
  // as a double, and reading a double that large back is noted as possibly
  // rounded.
  for (const auto& problem : again->conversion_problems()) {
    Check(absl::StartsWith(problem.reason(), "number at or beyond 2^53"),
          "printed data converts without problems");
  }

  Check(Payload(*again) != nullptr, "the rebuilt delivery has a payload");

  // Boost.JSON 1.81 may read a printed double back a unit in the last
  // place away (9.007999223372037E27 is one), so doubles are compared
  // within a relative 1e-14 here; the protobuf round trip above is exact.
  DefaultFieldComparator comparator;
  comparator.set_float_comparison(DefaultFieldComparator::APPROXIMATE);
  comparator.SetDefaultFractionAndMargin(1e-14, 0.0);
  MessageDifferencer differencer;
  differencer.set_field_comparator(&comparator);
  Check(differencer.Compare(*Payload(*again), *Payload(event)),
        "the payload survives printing and converting again");
}

struct Converters {
  EventConverterOptions tight_options = TightOptions();
  EventConverter standard;
  EventConverter tight{tight_options};
};

}  // namespace
}  // namespace fanout

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using fanout::Check;
  static const fanout::Converters* const converters = new fanout::Converters;
  const absl::string_view body(reinterpret_cast<const char*>(data), size);

  const absl::StatusOr<staffify::fanout::v1::Event> event =
      converters->standard.Convert(body);
  if (event.ok()) {
    fanout::CheckEvent(*event, body, converters->standard,
                       fanout::EventConverterOptions());
    fanout::CheckJsonRoundTrip(*event, converters->standard);
  } else {
    Check(absl::IsInvalidArgument(event.status()),
          "a refused body is InvalidArgument");
  }

  const absl::StatusOr<staffify::fanout::v1::Event> tight =
      converters->tight.Convert(body);
  if (tight.ok()) {
    fanout::CheckEvent(*tight, body, converters->tight,
                       converters->tight_options);
    // Tighter limits refuse more, never less.
    Check(event.ok() && tight->id() == event->id() &&
              tight->event_type() == event->event_type(),
          "a body the tight converter accepts, the standard one accepts");
  } else {
    Check(absl::IsInvalidArgument(tight.status()),
          "a refused body is InvalidArgument");
  }
  return 0;
}
