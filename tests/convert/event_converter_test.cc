// Tests for EventConverter: the 18 Staffify example deliveries field by
// field, the envelope errors that reject a delivery, and the data problems
// that only get recorded.

#include "server/convert/event_converter.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include <boost/json.hpp>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "staffify/fanout/v1/events.pb.h"
#include "staffify/fanout/v1/fanout.pb.h"
#include "tests/util/examples.h"

namespace fanout {
namespace {

using staffify::fanout::v1::Event;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;

// (field, reason) of each conversion problem, in order.
std::vector<std::pair<std::string, std::string>> Problems(const Event& event) {
  std::vector<std::pair<std::string, std::string>> problems;
  for (const auto& problem : event.conversion_problems()) {
    problems.emplace_back(problem.field(), problem.reason());
  }
  return problems;
}

// A delivery of `event_type` whose `data` is the JSON text `data`.
std::string Delivery(absl::string_view event_type, absl::string_view data) {
  return absl::StrCat(R"({"id": "wh_test-1", "event": ")", event_type,
                      R"(", "timestamp": "2026-03-01T12:00:00.000Z", )",
                      R"("data": )", data, "}");
}

// A delivery with the given envelope members (JSON text, without braces)
// followed by an empty `data`.
std::string Envelope(absl::string_view members) {
  return absl::StrCat("{", members, R"(, "data": {}})");
}

::testing::AssertionResult IsInvalidArgumentNaming(
    const absl::StatusOr<Event>& result, absl::string_view text) {
  if (result.ok()) {
    return ::testing::AssertionFailure() << "conversion succeeded";
  }
  const absl::Status& status = result.status();
  if (status.code() != absl::StatusCode::kInvalidArgument) {
    return ::testing::AssertionFailure() << "status is " << status;
  }
  if (!absl::StrContains(status.message(), text)) {
    return ::testing::AssertionFailure()
           << "message \"" << status.message() << "\" does not contain \""
           << text << "\"";
  }
  return ::testing::AssertionSuccess();
}

class EventConverterTest : public ::testing::Test {
 protected:
  // Reads examples/<event_type>.json into body_ and converts it into event_.
  void ConvertExample(absl::string_view event_type) {
    absl::StatusOr<std::string> body = testing::ReadExample(event_type);
    ASSERT_TRUE(body.ok()) << body.status();
    body_ = *std::move(body);
    absl::StatusOr<Event> event = converter_.Convert(body_);
    ASSERT_TRUE(event.ok()) << event.status();
    event_ = *std::move(event);
  }

  // Converts `body`, which must be accepted, into event_.
  void ConvertBody(absl::string_view body) {
    body_ = std::string(body);
    absl::StatusOr<Event> event = converter_.Convert(body_);
    ASSERT_TRUE(event.ok()) << event.status();
    event_ = *std::move(event);
  }

  // Checks what every accepted example has in common: its envelope, the
  // exact body, no problems, and nothing the hub assigns later.
  void ExpectEnvelope(absl::string_view id, absl::string_view event_type,
                      int64_t seconds) {
    EXPECT_EQ(event_.id(), id);
    EXPECT_EQ(event_.event_type(), event_type);
    EXPECT_EQ(event_.timestamp().seconds(), seconds);
    EXPECT_EQ(event_.timestamp().nanos(), 0);
    EXPECT_EQ(event_.raw_body(), body_);
    EXPECT_THAT(Problems(event_), IsEmpty());
    EXPECT_EQ(event_.sequence(), 0u);
    EXPECT_FALSE(event_.has_received_at());
    EXPECT_FALSE(event_.has_untyped());
  }

  EventConverter converter_;
  std::string body_;
  Event event_;
};

// ------------------------------------------------------ the 18 examples

TEST_F(EventConverterTest, TicketCreatedExampleConvertsEveryField) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("ticket.created"));
  ExpectEnvelope("wh_a1b2c3d4-e5f6-7890-abcd-ef1234567890", "ticket.created",
                 1771770600);
  ASSERT_EQ(event_.payload_case(), Event::kTicketCreated);
  const auto& p = event_.ticket_created();
  EXPECT_TRUE(p.has_ticket_id());
  EXPECT_EQ(p.ticket_id(), 42);
  EXPECT_TRUE(p.has_ticket_number());
  EXPECT_EQ(p.ticket_number(), "TKT-001234");
  EXPECT_TRUE(p.has_customer_name());
  EXPECT_EQ(p.customer_name(), "Jane Smith");
  EXPECT_TRUE(p.has_customer_email());
  EXPECT_EQ(p.customer_email(), "jane.smith@example.com");
  EXPECT_TRUE(p.has_customer_phone());
  EXPECT_EQ(p.customer_phone(), "+1234567890");
  EXPECT_TRUE(p.has_issue());
  EXPECT_EQ(p.issue(), "Unable to access my account after password reset");
  EXPECT_TRUE(p.has_priority());
  EXPECT_EQ(p.priority(), "medium");
  EXPECT_TRUE(p.has_source());
  EXPECT_EQ(p.source(), "call");
}

TEST_F(EventConverterTest, TicketNoteAddedExampleKeepsEscalatedFalse) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("ticket.note_added"));
  ExpectEnvelope("wh_d0e1f2a3-b4c5-6789-defa-890123456789", "ticket.note_added",
                 1772370000);
  ASSERT_EQ(event_.payload_case(), Event::kTicketNoteAdded);
  const auto& p = event_.ticket_note_added();
  EXPECT_TRUE(p.has_ticket_id());
  EXPECT_EQ(p.ticket_id(), 42);
  EXPECT_TRUE(p.has_ticket_number());
  EXPECT_EQ(p.ticket_number(), "TKT-001234");
  EXPECT_TRUE(p.has_note());
  EXPECT_EQ(p.note(),
            "Customer confirmed the issue started after the latest software "
            "update");
  // Staffify sent false: present, not merely defaulted.
  EXPECT_TRUE(p.has_escalated());
  EXPECT_FALSE(p.escalated());
}

TEST_F(EventConverterTest, TicketResolvedExampleConvertsEveryField) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("ticket.resolved"));
  ExpectEnvelope("wh_e1f2a3b4-c5d6-7890-efab-901234567890", "ticket.resolved",
                 1772373600);
  ASSERT_EQ(event_.payload_case(), Event::kTicketResolved);
  const auto& p = event_.ticket_resolved();
  EXPECT_TRUE(p.has_ticket_id());
  EXPECT_EQ(p.ticket_id(), 42);
  EXPECT_TRUE(p.has_ticket_number());
  EXPECT_EQ(p.ticket_number(), "TKT-001234");
  EXPECT_TRUE(p.has_resolution_summary());
  EXPECT_EQ(p.resolution_summary(),
            "Guided customer through cache clearing which resolved the "
            "dashboard export timeout issue");
}

TEST_F(EventConverterTest, TicketStatusChangedExampleConvertsEveryField) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("ticket.status_changed"));
  ExpectEnvelope("wh_f2a3b4c5-d6e7-8901-fabc-012345678901",
                 "ticket.status_changed", 1772375400);
  ASSERT_EQ(event_.payload_case(), Event::kTicketStatusChanged);
  const auto& p = event_.ticket_status_changed();
  EXPECT_TRUE(p.has_ticket_id());
  EXPECT_EQ(p.ticket_id(), 42);
  EXPECT_TRUE(p.has_ticket_number());
  EXPECT_EQ(p.ticket_number(), "TKT-001234");
  EXPECT_TRUE(p.has_old_status());
  EXPECT_EQ(p.old_status(), "open");
  EXPECT_TRUE(p.has_new_status());
  EXPECT_EQ(p.new_status(), "in_progress");
}

TEST_F(EventConverterTest, AppointmentBookedExampleConvertsEveryField) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("appointment.booked"));
  ExpectEnvelope("wh_b2c3d4e5-f6a7-8901-bcde-f12345678901",
                 "appointment.booked", 1771772400);
  ASSERT_EQ(event_.payload_case(), Event::kAppointmentBooked);
  const auto& p = event_.appointment_booked();
  EXPECT_TRUE(p.has_appointment_id());
  EXPECT_EQ(p.appointment_id(), 78);
  EXPECT_TRUE(p.has_appointment_number());
  EXPECT_EQ(p.appointment_number(), "APT-005678");
  EXPECT_TRUE(p.has_date());
  EXPECT_EQ(p.date(), "2026-03-01");
  EXPECT_TRUE(p.has_time());
  EXPECT_EQ(p.time(), "10:00 AM");
  EXPECT_TRUE(p.has_duration());
  EXPECT_EQ(p.duration(), 30);
  EXPECT_TRUE(p.has_customer_name());
  EXPECT_EQ(p.customer_name(), "John Doe");
  EXPECT_TRUE(p.has_customer_email());
  EXPECT_EQ(p.customer_email(), "john.doe@example.com");
  EXPECT_TRUE(p.has_customer_phone());
  EXPECT_EQ(p.customer_phone(), "+1987654321");
}

TEST_F(EventConverterTest, AppointmentCancelledExampleConvertsEveryField) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("appointment.cancelled"));
  ExpectEnvelope("wh_a3b4c5d6-e7f8-9012-abcd-123456789012",
                 "appointment.cancelled", 1772377200);
  ASSERT_EQ(event_.payload_case(), Event::kAppointmentCancelled);
  const auto& p = event_.appointment_cancelled();
  EXPECT_TRUE(p.has_appointment_number());
  EXPECT_EQ(p.appointment_number(), "APT-005678");
  EXPECT_TRUE(p.has_cancellation_reason());
  EXPECT_EQ(p.cancellation_reason(),
            "Customer has a scheduling conflict and will rebook next week");
}

TEST_F(EventConverterTest, AppointmentRescheduledExampleConvertsEveryField) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("appointment.rescheduled"));
  ExpectEnvelope("wh_b4c5d6e7-f8a9-0123-bcde-234567890123",
                 "appointment.rescheduled", 1772379000);
  ASSERT_EQ(event_.payload_case(), Event::kAppointmentRescheduled);
  const auto& p = event_.appointment_rescheduled();
  EXPECT_TRUE(p.has_appointment_id());
  EXPECT_EQ(p.appointment_id(), 78);
  EXPECT_TRUE(p.has_appointment_number());
  EXPECT_EQ(p.appointment_number(), "APT-005678");
  EXPECT_TRUE(p.has_old_date());
  EXPECT_EQ(p.old_date(), "2026-03-05");
  EXPECT_TRUE(p.has_new_date());
  EXPECT_EQ(p.new_date(), "2026-03-12");
  EXPECT_TRUE(p.has_new_time());
  EXPECT_EQ(p.new_time(), "2:00 PM");
}

TEST_F(EventConverterTest, CallCompletedExampleConvertsEveryField) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("call.completed"));
  ExpectEnvelope("wh_c3d4e5f6-a7b8-9012-cdef-123456789012", "call.completed",
                 1771776000);
  ASSERT_EQ(event_.payload_case(), Event::kCallCompleted);
  const auto& p = event_.call_completed();
  EXPECT_TRUE(p.has_call_id());
  EXPECT_EQ(p.call_id(), 156);
  EXPECT_TRUE(p.has_caller_phone());
  EXPECT_EQ(p.caller_phone(), "+1555123456");
  EXPECT_TRUE(p.has_duration_seconds());
  EXPECT_EQ(p.duration_seconds(), 245);
  EXPECT_TRUE(p.has_transcript());
  EXPECT_EQ(p.transcript(),
            "ASSISTANT: Thank you for calling...\nUSER: Hi, I need help "
            "with...");
  EXPECT_TRUE(p.has_hangup_cause());
  EXPECT_EQ(p.hangup_cause(), "normal_clearing");
}

TEST_F(EventConverterTest, CallAnalyzedExampleConvertsEveryFieldAndTopics) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("call.analyzed"));
  ExpectEnvelope("wh_d4e5f6a7-b8c9-0123-defa-234567890123", "call.analyzed",
                 1771776300);
  ASSERT_EQ(event_.payload_case(), Event::kCallAnalyzed);
  const auto& p = event_.call_analyzed();
  EXPECT_TRUE(p.has_call_id());
  EXPECT_EQ(p.call_id(), 156);
  EXPECT_TRUE(p.has_sentiment());
  EXPECT_EQ(p.sentiment(), "positive");
  EXPECT_TRUE(p.has_score());
  EXPECT_EQ(p.score(), 85);
  EXPECT_TRUE(p.has_intent());
  EXPECT_EQ(p.intent(), "support_request");
  EXPECT_TRUE(p.has_outcome());
  EXPECT_EQ(p.outcome(), "resolved");
  EXPECT_THAT(p.topics(), ElementsAre("billing", "account_access"));
  EXPECT_TRUE(p.has_summary());
  EXPECT_EQ(p.summary(), "Customer called about a billing discrepancy...");
}

TEST_F(EventConverterTest, CallTransferredExampleConvertsEveryField) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("call.transferred"));
  ExpectEnvelope("wh_a7b8c9d0-e1f2-3456-abcd-567890123456", "call.transferred",
                 1772361000);
  ASSERT_EQ(event_.payload_case(), Event::kCallTransferred);
  const auto& p = event_.call_transferred();
  EXPECT_TRUE(p.has_call_id());
  EXPECT_EQ(p.call_id(), 203);
  EXPECT_TRUE(p.has_caller_phone());
  EXPECT_EQ(p.caller_phone(), "+15559876543");
  EXPECT_TRUE(p.has_reason());
  EXPECT_EQ(p.reason(),
            "Customer requested to speak with a manager about a billing "
            "dispute");
  EXPECT_TRUE(p.has_transcript());
  EXPECT_EQ(p.transcript(),
            "ASSISTANT: I understand your concern...\nUSER: I'd like to speak "
            "with a manager please...");
}

TEST_F(EventConverterTest, CallRecordingAvailableExampleConvertsEveryField) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("call.recording_available"));
  ExpectEnvelope("wh_b8c9d0e1-f2a3-4567-bcde-678901234567",
                 "call.recording_available", 1772362800);
  ASSERT_EQ(event_.payload_case(), Event::kCallRecordingAvailable);
  const auto& p = event_.call_recording_available();
  EXPECT_TRUE(p.has_call_id());
  EXPECT_EQ(p.call_id(), 156);
  EXPECT_TRUE(p.has_recording_url());
  EXPECT_EQ(p.recording_url(),
            "https://storage.staffifyai.com/recordings/rec_abc123.mp3");
  EXPECT_TRUE(p.has_duration_seconds());
  EXPECT_EQ(p.duration_seconds(), 245);
}

TEST_F(EventConverterTest, ChatCompletedExampleKeepsTotalCostAsDouble) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("chat.completed"));
  ExpectEnvelope("wh_f6a7b8c9-d0e1-2345-fabc-456789012345", "chat.completed",
                 1772356500);
  ASSERT_EQ(event_.payload_case(), Event::kChatCompleted);
  const auto& p = event_.chat_completed();
  EXPECT_TRUE(p.has_conversation_id());
  EXPECT_EQ(p.conversation_id(), "conv_abc123");
  EXPECT_TRUE(p.has_duration_seconds());
  EXPECT_EQ(p.duration_seconds(), 180);
  EXPECT_TRUE(p.has_message_count());
  EXPECT_EQ(p.message_count(), 12);
  EXPECT_TRUE(p.has_total_cost());
  // The same double a JSON parser makes of "0.03", bit for bit.
  EXPECT_EQ(p.total_cost(), 0.03);
  EXPECT_TRUE(p.has_transcript());
  EXPECT_EQ(p.transcript(),
            "USER: Hi, I need help with my order\nASSISTANT: Of course! Can "
            "you provide your order number?\n...");
}

TEST_F(EventConverterTest, ContactCollectedExampleConvertsEveryField) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("contact.collected"));
  ExpectEnvelope("wh_c9d0e1f2-a3b4-5678-cdef-789012345678", "contact.collected",
                 1772366400);
  ASSERT_EQ(event_.payload_case(), Event::kContactCollected);
  const auto& p = event_.contact_collected();
  EXPECT_TRUE(p.has_name());
  EXPECT_EQ(p.name(), "Emily Davis");
  EXPECT_TRUE(p.has_email());
  EXPECT_EQ(p.email(), "emily.davis@example.com");
  EXPECT_TRUE(p.has_phone());
  EXPECT_EQ(p.phone(), "+15551112222");
  EXPECT_TRUE(p.has_source());
  EXPECT_EQ(p.source(), "widget");
}

TEST_F(EventConverterTest, EmergencyEscalatedExampleConvertsEveryField) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("emergency.escalated"));
  ExpectEnvelope("wh_d6e7f8a9-b0c1-2345-defa-456789012345",
                 "emergency.escalated", 1772384400);
  ASSERT_EQ(event_.payload_case(), Event::kEmergencyEscalated);
  const auto& p = event_.emergency_escalated();
  EXPECT_TRUE(p.has_emergency_type());
  EXPECT_EQ(p.emergency_type(), "water_leak");
  EXPECT_TRUE(p.has_unit_number());
  EXPECT_EQ(p.unit_number(), "Apt 4B");
  EXPECT_TRUE(p.has_description());
  EXPECT_EQ(p.description(),
            "Major water leak from ceiling in bedroom, water actively "
            "dripping");
}

TEST_F(EventConverterTest,
       MaintenanceRequestCreatedExampleKeepsPermissionToEnterTrue) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("maintenance_request.created"));
  ExpectEnvelope("wh_e5f6a7b8-c9d0-1234-efab-345678901234",
                 "maintenance_request.created", 1771779600);
  ASSERT_EQ(event_.payload_case(), Event::kMaintenanceRequestCreated);
  const auto& p = event_.maintenance_request_created();
  EXPECT_TRUE(p.has_request_id());
  EXPECT_EQ(p.request_id(), 23);
  EXPECT_TRUE(p.has_tenant_name());
  EXPECT_EQ(p.tenant_name(), "Sarah Johnson");
  EXPECT_TRUE(p.has_unit());
  EXPECT_EQ(p.unit(), "Apt 4B");
  EXPECT_TRUE(p.has_issue());
  EXPECT_EQ(p.issue(), "Kitchen faucet is leaking");
  EXPECT_TRUE(p.has_priority());
  EXPECT_EQ(p.priority(), "normal");
  EXPECT_TRUE(p.has_permission_to_enter());
  EXPECT_TRUE(p.permission_to_enter());
}

TEST_F(EventConverterTest, MaintenanceRequestUpdatedExampleConvertsEveryField) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("maintenance_request.updated"));
  ExpectEnvelope("wh_c5d6e7f8-a9b0-1234-cdef-345678901234",
                 "maintenance_request.updated", 1772380800);
  ASSERT_EQ(event_.payload_case(), Event::kMaintenanceRequestUpdated);
  const auto& p = event_.maintenance_request_updated();
  EXPECT_TRUE(p.has_request_id());
  EXPECT_EQ(p.request_id(), 23);
  EXPECT_TRUE(p.has_note());
  EXPECT_EQ(p.note(), "Plumber dispatched, scheduled for tomorrow morning");
  EXPECT_TRUE(p.has_new_status());
  EXPECT_EQ(p.new_status(), "in_progress");
}

TEST_F(EventConverterTest, TenantIdentifiedExampleConvertsEveryField) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("tenant.identified"));
  ExpectEnvelope("wh_e7f8a9b0-c1d2-3456-efab-567890123456", "tenant.identified",
                 1772388000);
  ASSERT_EQ(event_.payload_case(), Event::kTenantIdentified);
  const auto& p = event_.tenant_identified();
  EXPECT_TRUE(p.has_tenant_name());
  EXPECT_EQ(p.tenant_name(), "Sarah Johnson");
  EXPECT_TRUE(p.has_unit_number());
  EXPECT_EQ(p.unit_number(), "Apt 4B");
  EXPECT_TRUE(p.has_phone());
  EXPECT_EQ(p.phone(), "+15551234567");
}

TEST_F(EventConverterTest, TestPingExampleConvertsEveryField) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("test.ping"));
  ExpectEnvelope("wh_f8a9b0c1-d2e3-4567-fabc-678901234567", "test.ping",
                 1772391600);
  ASSERT_EQ(event_.payload_case(), Event::kTestPing);
  const auto& p = event_.test_ping();
  EXPECT_TRUE(p.has_message());
  EXPECT_EQ(p.message(), "Webhook test from Staffify dashboard");
}

TEST_F(EventConverterTest, EveryExampleTypeHasItsOwnPayloadMember) {
  const std::vector<std::string> types = testing::ExampleEventTypes();
  ASSERT_EQ(types.size(), 18u);
  for (const std::string& type : types) {
    SCOPED_TRACE(type);
    const google::protobuf::FieldDescriptor* field =
        converter_.PayloadField(type);
    ASSERT_NE(field, nullptr);
    // The members are named after the type, "ticket.created" ->
    // "ticket_created", and their message carries the type as its option.
    EXPECT_EQ(field->name(), absl::StrReplaceAll(type, {{".", "_"}}));
    EXPECT_EQ(field->message_type()->options().GetExtension(
                  staffify::fanout::v1::event_type),
              type);

    ASSERT_NO_FATAL_FAILURE(ConvertExample(type));
    const google::protobuf::FieldDescriptor* set =
        event_.GetReflection()->GetOneofFieldDescriptor(
            event_, Event::descriptor()->FindOneofByName("payload"));
    EXPECT_EQ(set, field);
  }
}

TEST_F(EventConverterTest, UnmodelledTypeHasNoPayloadMember) {
  EXPECT_EQ(converter_.PayloadField("call.ended"), nullptr);
  EXPECT_EQ(converter_.PayloadField("ticket"), nullptr);
  EXPECT_EQ(converter_.PayloadField(""), nullptr);
}

// Subscribers parse events with protobuf's default nesting limit (100
// levels in C++, Python and JavaScript alike). Untyped data becomes a
// google.protobuf.Struct, which takes two or three message levels for each
// JSON level, so the depth the converter accepts must stay below what that
// limit can hold, or one delivery would stop every subscriber replaying it.
TEST(EventConverterDepthTest, DeepestAcceptedBodyParsesWithDefaultLimits) {
  EventConverterOptions options;
  options.max_json_depth = kMaxJsonDepthLimit;
  EventConverter converter(options);
  for (const auto& [open, close] :
       std::vector<std::pair<std::string, std::string>>{{R"({"a":)", "}"},
                                                        {"[", "]"}}) {
    SCOPED_TRACE(open);
    // The envelope is one level and "data" is a second; the rest nest.
    std::string data = "1";
    for (size_t level = 2; level < kMaxJsonDepthLimit; ++level) {
      data = absl::StrCat(open, data, close);
    }
    const std::string body = absl::StrCat(
        R"({"id":"wh_deep","event":"custom.deep","timestamp":)",
        R"("2026-03-01T12:00:00Z","data":{"nested":)", data, "}}");
    absl::StatusOr<Event> event = converter.Convert(body);
    ASSERT_TRUE(event.ok()) << event.status();

    staffify::fanout::v1::SubscribeResponse response;
    *response.mutable_event() = *std::move(event);
    response.mutable_event()->clear_raw_body();
    const std::string wire = response.SerializeAsString();
    staffify::fanout::v1::SubscribeResponse parsed;
    EXPECT_TRUE(parsed.ParseFromString(wire));

    // One level more is refused.
    const std::string deeper = absl::StrCat(
        R"({"id":"wh_deep","event":"custom.deep","timestamp":)",
        R"("2026-03-01T12:00:00Z","data":{"nested":)", open, data, close,
        "}}");
    EXPECT_FALSE(converter.Convert(deeper).ok());
  }
}

// ------------------------------------------------------------ envelope

TEST_F(EventConverterTest, TimestampKeepsFractionAndOffset) {
  ASSERT_NO_FATAL_FAILURE(ConvertBody(R"({"id": "wh_1", "event": "test.ping",
      "timestamp": "2026-03-01T14:30:00.123456789+02:00", "data": {}})"));
  // 12:30:00 UTC.
  EXPECT_EQ(event_.timestamp().seconds(), 1772368200);
  EXPECT_EQ(event_.timestamp().nanos(), 123456789);
}

TEST_F(EventConverterTest, TimestampWithoutFractionIsAccepted) {
  ASSERT_NO_FATAL_FAILURE(ConvertBody(R"({"id": "wh_1", "event": "test.ping",
      "timestamp": "2026-02-22T14:30:00Z", "data": {}})"));
  EXPECT_EQ(event_.timestamp().seconds(), 1771770600);
  EXPECT_EQ(event_.timestamp().nanos(), 0);
}

TEST_F(EventConverterTest, TimestampBeforeEpochHasNanosInRange) {
  // google.protobuf.Timestamp counts nanos forward from the floored second:
  // 0.75 s before the epoch is seconds -1, nanos 250000000.
  ASSERT_NO_FATAL_FAILURE(ConvertBody(R"({"id": "wh_1", "event": "test.ping",
      "timestamp": "1969-12-31T23:59:59.250Z", "data": {}})"));
  EXPECT_EQ(event_.timestamp().seconds(), -1);
  EXPECT_EQ(event_.timestamp().nanos(), 250000000);

  ASSERT_NO_FATAL_FAILURE(ConvertBody(R"({"id": "wh_1", "event": "test.ping",
      "timestamp": "1969-12-31T23:59:58.750Z", "data": {}})"));
  EXPECT_EQ(event_.timestamp().seconds(), -2);
  EXPECT_EQ(event_.timestamp().nanos(), 750000000);
}

TEST_F(EventConverterTest, SetTimestampFloorsToTheSecond) {
  google::protobuf::Timestamp timestamp;
  SetTimestamp(absl::UnixEpoch() - absl::Milliseconds(1), &timestamp);
  EXPECT_EQ(timestamp.seconds(), -1);
  EXPECT_EQ(timestamp.nanos(), 999000000);

  SetTimestamp(absl::FromUnixSeconds(1771770600) + absl::Nanoseconds(5),
               &timestamp);
  EXPECT_EQ(timestamp.seconds(), 1771770600);
  EXPECT_EQ(timestamp.nanos(), 5);
}

TEST_F(EventConverterTest, TimestampRangeIsThatOfProtobufTimestamp) {
  ASSERT_NO_FATAL_FAILURE(ConvertBody(R"({"id": "wh_1", "event": "test.ping",
      "timestamp": "0001-01-01T00:00:00Z", "data": {}})"));
  EXPECT_EQ(event_.timestamp().seconds(), -62135596800);
  EXPECT_EQ(event_.timestamp().nanos(), 0);

  ASSERT_NO_FATAL_FAILURE(ConvertBody(R"({"id": "wh_1", "event": "test.ping",
      "timestamp": "9999-12-31T23:59:59.999999999Z", "data": {}})"));
  EXPECT_EQ(event_.timestamp().seconds(), 253402300799);
  EXPECT_EQ(event_.timestamp().nanos(), 999999999);

  EXPECT_TRUE(IsInvalidArgumentNaming(
      converter_.Convert(Envelope(R"("id": "wh_1", "event": "test.ping",
          "timestamp": "10000-01-01T00:00:00Z")")),
      "\"timestamp\""));
}

TEST_F(EventConverterTest, UnknownEnvelopeKeysAreKeptOnlyInRawBody) {
  ASSERT_NO_FATAL_FAILURE(ConvertBody(R"({"id": "wh_1", "event": "test.ping",
      "timestamp": "2026-03-01T12:00:00Z", "version": 2,
      "data": {"message": "hi"}})"));
  EXPECT_EQ(event_.test_ping().message(), "hi");
  EXPECT_THAT(Problems(event_), IsEmpty());
  EXPECT_THAT(event_.raw_body(), HasSubstr(R"("version": 2)"));
}

TEST_F(EventConverterTest, KnownTypeWithEmptyDataHasEmptyTypedPayload) {
  ASSERT_NO_FATAL_FAILURE(ConvertBody(Delivery("ticket.created", "{}")));
  ASSERT_EQ(event_.payload_case(), Event::kTicketCreated);
  EXPECT_FALSE(event_.ticket_created().has_ticket_id());
  EXPECT_FALSE(event_.ticket_created().has_ticket_number());
  EXPECT_THAT(Problems(event_), IsEmpty());
}

TEST_F(EventConverterTest, BodyThatIsNotJsonIsRejected) {
  EXPECT_TRUE(IsInvalidArgumentNaming(converter_.Convert(R"({"id": "wh_1",)"),
                                      "not valid JSON"));
  EXPECT_TRUE(
      IsInvalidArgumentNaming(converter_.Convert(""), "not valid JSON"));
  EXPECT_TRUE(
      IsInvalidArgumentNaming(converter_.Convert("id=wh_1"), "not valid JSON"));
}

TEST_F(EventConverterTest, BodyThatIsNotAnObjectIsRejected) {
  EXPECT_TRUE(IsInvalidArgumentNaming(converter_.Convert(R"([{"id": "wh_1"}])"),
                                      "must be a JSON object"));
  EXPECT_TRUE(IsInvalidArgumentNaming(converter_.Convert(R"("wh_1")"),
                                      "must be a JSON object"));
  EXPECT_TRUE(IsInvalidArgumentNaming(converter_.Convert("42"),
                                      "must be a JSON object"));
}

TEST_F(EventConverterTest, MissingEmptyOrNonStringIdIsRejected) {
  const std::string rest =
      R"("event": "test.ping", "timestamp": "2026-03-01T12:00:00Z")";
  EXPECT_TRUE(IsInvalidArgumentNaming(converter_.Convert(Envelope(rest)),
                                      "missing \"id\""));
  EXPECT_TRUE(IsInvalidArgumentNaming(
      converter_.Convert(Envelope(absl::StrCat(R"("id": "", )", rest))),
      "\"id\" must not be empty"));
  EXPECT_TRUE(IsInvalidArgumentNaming(
      converter_.Convert(Envelope(absl::StrCat(R"("id": 17, )", rest))),
      "\"id\" must be a string"));
  EXPECT_TRUE(IsInvalidArgumentNaming(
      converter_.Convert(Envelope(absl::StrCat(R"("id": null, )", rest))),
      "\"id\" must be a string"));
}

TEST_F(EventConverterTest, MissingEmptyOrNonStringEventIsRejected) {
  const std::string rest =
      R"("id": "wh_1", "timestamp": "2026-03-01T12:00:00Z")";
  EXPECT_TRUE(IsInvalidArgumentNaming(converter_.Convert(Envelope(rest)),
                                      "missing \"event\""));
  EXPECT_TRUE(IsInvalidArgumentNaming(
      converter_.Convert(Envelope(absl::StrCat(R"("event": "", )", rest))),
      "\"event\" must not be empty"));
  EXPECT_TRUE(IsInvalidArgumentNaming(
      converter_.Convert(
          Envelope(absl::StrCat(R"("event": ["test.ping"], )", rest))),
      "\"event\" must be a string"));
}

TEST_F(EventConverterTest, MissingEmptyOrNonStringTimestampIsRejected) {
  const std::string rest = R"("id": "wh_1", "event": "test.ping")";
  EXPECT_TRUE(IsInvalidArgumentNaming(converter_.Convert(Envelope(rest)),
                                      "missing \"timestamp\""));
  EXPECT_TRUE(IsInvalidArgumentNaming(
      converter_.Convert(Envelope(absl::StrCat(R"("timestamp": "", )", rest))),
      "\"timestamp\" must not be empty"));
  EXPECT_TRUE(IsInvalidArgumentNaming(
      converter_.Convert(
          Envelope(absl::StrCat(R"("timestamp": 1772366400, )", rest))),
      "\"timestamp\" must be a string"));
}

TEST_F(EventConverterTest, UnparsableTimestampIsRejectedAndQuoted) {
  const std::string rest = R"("id": "wh_1", "event": "test.ping")";
  for (const char* timestamp :
       {"yesterday", "2026-03-01", "2026-03-01 12:00:00Z",
        "2026-03-01T12:00:00", "2026-13-01T12:00:00Z"}) {
    SCOPED_TRACE(timestamp);
    EXPECT_TRUE(IsInvalidArgumentNaming(
        converter_.Convert(Envelope(
            absl::StrCat(R"("timestamp": ")", timestamp, R"(", )", rest))),
        absl::StrCat("\"timestamp\" is not an RFC 3339 time: \"", timestamp,
                     "\"")));
  }
}

TEST_F(EventConverterTest, MissingOrNonObjectDataIsRejected) {
  const std::string envelope = R"("id": "wh_1", "event": "test.ping",
      "timestamp": "2026-03-01T12:00:00Z")";
  EXPECT_TRUE(IsInvalidArgumentNaming(
      converter_.Convert(absl::StrCat("{", envelope, "}")),
      "missing \"data\""));
  for (const char* data : {"[]", "null", "\"hello\"", "7", "true"}) {
    SCOPED_TRACE(data);
    EXPECT_TRUE(
        IsInvalidArgumentNaming(converter_.Convert(absl::StrCat(
                                    "{", envelope, R"(, "data": )", data, "}")),
                                "\"data\" must be a JSON object"));
  }
}

TEST_F(EventConverterTest, IdAndEventTypeLongerThanTheLimitAreRejected) {
  EventConverterOptions options;
  options.max_id_bytes = 8;
  options.max_event_type_bytes = 9;
  EventConverter converter(options);
  const std::string rest = R"("timestamp": "2026-03-01T12:00:00Z")";

  EXPECT_TRUE(converter
                  .Convert(Envelope(absl::StrCat(
                      R"("id": "wh_12345", "event": "test.ping", )", rest)))
                  .ok());
  EXPECT_TRUE(IsInvalidArgumentNaming(
      converter.Convert(Envelope(
          absl::StrCat(R"("id": "wh_123456", "event": "test.ping", )", rest))),
      "\"id\" is longer than 8 bytes"));
  EXPECT_TRUE(IsInvalidArgumentNaming(
      converter.Convert(Envelope(
          absl::StrCat(R"("id": "wh_12345", "event": "test.pings", )", rest))),
      "\"event\" is longer than 9 bytes"));
}

TEST_F(EventConverterTest, NestingDeeperThanTheLimitIsRejected) {
  EventConverterOptions options;
  options.max_json_depth = 4;
  EventConverter converter(options);

  // Envelope, data and two arrays: four levels.
  EXPECT_TRUE(
      converter.Convert(Delivery("call.ended", R"({"a": [[1]]})")).ok());
  // Five.
  EXPECT_TRUE(IsInvalidArgumentNaming(
      converter.Convert(Delivery("call.ended", R"({"a": [[[1]]]})")),
      "too deep"));
}

TEST_F(EventConverterTest, DefaultDepthLimitRejectsDeeplyNestedData) {
  std::string deep;
  for (int i = 0; i < 40; ++i) deep += "[";
  for (int i = 0; i < 40; ++i) deep += "]";
  EXPECT_TRUE(IsInvalidArgumentNaming(
      converter_.Convert(
          Delivery("call.ended", absl::StrCat(R"({"a": )", deep, "}"))),
      "too deep"));
}

// --------------------------------------------------------- untyped data

TEST_F(EventConverterTest, UnknownTypeKeepsItsDataAsUntypedStruct) {
  const std::string body = R"({"id": "wh_9", "event": "call.ended",
      "timestamp": "2026-03-01T12:00:00Z",
      "data": {"callId": 12345678901234567890, "rating": 4.5,
               "caller": {"phone": "+15550001111", "vip": true},
               "tags": ["a", null, 3]}})";
  ASSERT_NO_FATAL_FAILURE(ConvertBody(body));

  EXPECT_EQ(event_.event_type(), "call.ended");
  ASSERT_EQ(event_.payload_case(), Event::kUntyped);
  EXPECT_THAT(Problems(event_),
              ElementsAre(Pair("data.callId",
                               "integer beyond 2^53 is rounded here; exact "
                               "in rawBody")));
  const auto& fields = event_.untyped().fields();
  ASSERT_EQ(fields.size(), 4u);

  // Numbers are doubles in a Struct; the exact digits stay in raw_body.
  ASSERT_TRUE(fields.contains("callId"));
  EXPECT_EQ(fields.at("callId").number_value(), 12345678901234567890.0);
  EXPECT_THAT(event_.raw_body(), HasSubstr("12345678901234567890"));
  EXPECT_EQ(event_.raw_body(), body);

  ASSERT_TRUE(fields.contains("rating"));
  EXPECT_EQ(fields.at("rating").number_value(), 4.5);

  ASSERT_TRUE(fields.contains("caller"));
  const auto& caller = fields.at("caller").struct_value().fields();
  ASSERT_EQ(caller.size(), 2u);
  EXPECT_EQ(caller.at("phone").string_value(), "+15550001111");
  ASSERT_EQ(caller.at("vip").kind_case(), google::protobuf::Value::kBoolValue);
  EXPECT_TRUE(caller.at("vip").bool_value());

  ASSERT_TRUE(fields.contains("tags"));
  const auto& tags = fields.at("tags").list_value().values();
  ASSERT_EQ(tags.size(), 3);
  EXPECT_EQ(tags[0].string_value(), "a");
  EXPECT_EQ(tags[1].kind_case(), google::protobuf::Value::kNullValue);
  EXPECT_EQ(tags[2].number_value(), 3.0);
}

TEST_F(EventConverterTest, UnknownTypeWithEmptyDataHasEmptyUntypedStruct) {
  ASSERT_NO_FATAL_FAILURE(ConvertBody(Delivery("call.ended", "{}")));
  ASSERT_EQ(event_.payload_case(), Event::kUntyped);
  EXPECT_EQ(event_.untyped().fields_size(), 0);
}

// ----------------------------------------------------- problems in data

TEST_F(EventConverterTest, WrongShapesAreListedAndOtherFieldsStillConvert) {
  ASSERT_NO_FATAL_FAILURE(ConvertBody(Delivery("ticket.created", R"({
      "ticketId": "42",
      "ticketNumber": null,
      "customerName": "Jane Smith",
      "priority": 3,
      "assignee": "bob",
      "issue": {"text": "locked out"},
      "source": "call"})")));

  ASSERT_EQ(event_.payload_case(), Event::kTicketCreated);
  const auto& p = event_.ticket_created();
  EXPECT_FALSE(p.has_ticket_id());
  EXPECT_FALSE(p.has_ticket_number());
  EXPECT_FALSE(p.has_priority());
  EXPECT_FALSE(p.has_issue());
  EXPECT_TRUE(p.has_customer_name());
  EXPECT_EQ(p.customer_name(), "Jane Smith");
  EXPECT_TRUE(p.has_source());
  EXPECT_EQ(p.source(), "call");

  EXPECT_THAT(
      Problems(event_),
      ElementsAre(Pair("data.ticketId", "expected an integer, got a string"),
                  Pair("data.ticketNumber", "expected a string, got null"),
                  Pair("data.priority", "expected a string, got an integer"),
                  Pair("data.assignee", "not modelled; kept in rawBody"),
                  Pair("data.issue", "expected a string, got an object")));
  EXPECT_EQ(event_.raw_body(), body_);
}

TEST_F(EventConverterTest, FractionForIntegerFieldIsAProblem) {
  ASSERT_NO_FATAL_FAILURE(ConvertBody(
      Delivery("call.analyzed", R"({"callId": 156, "score": 85.5})")));
  const auto& p = event_.call_analyzed();
  EXPECT_EQ(p.call_id(), 156);
  EXPECT_FALSE(p.has_score());
  EXPECT_THAT(Problems(event_),
              ElementsAre(Pair("data.score",
                               "expected an integer, got a number with a "
                               "fraction")));
}

TEST_F(EventConverterTest, IntegralDoubleIsAcceptedForIntegerField) {
  ASSERT_NO_FATAL_FAILURE(ConvertBody(
      Delivery("call.analyzed", R"({"callId": 1.56e2, "score": 85.0})")));
  const auto& p = event_.call_analyzed();
  EXPECT_TRUE(p.has_score());
  EXPECT_EQ(p.score(), 85);
  EXPECT_TRUE(p.has_call_id());
  EXPECT_EQ(p.call_id(), 156);
  EXPECT_THAT(Problems(event_), IsEmpty());
}

TEST_F(EventConverterTest, Int64ExtremesConvertExactly) {
  ASSERT_NO_FATAL_FAILURE(
      ConvertBody(Delivery("appointment.booked",
                           R"({"appointmentId": 9223372036854775807,
          "duration": -9223372036854775808})")));
  const auto& p = event_.appointment_booked();
  EXPECT_EQ(p.appointment_id(), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(p.appointment_id(), INT64_C(9223372036854775807));
  EXPECT_EQ(p.duration(), std::numeric_limits<int64_t>::min());
  EXPECT_THAT(Problems(event_), IsEmpty());
}

TEST_F(EventConverterTest, IntegerBeyondInt64IsAProblem) {
  ASSERT_NO_FATAL_FAILURE(ConvertBody(Delivery(
      "ticket.created",
      R"({"ticketId": 18446744073709551615, "ticketNumber": "TKT-1"})")));
  EXPECT_FALSE(event_.ticket_created().has_ticket_id());
  EXPECT_EQ(event_.ticket_created().ticket_number(), "TKT-1");
  EXPECT_THAT(Problems(event_),
              ElementsAre(Pair("data.ticketId",
                               "integer out of range for this field")));

  // One past each end of int64, and the doubles those round to (2^63 and
  // -2^63, which a JSON parser cannot tell from an overflow).
  for (const char* number :
       {"9223372036854775808", "9.223372036854775807e18",
        "-9223372036854775809", "-9223372036854775808.0", "-1e19"}) {
    SCOPED_TRACE(number);
    ASSERT_NO_FATAL_FAILURE(ConvertBody(Delivery(
        "ticket.created", absl::StrCat(R"({"ticketId": )", number, "}"))));
    EXPECT_FALSE(event_.ticket_created().has_ticket_id());
    EXPECT_THAT(Problems(event_),
                ElementsAre(Pair("data.ticketId",
                                 "integer out of range for this field")));
  }
}

TEST_F(EventConverterTest, IntegralDoubleAtOrBeyond2To53IsAProblem) {
  // 9007199254740993.0 parses as the double 2^53: taking it would store
  // another integer than the one sent.
  for (const char* number :
       {"9007199254740993.0", "9007199254740992.0", "-9007199254740993.0",
        "1e17", "4611686018427387904.0"}) {
    SCOPED_TRACE(number);
    ASSERT_NO_FATAL_FAILURE(ConvertBody(Delivery(
        "ticket.created", absl::StrCat(R"({"ticketId": )", number, "}"))));
    EXPECT_FALSE(event_.ticket_created().has_ticket_id());
    EXPECT_THAT(Problems(event_),
                ElementsAre(Pair("data.ticketId",
                                 HasSubstr("fraction or exponent at or "
                                           "beyond 2^53 may be rounded"))));
  }

  // Below 2^53 such a number is exact, and written as an integer it is
  // exact up to the field's range.
  ASSERT_NO_FATAL_FAILURE(ConvertBody(
      Delivery("ticket.created", R"({"ticketId": 9007199254740991.0})")));
  EXPECT_EQ(event_.ticket_created().ticket_id(), INT64_C(9007199254740991));
  EXPECT_THAT(Problems(event_), IsEmpty());
  ASSERT_NO_FATAL_FAILURE(ConvertBody(
      Delivery("ticket.created", R"({"ticketId": 9007199254740993})")));
  EXPECT_EQ(event_.ticket_created().ticket_id(), INT64_C(9007199254740993));
  EXPECT_THAT(Problems(event_), IsEmpty());
}

TEST_F(EventConverterTest, UntypedIntegerBeyond64BitsIsAProblem) {
  const std::string body =
      Delivery("call.ended",
               R"({"a": 18446744073709551616, "b": -99999999999999999999,
          "c": 9007199254740993.0, "d": 1.5, "e": 9007199254740991})");
  ASSERT_NO_FATAL_FAILURE(ConvertBody(body));

  ASSERT_EQ(event_.payload_case(), Event::kUntyped);
  EXPECT_THAT(Problems(event_),
              ::testing::UnorderedElementsAre(
                  Pair("data.a",
                       "number at or beyond 2^53 may be rounded here; "
                       "exact in rawBody"),
                  Pair("data.b",
                       "number at or beyond 2^53 may be rounded here; "
                       "exact in rawBody"),
                  Pair("data.c",
                       "number at or beyond 2^53 may be rounded here; "
                       "exact in rawBody")));
  EXPECT_EQ(event_.untyped().fields().at("d").number_value(), 1.5);
  EXPECT_EQ(event_.untyped().fields().at("e").number_value(),
            9007199254740991.0);
  EXPECT_EQ(event_.raw_body(), body);
}

TEST_F(EventConverterTest, RepeatedKeyAnywhereRefusesTheDelivery) {
  // In the envelope: routing and deduplication would otherwise use one
  // value while a first-wins reader of rawBody saw the other.
  EXPECT_TRUE(IsInvalidArgumentNaming(
      converter_.Convert(R"({"id": "wh_1", "event": "ticket.created",
          "event": "test.ping", "timestamp": "2026-03-01T12:00:00Z",
          "data": {}})"),
      "duplicate key \"event\""));
  EXPECT_TRUE(IsInvalidArgumentNaming(
      converter_.Convert(
          Delivery("ticket.created", R"({"ticketId": 1, "ticketId": 2})")),
      "duplicate key \"data.ticketId\""));
  EXPECT_TRUE(IsInvalidArgumentNaming(
      converter_.Convert(Delivery(
          "call.ended", R"({"legs": [{"to": "a"}, {"to": "b", "to": "c"}]})")),
      "duplicate key \"data.legs[1].to\""));
}

TEST_F(EventConverterTest, InvalidUtf8IsRefused) {
  EXPECT_TRUE(IsInvalidArgumentNaming(
      converter_.Convert(
          Delivery("ticket.created", "{\"issue\": \"caf\xe9\"}")),
      "not valid JSON"));
  EXPECT_TRUE(IsInvalidArgumentNaming(
      converter_.Convert(Delivery("call.ended", "{\"\xff\": 1}")),
      "not valid JSON"));
  EXPECT_TRUE(IsInvalidArgumentNaming(
      converter_.Convert(
          Delivery("ticket.created", R"({"issue": "\udc00 lone surrogate"})")),
      "not valid JSON"));
}

TEST_F(EventConverterTest, BadTopicIsListedByIndexAndTheRestAreKept) {
  ASSERT_NO_FATAL_FAILURE(ConvertBody(
      Delivery("call.analyzed",
               R"({"topics": ["billing", 7, "account_access", null]})")));
  EXPECT_THAT(event_.call_analyzed().topics(),
              ElementsAre("billing", "account_access"));
  EXPECT_THAT(
      Problems(event_),
      ElementsAre(Pair("data.topics[1]", "expected a string, got an integer"),
                  Pair("data.topics[3]", "expected a string, got null")));
}

TEST_F(EventConverterTest, TopicsThatAreNotAnArrayAreAProblem) {
  ASSERT_NO_FATAL_FAILURE(ConvertBody(
      Delivery("call.analyzed", R"({"topics": "billing", "score": 1})")));
  EXPECT_THAT(event_.call_analyzed().topics(), IsEmpty());
  EXPECT_EQ(event_.call_analyzed().score(), 1);
  EXPECT_THAT(
      Problems(event_),
      ElementsAre(Pair("data.topics", "expected an array, got a string")));
}

TEST_F(EventConverterTest, BooleanFieldTakesOnlyTrueOrFalse) {
  ASSERT_NO_FATAL_FAILURE(ConvertBody(
      Delivery("ticket.note_added", R"({"escalated": "yes", "note": "n"})")));
  EXPECT_FALSE(event_.ticket_note_added().has_escalated());
  EXPECT_EQ(event_.ticket_note_added().note(), "n");
  EXPECT_THAT(
      Problems(event_),
      ElementsAre(Pair("data.escalated", "expected a boolean, got a string")));

  ASSERT_NO_FATAL_FAILURE(
      ConvertBody(Delivery("ticket.note_added", R"({"escalated": 1})")));
  EXPECT_FALSE(event_.ticket_note_added().has_escalated());
  EXPECT_THAT(Problems(event_),
              ElementsAre(Pair("data.escalated",
                               "expected a boolean, got an integer")));

  ASSERT_NO_FATAL_FAILURE(
      ConvertBody(Delivery("ticket.note_added", R"({"escalated": true})")));
  EXPECT_TRUE(event_.ticket_note_added().has_escalated());
  EXPECT_TRUE(event_.ticket_note_added().escalated());
}

TEST_F(EventConverterTest, DoubleFieldTakesAnyNumberButNotAString) {
  ASSERT_NO_FATAL_FAILURE(
      ConvertBody(Delivery("chat.completed", R"({"total_cost": 3})")));
  EXPECT_TRUE(event_.chat_completed().has_total_cost());
  EXPECT_EQ(event_.chat_completed().total_cost(), 3.0);
  EXPECT_THAT(Problems(event_), IsEmpty());

  ASSERT_NO_FATAL_FAILURE(
      ConvertBody(Delivery("chat.completed", R"({"total_cost": "0.03"})")));
  EXPECT_FALSE(event_.chat_completed().has_total_cost());
  EXPECT_THAT(
      Problems(event_),
      ElementsAre(Pair("data.total_cost", "expected a number, got a string")));
}

TEST_F(EventConverterTest, StringFieldSentAsEmptyIsPresent) {
  ASSERT_NO_FATAL_FAILURE(
      ConvertBody(Delivery("test.ping", R"({"message": ""})")));
  EXPECT_TRUE(event_.test_ping().has_message());
  EXPECT_EQ(event_.test_ping().message(), "");
  EXPECT_THAT(Problems(event_), IsEmpty());
}

TEST_F(EventConverterTest, ConvertingTwiceGivesEqualEvents) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("call.analyzed"));
  const Event first = event_;
  ASSERT_NO_FATAL_FAILURE(ConvertExample("call.analyzed"));
  EXPECT_EQ(first.SerializeAsString(), event_.SerializeAsString());
  EXPECT_EQ(event_.call_analyzed().topics_size(), 2);
}

TEST_F(EventConverterTest, InfiniteNumberIsAProblemNotAValue) {
  ASSERT_NO_FATAL_FAILURE(
      ConvertBody(Delivery("chat.completed", R"({"total_cost": 1e400})")));
  EXPECT_FALSE(event_.chat_completed().has_total_cost());
  EXPECT_THAT(Problems(event_),
              ElementsAre(Pair("data.total_cost", "number out of range")));

  // Untyped data cannot list problems; the value becomes null there and
  // stays exact in raw_body.
  ASSERT_NO_FATAL_FAILURE(
      ConvertBody(Delivery("sms.sent", R"({"x": -1e400})")));
  ASSERT_TRUE(event_.has_untyped());
  EXPECT_EQ(event_.untyped().fields().at("x").kind_case(),
            google::protobuf::Value::kNullValue);
}

TEST(EventConverterLimitsTest, ProblemListIsCappedAndSummarised) {
  EventConverterOptions options;
  options.max_conversion_problems = 3;
  options.max_problem_path_bytes = 10;
  EventConverter converter(options);

  // Five unmodelled keys; the third has a long, multi-byte name.
  const std::string body =
      Delivery("test.ping",
               "{\"a\": 1, \"b\": 2, \"\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\": "
               "3, \"d\": 4, \"e\": 5}");
  absl::StatusOr<Event> event = converter.Convert(body);
  ASSERT_TRUE(event.ok()) << event.status();
  ASSERT_EQ(event->conversion_problems_size(), 3);
  EXPECT_EQ(event->conversion_problems(0).field(), "data.a");
  EXPECT_EQ(event->conversion_problems(1).field(), "data.b");
  EXPECT_EQ(event->conversion_problems(2).field(), "data");
  EXPECT_EQ(event->conversion_problems(2).reason(),
            "3 more problems not listed");

  // A cut path stays valid UTF-8: "data." is 5 bytes, each letter 2.
  options.max_conversion_problems = 64;
  EventConverter cutting(options);
  event = cutting.Convert(
      Delivery("test.ping", "{\"\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\": 3}"));
  ASSERT_TRUE(event.ok()) << event.status();
  ASSERT_EQ(event->conversion_problems_size(), 1);
  EXPECT_EQ(event->conversion_problems(0).field(), "data.\u00e9\u00e9...");
}

TEST_F(EventConverterTest, EventTypeOutsideTheGrammarIsRefused) {
  for (const std::string type :
       {"*", "ticket.*", "ticket created", "ticket.", ".created",
        "ticket..created", "ticket.created\n", "ticket.\tx"}) {
    SCOPED_TRACE(type);
    boost::json::object envelope;
    envelope["id"] = "wh_1";
    envelope["event"] = type;
    envelope["timestamp"] = "2026-03-01T12:00:00Z";
    envelope["data"] = boost::json::object();
    absl::StatusOr<Event> event =
        converter_.Convert(boost::json::serialize(envelope));
    ASSERT_FALSE(event.ok());
    EXPECT_EQ(event.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(event.status().message()),
                HasSubstr("\"event\" is not an event type"));
  }

  // Newer senders may use characters this version does not expect.
  for (const std::string type : {"tické.created", "a>b.c", "sms/v2.sent"}) {
    SCOPED_TRACE(type);
    ASSERT_NO_FATAL_FAILURE(ConvertBody(Delivery(type, "{}")));
    EXPECT_EQ(event_.event_type(), type);
  }
}

TEST_F(EventConverterTest, DeliveryIdWithControlCharactersIsRefused) {
  absl::StatusOr<Event> event = converter_.Convert(
      R"({"id": "wh_1\n[critical] forged", "event": "test.ping",)"
      R"( "timestamp": "2026-03-01T12:00:00Z", "data": {}})");
  ASSERT_FALSE(event.ok());
  EXPECT_THAT(std::string(event.status().message()),
              HasSubstr("control characters"));
}

TEST(EventConverterLimitsTest, EventThatWouldBeTooLargeKeepsOnlyItsBody) {
  EventConverterOptions options;
  options.max_event_bytes = 64 << 10;
  EventConverter converter(options);

  // 10,000 zeros take 20 KB of JSON and ten times that as Struct values.
  std::string zeros = "0";
  for (int i = 1; i < 10000; ++i) zeros += ",0";
  const std::string body = absl::StrCat(
      R"({"id": "wh_big", "event": "sms.sent",)",
      R"( "timestamp": "2026-03-01T12:00:00Z", "data": {"a": [)", zeros, "]}}");
  absl::StatusOr<Event> event = converter.Convert(body);
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_LE(event->ByteSizeLong(), options.max_event_bytes);
  EXPECT_EQ(event->raw_body(), body);
  ASSERT_TRUE(event->has_untyped());
  EXPECT_EQ(event->untyped().fields_size(), 0);
  ASSERT_EQ(event->conversion_problems_size(), 1);
  EXPECT_THAT(event->conversion_problems(0).reason(),
              HasSubstr("kept only in rawBody"));
}

}  // namespace
}  // namespace fanout
