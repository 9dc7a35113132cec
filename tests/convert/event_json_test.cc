// Tests for EventToJson: the JSON form of an Event that JSON subscribers see.

#include "server/convert/event_json.h"

#include <boost/json.hpp>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/convert/event_converter.h"
#include "staffify/fanout/v1/fanout.pb.h"
#include "tests/util/examples.h"

namespace fanout {
namespace {

using staffify::fanout::v1::Event;
using ::testing::UnorderedElementsAre;

std::vector<std::string> Keys(const boost::json::object& object) {
  std::vector<std::string> keys;
  for (const auto& entry : object) keys.emplace_back(entry.key());
  return keys;
}

boost::json::value Parse(absl::string_view text) {
  return boost::json::parse(boost::json::string_view(text.data(), text.size()));
}

class EventJsonTest : public ::testing::Test {
 protected:
  // Converts `body` into event_ and gives it what the hub would add.
  void Convert(absl::string_view body) {
    absl::StatusOr<Event> event = converter_.Convert(body);
    ASSERT_TRUE(event.ok()) << event.status();
    event_ = *std::move(event);
    event_.set_sequence(7);
    event_.mutable_received_at()->set_seconds(1771770605);
    event_.mutable_received_at()->set_nanos(250000000);
  }

  void ConvertExample(absl::string_view event_type) {
    absl::StatusOr<std::string> body = testing::ReadExample(event_type);
    ASSERT_TRUE(body.ok()) << body.status();
    body_ = *std::move(body);
    Convert(body_);
  }

  EventConverter converter_;
  std::string body_;
  Event event_;
};

TEST_F(EventJsonTest, TypedEventHasEnvelopeAndDataWithStaffifyKeys) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("ticket.created"));

  const boost::json::object json = EventToJson(event_);

  EXPECT_THAT(Keys(json),
              UnorderedElementsAre("sequence", "id", "event", "timestamp",
                                   "receivedAt", "data"));
  EXPECT_EQ(json.at("sequence").to_number<uint64_t>(), 7u);
  EXPECT_EQ(json.at("id").as_string(),
            "wh_a1b2c3d4-e5f6-7890-abcd-ef1234567890");
  EXPECT_EQ(json.at("event").as_string(), "ticket.created");
  EXPECT_EQ(json.at("timestamp").as_string(), "2026-02-22T14:30:00Z");
  EXPECT_EQ(json.at("receivedAt").as_string(), "2026-02-22T14:30:05.250Z");
  EXPECT_EQ(json.at("data"), Parse(R"({
      "ticketId": 42,
      "ticketNumber": "TKT-001234",
      "customerName": "Jane Smith",
      "customerEmail": "jane.smith@example.com",
      "customerPhone": "+1234567890",
      "issue": "Unable to access my account after password reset",
      "priority": "medium",
      "source": "call"})"));
}

TEST_F(EventJsonTest, DataOfEveryExampleIsTheDeliveredData) {
  for (const std::string& type : testing::ExampleEventTypes()) {
    SCOPED_TRACE(type);
    ASSERT_NO_FATAL_FAILURE(ConvertExample(type));
    const boost::json::object json = EventToJson(event_);
    EXPECT_EQ(json.at("event").as_string(), type);
    EXPECT_EQ(json.at("data"), Parse(body_).at("data"));
    EXPECT_FALSE(json.contains("conversionProblems"));
  }
}

TEST_F(EventJsonTest, ConversionProblemsAppearOnlyWhenThereAreSome) {
  ASSERT_NO_FATAL_FAILURE(Convert(R"({"id": "wh_1", "event": "call.analyzed",
      "timestamp": "2026-03-01T12:00:00Z",
      "data": {"callId": "156", "topics": ["billing", 7]}})"));

  const boost::json::object json = EventToJson(event_);

  ASSERT_TRUE(json.contains("conversionProblems"));
  EXPECT_EQ(json.at("conversionProblems"), Parse(R"([
      {"field": "data.callId", "reason": "expected an integer, got a string"},
      {"field": "data.topics[1]",
       "reason": "expected a string, got an integer"}])"));
  // What did fit is still printed.
  EXPECT_EQ(json.at("data"), Parse(R"({"topics": ["billing"]})"));
}

TEST_F(EventJsonTest, RawBodyIsPrintedOnlyWhenAskedFor) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("test.ping"));

  EXPECT_FALSE(EventToJson(event_).contains("rawBody"));
  EXPECT_FALSE(EventToJson(event_, false).contains("rawBody"));

  const boost::json::object json = EventToJson(event_, true);
  ASSERT_TRUE(json.contains("rawBody"));
  ASSERT_TRUE(json.at("rawBody").is_string());
  EXPECT_EQ(json.at("rawBody").as_string(), body_);
  EXPECT_THAT(Keys(json),
              UnorderedElementsAre("sequence", "id", "event", "timestamp",
                                   "receivedAt", "data", "rawBody"));
}

TEST_F(EventJsonTest, UntypedDataIsPrintedAsItCame) {
  ASSERT_NO_FATAL_FAILURE(Convert(R"({"id": "wh_2", "event": "call.ended",
      "timestamp": "2026-03-01T12:00:00Z",
      "data": {"callId": 9, "caller": {"vip": true}, "tags": ["a", null]}})"));

  const boost::json::object json = EventToJson(event_);

  EXPECT_EQ(json.at("event").as_string(), "call.ended");
  EXPECT_EQ(json.at("data"), Parse(R"({"callId": 9,
      "caller": {"vip": true}, "tags": ["a", null]})"));
}

TEST_F(EventJsonTest, EventWithoutPayloadHasEmptyData) {
  Event event;
  event.set_sequence(1);
  event.set_id("wh_3");
  event.set_event_type("test.ping");

  const boost::json::object json = EventToJson(event);

  EXPECT_EQ(json.at("data"), boost::json::value(boost::json::object()));
  EXPECT_EQ(json.at("timestamp").as_string(), "1970-01-01T00:00:00Z");
  EXPECT_EQ(json.at("receivedAt").as_string(), "1970-01-01T00:00:00Z");
}

TEST_F(EventJsonTest, TimestampKeepsNanoseconds) {
  ASSERT_NO_FATAL_FAILURE(Convert(R"({"id": "wh_4", "event": "test.ping",
      "timestamp": "2026-03-01T12:00:00.123456789Z", "data": {}})"));
  EXPECT_EQ(EventToJson(event_).at("timestamp").as_string(),
            "2026-03-01T12:00:00.123456789Z");
}

TEST_F(EventJsonTest, OutputSerialisesToJsonThatParsesBack) {
  ASSERT_NO_FATAL_FAILURE(ConvertExample("chat.completed"));
  const boost::json::object json = EventToJson(event_, true);
  EXPECT_EQ(Parse(boost::json::serialize(json)), boost::json::value(json));
}

}  // namespace
}  // namespace fanout
