// Tests for WebhookHandler: routing, method and content-type checks, the
// JSON answers, and that only accepted deliveries reach the hub. Requests
// are built in memory and handed to Handle; no sockets are involved.

#include "server/http/webhook_handler.h"

#include <atomic>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/convert/event_converter.h"
#include "server/fanout/event_hub.h"
#include "server/fanout/subscription_filter.h"
#include "server/ingest/ingestor.h"
#include "staffify/fanout/v1/fanout.pb.h"
#include "tests/util/examples.h"
#include "tests/util/hub_log.h"

namespace fanout {
namespace {

namespace http = boost::beast::http;
using staffify::fanout::v1::Event;
using ::testing::HasSubstr;

constexpr std::chrono::seconds kAnswerTimeout{5};

// A delivery of `event_type` with the given id and `data` JSON text.
std::string Delivery(const std::string& id, const std::string& event_type,
                     const std::string& data = "{}") {
  return absl::StrCat(R"({"id": ")", id, R"(", "event": ")", event_type,
                      R"(", "timestamp": "2026-03-01T12:00:00.000Z", )",
                      R"("data": )", data, "}");
}

// Parses `text` as JSON; records a failure and returns null when it is not.
boost::json::value ParseJson(const std::string& text) {
  boost::json::error_code ec;
  boost::json::value value = boost::json::parse(text, ec);
  if (ec) {
    ADD_FAILURE() << "not JSON (" << ec.message() << "): " << text;
    return nullptr;
  }
  return value;
}

// The string member `key` of `value`, or "" when there is none.
std::string StringMember(const boost::json::value& value,
                         const std::string& key) {
  if (!value.is_object()) return "";
  const boost::json::value* member = value.get_object().if_contains(key);
  if (member == nullptr || !member->is_string()) return "";
  return std::string(member->get_string());
}

// The non-negative integer member `key` of `value`, or 0 when there is none.
uint64_t UintMember(const boost::json::value& value, const std::string& key) {
  if (!value.is_object()) return 0;
  const boost::json::value* member = value.get_object().if_contains(key);
  if (member == nullptr) return 0;
  boost::json::error_code ec;
  const uint64_t number = member->to_number<uint64_t>(ec);
  return ec ? 0 : number;
}

std::string ContentTypeOf(const HttpResponse& response) {
  return std::string(response[http::field::content_type]);
}

class WebhookHandlerTest : public ::testing::Test {
 protected:
  // Runs `request` through the handler and returns its answer. Fails the
  // test if the handler does not answer exactly once.
  HttpResponse Handle(HttpRequest request) {
    auto calls = std::make_shared<std::atomic<int>>(0);
    auto answer = std::make_shared<std::promise<HttpResponse>>();
    std::future<HttpResponse> future = answer->get_future();
    handler_.Handle(std::move(request), [calls, answer](HttpResponse response) {
      if (calls->fetch_add(1) == 0) {
        answer->set_value(std::move(response));
      }
    });
    if (future.wait_for(kAnswerTimeout) != std::future_status::ready) {
      ADD_FAILURE() << "the handler did not answer";
      return HttpResponse(http::status::unknown, 11);
    }
    HttpResponse response = future.get();
    EXPECT_EQ(calls->load(), 1) << "the handler answered more than once";
    return response;
  }

  // A request with the given method, target, body and, unless it is
  // nullopt, Content-Type.
  static HttpRequest Request(http::verb method, const std::string& target,
                             std::optional<std::string> content_type,
                             const std::string& body) {
    HttpRequest request(method, target, 11);
    request.set(http::field::host, "127.0.0.1");
    if (content_type.has_value()) {
      request.set(http::field::content_type, *content_type);
    }
    request.body() = body;
    request.prepare_payload();
    return request;
  }

  static HttpRequest PostJson(const std::string& body,
                              const std::string& target = "/webhooks") {
    return Request(http::verb::post, target, "application/json", body);
  }

  // Checks that `response` is `status` with a JSON error body
  // {"error": `name`, "message": ...} whose message contains `message_part`.
  static void ExpectJsonError(const HttpResponse& response, http::status status,
                              const std::string& name,
                              const std::string& message_part = "") {
    EXPECT_EQ(response.result(), status);
    EXPECT_EQ(ContentTypeOf(response), "application/json");
    const boost::json::value body = ParseJson(response.body());
    EXPECT_EQ(StringMember(body, "error"), name) << response.body();
    EXPECT_THAT(StringMember(body, "message"), HasSubstr(message_part));
    EXPECT_FALSE(StringMember(body, "message").empty()) << response.body();
  }

  EventConverter converter_;
  testing::HubLog hub_log_;
  EventHub& hub_ = *hub_log_.hub();
  Ingestor ingestor_{&converter_, hub_log_.store()};
  WebhookHandler handler_{&ingestor_, /*verifier=*/nullptr};
};

TEST_F(WebhookHandlerTest, EveryExampleIsAcceptedAndPublishedInOrder) {
  const std::vector<std::string> types = testing::ExampleEventTypes();
  ASSERT_EQ(types.size(), 18u);
  std::shared_ptr<Subscription> subscription =
      hub_.Subscribe(SubscriptionFilter(), [] {});

  for (size_t i = 0; i < types.size(); ++i) {
    SCOPED_TRACE(types[i]);
    absl::StatusOr<std::string> example = testing::ReadExample(types[i]);
    ASSERT_TRUE(example.ok()) << example.status();
    const std::string id = StringMember(ParseJson(*example), "id");
    ASSERT_FALSE(id.empty());

    const HttpResponse response = Handle(PostJson(*example));

    EXPECT_EQ(response.result(), http::status::ok) << response.body();
    EXPECT_EQ(ContentTypeOf(response), "application/json");
    const boost::json::value body = ParseJson(response.body());
    EXPECT_EQ(StringMember(body, "status"), "accepted");
    EXPECT_EQ(UintMember(body, "sequence"), i + 1);
    EXPECT_EQ(StringMember(body, "id"), id);
    EXPECT_EQ(StringMember(body, "event"), types[i]);
    ASSERT_TRUE(body.is_object());
    EXPECT_FALSE(body.get_object().contains("conversionProblems"))
        << response.body();

    std::shared_ptr<const StoredEvent> stored;
    ASSERT_EQ(subscription->Read(&stored), Subscription::Next::kEvent);
    const Event event = stored->Parse();
    EXPECT_EQ(event.sequence(), i + 1);
    EXPECT_EQ(event.id(), id);
    EXPECT_EQ(event.event_type(), types[i]);
    EXPECT_EQ(event.raw_body(), *example);
  }
  EXPECT_EQ(hub_.last_sequence(), types.size());
}

TEST_F(WebhookHandlerTest, AcceptedDeliveryReachesSubscribers) {
  std::shared_ptr<Subscription> subscription =
      hub_.Subscribe(SubscriptionFilter(), [] {});
  absl::StatusOr<std::string> example = testing::ReadExample("call.completed");
  ASSERT_TRUE(example.ok()) << example.status();

  const HttpResponse response = Handle(PostJson(*example));
  ASSERT_EQ(response.result(), http::status::ok) << response.body();

  std::shared_ptr<const StoredEvent> stored;
  ASSERT_EQ(subscription->Read(&stored), Subscription::Next::kEvent);
  const Event event = stored->Parse();
  EXPECT_EQ(event.sequence(), 1u);
  EXPECT_EQ(event.id(), "wh_c3d4e5f6-a7b8-9012-cdef-123456789012");
  EXPECT_EQ(event.event_type(), "call.completed");
  EXPECT_EQ(event.payload_case(), Event::kCallCompleted);
  EXPECT_EQ(event.raw_body(), *example);
  EXPECT_GT(event.received_at().seconds(), 0);
  EXPECT_EQ(subscription->Read(&stored), Subscription::Next::kNone);
}

TEST_F(WebhookHandlerTest, QueryStringOnWebhookPathIsAccepted) {
  const HttpResponse response = Handle(PostJson(
      Delivery("wh_query-1", "test.ping"), "/webhooks?source=staffify&x=1"));

  EXPECT_EQ(response.result(), http::status::ok) << response.body();
  const boost::json::value body = ParseJson(response.body());
  EXPECT_EQ(StringMember(body, "status"), "accepted");
  EXPECT_EQ(StringMember(body, "id"), "wh_query-1");
  EXPECT_EQ(hub_.last_sequence(), 1u);
}

TEST_F(WebhookHandlerTest, AnswersAreExactlyTheDocumentedJson) {
  // The common answer is written without a JSON library; it must be the
  // same bytes that one writes, including for ids that need escaping.
  const HttpResponse plain =
      Handle(PostJson(Delivery("wh_plain/é-1", "test.ping")));
  EXPECT_EQ(plain.result(), http::status::ok);
  EXPECT_EQ(ContentTypeOf(plain), "application/json");
  EXPECT_EQ(plain.body(),
            R"({"status":"accepted","sequence":1,"id":"wh_plain/é-1",)"
            R"("event":"test.ping"})"
            "\n");

  const HttpResponse retry =
      Handle(PostJson(Delivery("wh_plain/é-1", "test.ping")));
  EXPECT_EQ(retry.body(),
            R"({"status":"duplicate","sequence":1,"id":"wh_plain/é-1",)"
            R"("event":"test.ping"})"
            "\n");

  const HttpResponse quoted =
      Handle(PostJson(Delivery(R"(wh_\"quoted\"\\)", "test.ping")));
  EXPECT_EQ(quoted.result(), http::status::ok) << quoted.body();
  EXPECT_EQ(quoted.body(),
            R"({"status":"accepted","sequence":2,"id":"wh_\"quoted\"\\",)"
            R"("event":"test.ping"})"
            "\n");
  EXPECT_EQ(StringMember(ParseJson(quoted.body()), "id"), R"(wh_"quoted"\)");
}

TEST_F(WebhookHandlerTest, OtherPathsAreNotFound) {
  for (const std::string target :
       {"/", "/webhooks/x", "/webhook", "/webhooks/", "/api/webhooks"}) {
    SCOPED_TRACE(target);
    const HttpResponse response =
        Handle(PostJson(Delivery("wh_path-1", "test.ping"), target));
    ExpectJsonError(response, http::status::not_found, "not_found",
                    "/webhooks");
  }
  EXPECT_EQ(hub_.last_sequence(), 0u);
}

TEST_F(WebhookHandlerTest, UnknownPathIsNotFoundWhateverTheMethod) {
  const HttpResponse response =
      Handle(Request(http::verb::get, "/", std::nullopt, ""));
  ExpectJsonError(response, http::status::not_found, "not_found");
}

TEST_F(WebhookHandlerTest, OtherMethodsOnWebhookPathAreNotAllowed) {
  for (const http::verb method :
       {http::verb::get, http::verb::put, http::verb::delete_}) {
    SCOPED_TRACE(std::string(http::to_string(method)));
    const HttpResponse response =
        Handle(Request(method, "/webhooks", "application/json",
                       Delivery("wh_method-1", "test.ping")));
    ExpectJsonError(response, http::status::method_not_allowed,
                    "method_not_allowed", "POST");
    EXPECT_EQ(response[http::field::allow], "POST");
  }
  EXPECT_EQ(hub_.last_sequence(), 0u);
}

TEST_F(WebhookHandlerTest, NonJsonContentTypeIsUnsupported) {
  const std::vector<std::optional<std::string>> content_types = {
      std::nullopt, "text/plain", "application/x-www-form-urlencoded",
      "application/jsonp", ""};
  for (const std::optional<std::string>& content_type : content_types) {
    SCOPED_TRACE(content_type.value_or("(none)"));
    const HttpResponse response =
        Handle(Request(http::verb::post, "/webhooks", content_type,
                       Delivery("wh_type-1", "test.ping")));
    ExpectJsonError(response, http::status::unsupported_media_type,
                    "unsupported_media_type", "application/json");
  }
  EXPECT_EQ(hub_.last_sequence(), 0u);
}

TEST_F(WebhookHandlerTest, CompressedBodyIsUnsupported) {
  for (const std::string encoding : {"gzip", "br", "gzip, identity"}) {
    SCOPED_TRACE(encoding);
    HttpRequest request = PostJson(Delivery("wh_enc-1", "test.ping"));
    request.set(http::field::content_encoding, encoding);
    ExpectJsonError(Handle(std::move(request)),
                    http::status::unsupported_media_type,
                    "unsupported_media_type", "Content-Encoding");
  }
  EXPECT_EQ(hub_.last_sequence(), 0u);

  HttpRequest identity = PostJson(Delivery("wh_enc-2", "test.ping"));
  identity.set(http::field::content_encoding, "Identity");
  EXPECT_EQ(Handle(std::move(identity)).result(), http::status::ok);
}

TEST_F(WebhookHandlerTest, JsonContentTypeInAnySpellingIsAccepted) {
  const std::vector<std::string> content_types = {
      "application/json", "Application/JSON", "application/json; charset=utf-8",
      "application/json;charset=UTF-8", " application/json "};
  for (size_t i = 0; i < content_types.size(); ++i) {
    SCOPED_TRACE(content_types[i]);
    const HttpResponse response =
        Handle(Request(http::verb::post, "/webhooks", content_types[i],
                       Delivery(absl::StrCat("wh_type-", i), "test.ping")));
    EXPECT_EQ(response.result(), http::status::ok) << response.body();
    const boost::json::value body = ParseJson(response.body());
    EXPECT_EQ(StringMember(body, "status"), "accepted");
    EXPECT_EQ(UintMember(body, "sequence"), i + 1);
  }
  EXPECT_EQ(hub_.last_sequence(), content_types.size());
}

TEST_F(WebhookHandlerTest, UnusableDeliveryIsBadRequestNamingTheProblem) {
  struct Case {
    std::string name;
    std::string body;
    std::string message_part;
  };
  const std::vector<Case> cases = {
      {"not JSON", "this is not json", "not valid JSON"},
      {"truncated JSON", R"({"id": "wh_1", )", "not valid JSON"},
      {"empty body", "", "not valid JSON"},
      {"array", R"([{"id": "wh_1"}])", "must be a JSON object"},
      {"string", R"("hello")", "must be a JSON object"},
      {"missing id",
       R"({"event": "test.ping", "timestamp": "2026-03-01T12:00:00Z",
           "data": {}})",
       R"(missing "id")"},
      {"missing event",
       R"({"id": "wh_1", "timestamp": "2026-03-01T12:00:00Z", "data": {}})",
       R"(missing "event")"},
      {"missing timestamp",
       R"({"id": "wh_1", "event": "test.ping", "data": {}})",
       R"(missing "timestamp")"},
      {"missing data",
       R"({"id": "wh_1", "event": "test.ping",
           "timestamp": "2026-03-01T12:00:00Z"})",
       R"(missing "data")"},
      {"id not a string",
       R"({"id": 17, "event": "test.ping",
           "timestamp": "2026-03-01T12:00:00Z", "data": {}})",
       R"("id" must be a string)"},
      {"data not an object",
       R"({"id": "wh_1", "event": "test.ping",
           "timestamp": "2026-03-01T12:00:00Z", "data": [1, 2]})",
       R"("data" must be a JSON object)"},
      {"bad timestamp",
       R"({"id": "wh_1", "event": "test.ping",
           "timestamp": "yesterday at noon", "data": {}})",
       R"("timestamp" is not an RFC 3339 time)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const HttpResponse response = Handle(PostJson(c.body));
    ExpectJsonError(response, http::status::bad_request, "invalid_argument",
                    c.message_part);
  }
  EXPECT_EQ(hub_.last_sequence(), 0u);
}

TEST_F(WebhookHandlerTest, WrongTypedFieldIsAcceptedAndListedAsProblem) {
  const HttpResponse response = Handle(PostJson(
      Delivery("wh_problem-1", "ticket.created",
               R"({"ticketId": "forty-two", "customerName": "Jane Smith"})")));

  EXPECT_EQ(response.result(), http::status::ok) << response.body();
  const boost::json::value body = ParseJson(response.body());
  EXPECT_EQ(StringMember(body, "status"), "accepted");
  EXPECT_EQ(UintMember(body, "sequence"), 1u);
  EXPECT_EQ(StringMember(body, "event"), "ticket.created");
  ASSERT_TRUE(body.is_object());
  const boost::json::value* problems =
      body.get_object().if_contains("conversionProblems");
  ASSERT_NE(problems, nullptr) << response.body();
  ASSERT_TRUE(problems->is_array());
  ASSERT_EQ(problems->get_array().size(), 1u);
  const boost::json::value& problem = problems->get_array()[0];
  EXPECT_EQ(StringMember(problem, "field"), "data.ticketId");
  EXPECT_EQ(StringMember(problem, "reason"),
            "expected an integer, got a string");
  EXPECT_EQ(hub_.last_sequence(), 1u);
}

TEST_F(WebhookHandlerTest, CleanDeliveryHasNoConversionProblemsMember) {
  const HttpResponse response = Handle(
      PostJson(Delivery("wh_clean-1", "ticket.created",
                        R"({"ticketId": 42, "customerName": "Jane Smith"})")));

  EXPECT_EQ(response.result(), http::status::ok) << response.body();
  const boost::json::value body = ParseJson(response.body());
  ASSERT_TRUE(body.is_object());
  EXPECT_FALSE(body.get_object().contains("conversionProblems"))
      << response.body();
}

TEST_F(WebhookHandlerTest, RejectedDeliveryPublishesNothing) {
  std::shared_ptr<Subscription> subscription =
      hub_.Subscribe(SubscriptionFilter(), [] {});

  const HttpResponse rejected = Handle(PostJson(R"({"id": "wh_bad-1"})"));
  ASSERT_EQ(rejected.result(), http::status::bad_request);
  EXPECT_EQ(hub_.last_sequence(), 0u);
  std::shared_ptr<const StoredEvent> event;
  EXPECT_EQ(subscription->Read(&event), Subscription::Next::kNone);

  // The rejected delivery used up no sequence number either.
  const HttpResponse accepted =
      Handle(PostJson(Delivery("wh_good-1", "test.ping")));
  ASSERT_EQ(accepted.result(), http::status::ok) << accepted.body();
  EXPECT_EQ(UintMember(ParseJson(accepted.body()), "sequence"), 1u);
  ASSERT_EQ(subscription->Read(&event), Subscription::Next::kEvent);
  EXPECT_EQ(event->sequence(), 1u);
  EXPECT_EQ(event->Parse().id(), "wh_good-1");
}

}  // namespace
}  // namespace fanout
