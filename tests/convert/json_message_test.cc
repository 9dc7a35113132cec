// Tests for the descriptor-driven JSON <-> protobuf conversion: keys by
// json_name, presence, 64-bit integers, and the round trip of every example.

#include "server/convert/json_message.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/convert/event_converter.h"
#include "staffify/fanout/v1/events.pb.h"
#include "staffify/fanout/v1/fanout.pb.h"
#include "tests/util/examples.h"

namespace fanout {
namespace {

using staffify::fanout::v1::CallAnalyzed;
using staffify::fanout::v1::ChatCompleted;
using staffify::fanout::v1::ConversionProblem;
using staffify::fanout::v1::Event;
using staffify::fanout::v1::TicketCreated;
using staffify::fanout::v1::TicketNoteAdded;
using staffify::fanout::v1::TicketResolved;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;
using Problems = google::protobuf::RepeatedPtrField<ConversionProblem>;

std::vector<std::string> Keys(const boost::json::object& object) {
  std::vector<std::string> keys;
  for (const auto& entry : object) keys.emplace_back(entry.key());
  return keys;
}

std::vector<std::pair<std::string, std::string>> ProblemList(
    const Problems& problems) {
  std::vector<std::pair<std::string, std::string>> list;
  for (const auto& problem : problems) {
    list.emplace_back(problem.field(), problem.reason());
  }
  return list;
}

class JsonMessageTest : public ::testing::Test {
 protected:
  // Parses `text`, which must be a JSON object.
  static boost::json::object ParseObject(absl::string_view text) {
    return boost::json::parse(
               boost::json::string_view(text.data(), text.size()))
        .as_object();
  }

  Problems problems_;
};

// ------------------------------------------------------ message -> JSON

TEST_F(JsonMessageTest, KeysAreJsonNames) {
  TicketResolved resolved;
  resolved.set_ticket_id(42);
  resolved.set_ticket_number("TKT-001234");
  resolved.set_resolution_summary("done");

  const boost::json::object object = MessageToJsonObject(resolved);

  // camelCase where Staffify uses it, snake_case where Staffify does.
  EXPECT_THAT(Keys(object), UnorderedElementsAre("ticketId", "ticketNumber",
                                                 "resolution_summary"));
  EXPECT_EQ(object.at("ticketId").as_int64(), 42);
  EXPECT_EQ(object.at("ticketNumber").as_string(), "TKT-001234");
  EXPECT_EQ(object.at("resolution_summary").as_string(), "done");
}

TEST_F(JsonMessageTest, Int64IsWrittenAsAJsonNumberNotAString) {
  TicketCreated created;
  created.set_ticket_id(std::numeric_limits<int64_t>::max());

  const boost::json::object object = MessageToJsonObject(created);

  ASSERT_TRUE(object.at("ticketId").is_int64());
  EXPECT_EQ(object.at("ticketId").as_int64(),
            std::numeric_limits<int64_t>::max());
  EXPECT_EQ(boost::json::serialize(object),
            R"({"ticketId":9223372036854775807})");
}

TEST_F(JsonMessageTest, AbsentOptionalFieldsAreOmitted) {
  TicketCreated created;
  EXPECT_TRUE(MessageToJsonObject(created).empty());

  created.set_customer_name("Jane Smith");
  const boost::json::object object = MessageToJsonObject(created);
  EXPECT_THAT(Keys(object), ElementsAre("customerName"));
  EXPECT_EQ(object.at("customerName").as_string(), "Jane Smith");
}

TEST_F(JsonMessageTest, PresentFalseZeroAndEmptyStringArePrinted) {
  TicketNoteAdded note;
  note.set_ticket_id(0);
  note.set_note("");
  note.set_escalated(false);

  const boost::json::object object = MessageToJsonObject(note);

  EXPECT_THAT(Keys(object),
              UnorderedElementsAre("ticketId", "note", "escalated"));
  ASSERT_TRUE(object.at("ticketId").is_int64());
  EXPECT_EQ(object.at("ticketId").as_int64(), 0);
  ASSERT_TRUE(object.at("note").is_string());
  EXPECT_EQ(object.at("note").as_string(), "");
  ASSERT_TRUE(object.at("escalated").is_bool());
  EXPECT_FALSE(object.at("escalated").as_bool());
}

TEST_F(JsonMessageTest, RepeatedFieldIsAnArrayAndOmittedWhenEmpty) {
  CallAnalyzed analyzed;
  analyzed.set_call_id(156);
  EXPECT_THAT(Keys(MessageToJsonObject(analyzed)), ElementsAre("callId"));

  analyzed.add_topics("billing");
  analyzed.add_topics("account_access");
  const boost::json::object object = MessageToJsonObject(analyzed);
  EXPECT_EQ(object.at("topics"), boost::json::value(boost::json::array{
                                     "billing", "account_access"}));
}

TEST_F(JsonMessageTest, DoubleIsWrittenAsADouble) {
  ChatCompleted chat;
  chat.set_total_cost(0.03);

  const boost::json::object object = MessageToJsonObject(chat);

  ASSERT_TRUE(object.at("total_cost").is_double());
  EXPECT_EQ(object.at("total_cost").as_double(), 0.03);
}

TEST_F(JsonMessageTest, ConversionProblemPrintsOnlyNonEmptyFields) {
  ConversionProblem problem;
  problem.set_field("data.ticketId");
  EXPECT_EQ(boost::json::serialize(MessageToJsonObject(problem)),
            R"({"field":"data.ticketId"})");

  problem.set_reason("expected an integer, got a string");
  EXPECT_EQ(MessageToJsonObject(problem),
            ParseObject(R"({"field": "data.ticketId",
                            "reason": "expected an integer, got a string"})"));
}

TEST_F(JsonMessageTest, TimestampValueIsAnRfc3339String) {
  google::protobuf::Timestamp timestamp;
  timestamp.set_seconds(1771770600);
  timestamp.set_nanos(500000000);
  EXPECT_EQ(MessageToJsonValue(timestamp),
            boost::json::value("2026-02-22T14:30:00.500Z"));
}

TEST_F(JsonMessageTest,
       StructValueIsAPlainObjectWithIntegralNumbersAsIntegers) {
  google::protobuf::Struct data;
  JsonObjectToStruct(ParseObject(R"({"n": 2, "s": "x", "b": false, "z": null,
                      "l": [1, "y"], "o": {"k": 0.5}, "f": 3.0})"),
                     "data", &data, &problems_);

  EXPECT_EQ(MessageToJsonValue(data),
            boost::json::value(ParseObject(R"({"n": 2, "s": "x",
                "b": false, "z": null, "l": [1, "y"], "o": {"k": 0.5},
                "f": 3})")));
  EXPECT_EQ(problems_.size(), 0);
}

TEST_F(JsonMessageTest, PlainMessageValueIsTheSameAsItsObject) {
  TicketCreated created;
  created.set_ticket_id(42);
  EXPECT_EQ(MessageToJsonValue(created),
            boost::json::value(MessageToJsonObject(created)));
}

// ------------------------------------------------------ JSON -> message

TEST_F(JsonMessageTest, ProblemPathsStartWithTheGivenPath) {
  TicketCreated created;
  JsonObjectToMessage(ParseObject(R"({"ticketId": true, "other": 1})"),
                      "payload", &created, &problems_);

  EXPECT_FALSE(created.has_ticket_id());
  EXPECT_THAT(
      ProblemList(problems_),
      ElementsAre(
          Pair("payload.ticketId", "expected an integer, got a boolean"),
          Pair("payload.other", "not modelled; kept in rawBody")));
}

TEST_F(JsonMessageTest, SetFieldsAreOverwrittenAndListsAppendedTo) {
  CallAnalyzed analyzed;
  analyzed.set_score(1);
  analyzed.add_topics("billing");

  JsonObjectToMessage(ParseObject(R"({"score": 2, "topics": ["refund"]})"),
                      "data", &analyzed, &problems_);

  EXPECT_EQ(analyzed.score(), 2);
  EXPECT_THAT(analyzed.topics(), ElementsAre("billing", "refund"));
  EXPECT_THAT(ProblemList(problems_), IsEmpty());
}

TEST_F(JsonMessageTest, ProblemsAreAppendedToExistingOnes) {
  problems_.Add()->set_field("earlier");
  TicketCreated created;
  JsonObjectToMessage(ParseObject(R"({"issue": 5})"), "data", &created,
                      &problems_);
  ASSERT_EQ(problems_.size(), 2);
  EXPECT_EQ(problems_[0].field(), "earlier");
  EXPECT_EQ(problems_[1].field(), "data.issue");
}

TEST_F(JsonMessageTest, StructNumbersBecomeDoublesAndSayWhenRounded) {
  google::protobuf::Struct out;
  JsonObjectToStruct(
      ParseObject(R"({"i": -3, "u": 18446744073709551615, "d": 0.25,
                      "big": [9007199254740993], "inf": 1e400,
                      "over64": 18446744073709551616, "f": 9007199254740993.0,
                      "exact": 9007199254740992, "below": 9007199254740991.0})"),
      "data", &out, &problems_);
  ASSERT_EQ(out.fields_size(), 9);
  EXPECT_EQ(out.fields().at("i").number_value(), -3.0);
  EXPECT_EQ(out.fields().at("u").number_value(), 18446744073709551615.0);
  EXPECT_EQ(out.fields().at("d").number_value(), 0.25);
  EXPECT_EQ(out.fields().at("inf").kind_case(),
            google::protobuf::Value::kNullValue);

  std::vector<std::string> fields;
  for (const auto& problem : problems_) fields.push_back(problem.field());
  std::sort(fields.begin(), fields.end());
  EXPECT_EQ(fields,
            (std::vector<std::string>{"data.big[0]", "data.f", "data.inf",
                                      "data.over64", "data.u"}));
}

TEST_F(JsonMessageTest, Int64ExtremesSurviveJsonToMessageToJson) {
  const boost::json::object in =
      ParseObject(R"({"ticketId": 9223372036854775807})");
  TicketCreated created;
  JsonObjectToMessage(in, "data", &created, &problems_);
  ASSERT_THAT(ProblemList(problems_), IsEmpty());
  EXPECT_EQ(MessageToJsonObject(created), in);

  const boost::json::object min =
      ParseObject(R"({"ticketId": -9223372036854775808})");
  TicketCreated lowest;
  JsonObjectToMessage(min, "data", &lowest, &problems_);
  ASSERT_THAT(ProblemList(problems_), IsEmpty());
  EXPECT_EQ(lowest.ticket_id(), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(MessageToJsonObject(lowest), min);
  EXPECT_EQ(boost::json::serialize(MessageToJsonObject(lowest)),
            R"({"ticketId":-9223372036854775808})");
}

// ----------------------------------------------------------- round trip

TEST_F(JsonMessageTest, EveryExamplePayloadPrintsBackAsItsData) {
  const EventConverter converter;
  for (const std::string& type : testing::ExampleEventTypes()) {
    SCOPED_TRACE(type);
    absl::StatusOr<std::string> body = testing::ReadExample(type);
    ASSERT_TRUE(body.ok()) << body.status();
    absl::StatusOr<Event> event = converter.Convert(*body);
    ASSERT_TRUE(event.ok()) << event.status();

    const google::protobuf::FieldDescriptor* field =
        converter.PayloadField(type);
    ASSERT_NE(field, nullptr);
    const boost::json::object printed =
        MessageToJsonObject(event->GetReflection()->GetMessage(*event, field));
    const boost::json::object data = ParseObject(*body).at("data").as_object();

    // boost::json compares numbers of the same kind exactly, so the
    // integers must print as integers and 0.03 as the same double.
    EXPECT_EQ(printed, data) << boost::json::serialize(printed);
  }
}

TEST_F(JsonMessageTest, ChatExampleTotalCostRoundTripsAsTheSameDouble) {
  absl::StatusOr<std::string> body = testing::ReadExample("chat.completed");
  ASSERT_TRUE(body.ok()) << body.status();
  const boost::json::object envelope = ParseObject(*body);
  const boost::json::value& original = envelope.at("data").at("total_cost");
  ASSERT_TRUE(original.is_double());

  ChatCompleted chat;
  JsonObjectToMessage(envelope.at("data").as_object(), "data", &chat,
                      &problems_);
  ASSERT_THAT(ProblemList(problems_), IsEmpty());
  const boost::json::value printed = MessageToJsonObject(chat).at("total_cost");

  ASSERT_TRUE(printed.is_double());
  EXPECT_EQ(printed.as_double(), original.as_double());
  EXPECT_EQ(printed.as_double(), 0.03);
}

}  // namespace
}  // namespace fanout
