// The service's contract: runs the whole service on free loopback ports and
// checks what subscribers receive when the example deliveries are POSTed
// over real HTTP. Every test runs against each backend of the event store:
// the embedded log, and a JetStream stream on a nats-server of its own.

#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "client/event_subscriber.h"
#include "client/webhook_sender.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/app/fanout_server.h"
#include "server/auth/signature_verifier.h"
#include "server/convert/event_converter.h"
#include "server/convert/event_json.h"
#include "server/store/embedded_store.h"
#include "staffify/fanout/v1/fanout.grpc.pb.h"
#include "tests/util/backends.h"
#include "tests/util/examples.h"
#include "tests/util/temp_dir.h"

namespace fanout {
namespace {

using staffify::fanout::v1::Event;
using staffify::fanout::v1::Fanout;
using staffify::fanout::v1::StartPosition;
using staffify::fanout::v1::SubscribeRequest;
using staffify::fanout::v1::SubscribeResponse;
using ::testing::ElementsAreArray;

// A Subscribe call whose events are read on a thread of its own.
class TestSubscriber {
 public:
  TestSubscriber(const std::string& target,
                 const std::vector<std::string>& patterns,
                 const StartPosition& start = StartPosition()) {
    stub_ = Fanout::NewStub(
        grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
    SubscribeRequest request;
    for (const std::string& pattern : patterns) {
      request.add_event_types(pattern);
    }
    *request.mutable_start() = start;
    reader_ = stub_->Subscribe(&context_, request);
    thread_ = std::thread([this] {
      SubscribeResponse response;
      while (reader_->Read(&response)) {
        std::lock_guard<std::mutex> lock(mu_);
        if (response.has_heartbeat()) {
          heartbeats_.push_back(response.heartbeat().sequence());
        } else {
          events_.push_back(response.event());
        }
        cv_.notify_all();
      }
      grpc::Status status = reader_->Finish();
      std::lock_guard<std::mutex> lock(mu_);
      status_ = status;
      done_ = true;
      cv_.notify_all();
    });
  }

  ~TestSubscriber() {
    context_.TryCancel();
    thread_.join();
  }

  // Waits until `count` events arrived or the stream ended; returns them.
  std::vector<Event> WaitForEvents(size_t count) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(20),
                 [&] { return events_.size() >= count || done_; });
    return events_;
  }

  // Waits until `count` heartbeats arrived or the stream ended; returns
  // their sequences.
  std::vector<uint64_t> WaitForHeartbeats(size_t count) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(20),
                 [&] { return heartbeats_.size() >= count || done_; });
    return heartbeats_;
  }

  // Waits for the stream to end and returns its status.
  grpc::Status WaitForEnd() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(20), [&] { return done_; });
    EXPECT_TRUE(done_) << "stream did not end";
    return status_;
  }

  void Cancel() { context_.TryCancel(); }

 private:
  std::unique_ptr<Fanout::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<SubscribeResponse>> reader_;
  std::thread thread_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Event> events_;
  std::vector<uint64_t> heartbeats_;
  bool done_ = false;
  grpc::Status status_;
};

class EndToEndTest : public testing::BackendTest {
 protected:
  // Starts the service; unless `options` has secrets, unsigned deliveries
  // are accepted, as most tests here are about what happens after ingest.
  void StartServer(FanoutServerOptions options = {}) {
    if (options.webhook_secrets.empty()) options.allow_unsigned = true;
    UseBackend(&options);
    options.http.port = 0;
    options.grpc_address = "127.0.0.1:0";
    auto server = FanoutServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    grpc_target_ = absl::StrCat("127.0.0.1:", server_->grpc_port());
    sender_ = std::make_unique<WebhookSender>(HttpUrl{
        "127.0.0.1", std::to_string(server_->http_port()), "/webhooks"});
  }

  // Subscribers attach asynchronously; events published before a stream
  // is attached are not meant for it.
  void WaitForSubscribers(size_t count) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (server_->hub()->subscriber_count() != count &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_EQ(server_->hub()->subscriber_count(), count);
  }

  // POSTs `body` and returns the sequence the service assigned.
  uint64_t Post(const std::string& body) {
    absl::StatusOr<HttpAnswer> answer = sender_->PostJson(body);
    EXPECT_TRUE(answer.ok()) << answer.status();
    if (!answer.ok()) return 0;
    EXPECT_EQ(answer->status, 200) << answer->body;
    boost::json::value json = boost::json::parse(answer->body);
    return json.at("sequence").to_number<uint64_t>();
  }

  // The value of the metric line that starts with `name` and a space, or -1.
  int64_t Metric(const std::string& name) {
    const std::string text = server_->RenderMetrics();
    const size_t at = text.find("\n" + name + " ");
    if (at == std::string::npos) return -1;
    return std::stoll(text.substr(at + name.size() + 2));
  }

  std::unique_ptr<FanoutServer> server_;
  std::string grpc_target_;
  std::unique_ptr<WebhookSender> sender_;
};

std::vector<std::string> TypesOf(const std::vector<Event>& events) {
  std::vector<std::string> types;
  for (const Event& event : events) types.push_back(event.event_type());
  return types;
}

TEST_P(EndToEndTest, SubscribersReceiveExactlyTheirMatchingExamplesInOrder) {
  StartServer();
  TestSubscriber tickets(grpc_target_, {"ticket.*"});
  TestSubscriber mixed(grpc_target_,
                       {"call.completed", "appointment.*", "test.ping"});
  TestSubscriber everything(grpc_target_, {});
  WaitForSubscribers(3);

  std::vector<std::string> bodies;
  std::vector<uint64_t> sequences;
  for (const std::string& type : testing::ExampleEventTypes()) {
    absl::StatusOr<std::string> body = testing::ReadExample(type);
    ASSERT_TRUE(body.ok()) << body.status();
    bodies.push_back(*body);
    sequences.push_back(Post(*body));
  }
  ASSERT_EQ(sequences.front(), 1u);
  ASSERT_EQ(sequences.back(), 18u);

  EXPECT_THAT(TypesOf(tickets.WaitForEvents(4)),
              ElementsAreArray({"ticket.created", "ticket.note_added",
                                "ticket.resolved", "ticket.status_changed"}));
  EXPECT_THAT(TypesOf(mixed.WaitForEvents(5)),
              ElementsAreArray({"appointment.booked", "appointment.cancelled",
                                "appointment.rescheduled", "call.completed",
                                "test.ping"}));
  std::vector<Event> all = everything.WaitForEvents(18);
  ASSERT_EQ(all.size(), 18u);

  // Full content: each event is exactly what the converter makes of the
  // body, plus the sequence and receipt time, and its JSON form carries the
  // example's data with Staffify's keys.
  EventConverter converter;
  for (size_t i = 0; i < all.size(); ++i) {
    SCOPED_TRACE(all[i].event_type());
    EXPECT_EQ(all[i].sequence(), sequences[i]);
    EXPECT_EQ(all[i].raw_body(), bodies[i]);
    EXPECT_GT(all[i].received_at().seconds(), 0);
    EXPECT_EQ(all[i].conversion_problems_size(), 0);

    absl::StatusOr<Event> expected = converter.Convert(bodies[i]);
    ASSERT_TRUE(expected.ok());
    Event received = all[i];
    received.clear_sequence();
    received.clear_received_at();
    EXPECT_TRUE(
        google::protobuf::util::MessageDifferencer::Equals(received, *expected))
        << received.DebugString();

    const boost::json::value original = boost::json::parse(bodies[i]);
    const boost::json::object printed = EventToJson(all[i]);
    EXPECT_EQ(printed.at("data"), original.at("data"));
    EXPECT_EQ(printed.at("id"), original.at("id"));
    EXPECT_EQ(printed.at("event"), original.at("event"));
  }

  // The filtered streams carry the same events as the unfiltered one.
  for (const Event& event : tickets.WaitForEvents(4)) {
    EXPECT_EQ(event.raw_body(), bodies[event.sequence() - 1]);
  }
}

TEST_P(EndToEndTest, UnknownEventTypeIsDeliveredUntyped) {
  StartServer();
  TestSubscriber calls(grpc_target_, {"call.*"});
  WaitForSubscribers(1);

  const std::string body =
      R"({"id":"wh_1","event":"call.ended","timestamp":"2026-03-01T10:00:00Z",)"
      R"("api_version":"2","org_id":"org_9","data":{"call_id":"c_1",)"
      R"("cost":{"total":1.25},"tags":["a","b"]}})";
  Post(body);

  std::vector<Event> events = calls.WaitForEvents(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].event_type(), "call.ended");
  ASSERT_EQ(events[0].payload_case(), Event::kUntyped);
  EXPECT_EQ(events[0].raw_body(), body);
  EXPECT_EQ(boost::json::value(EventToJson(events[0]).at("data")),
            boost::json::parse(R"({"call_id":"c_1","cost":{"total":1.25},)"
                               R"("tags":["a","b"]})"));
}

TEST_P(EndToEndTest, MalformedPatternIsRejectedWithInvalidArgument) {
  StartServer();
  TestSubscriber bad(grpc_target_, {"ticket.*", "*.created"});
  grpc::Status status = bad.WaitForEnd();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "\"*.created\""))
      << status.error_message();
}

TEST_P(EndToEndTest, DisconnectedSubscriberIsCleanedUp) {
  StartServer();
  auto subscriber = std::make_unique<TestSubscriber>(
      grpc_target_, std::vector<std::string>{});
  WaitForSubscribers(1);
  subscriber.reset();  // Cancels the call.
  WaitForSubscribers(0);

  // Ingest is unaffected.
  absl::StatusOr<std::string> body = testing::ReadExample("test.ping");
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(Post(*body), 1u);
}

TEST_P(EndToEndTest,
       StalledSubscriberCatchesUpFromTheLogWithoutHoldingBackOthers) {
  FanoutServerOptions options;
  options.hub.window_events = 64;
  StartServer(options);

  // A raw call whose messages are not read until the end: gRPC flow control
  // soon stops the server writing to it, and it falls far behind the
  // in-memory window.
  auto stub = Fanout::NewStub(
      grpc::CreateChannel(grpc_target_, grpc::InsecureChannelCredentials()));
  grpc::ClientContext stalled_context;
  auto stalled = stub->Subscribe(&stalled_context, SubscribeRequest());
  TestSubscriber reader(grpc_target_, {"*"});
  WaitForSubscribers(2);

  // Each event carries a 16 KiB transcript so that flow-control windows
  // fill after a few hundred events.
  const std::string transcript(16 << 10, 'x');
  constexpr int kEvents = 2000;
  for (int i = 0; i < kEvents; ++i) {
    Post(absl::StrCat(R"({"id":"wh_)", i,
                      R"(","event":"call.completed","timestamp":)",
                      R"("2026-03-01T10:00:00Z","data":{"callId":)", i,
                      R"(,"transcript":")", transcript, R"("}})"));
  }

  std::vector<Event> events = reader.WaitForEvents(kEvents);
  ASSERT_EQ(events.size(), static_cast<size_t>(kEvents));
  for (int i = 0; i < kEvents; ++i) {
    ASSERT_EQ(events[i].sequence(), static_cast<uint64_t>(i + 1));
  }

  // The stalled stream was kept, and now reads everything, in order (after
  // the heartbeat that opened it).
  SubscribeResponse response;
  for (int i = 0; i < kEvents; ++i) {
    ASSERT_TRUE(stalled->Read(&response)) << "stream ended at " << i;
    if (response.has_heartbeat()) {
      ASSERT_EQ(i, 0) << "heartbeat amid events";
      ASSERT_EQ(response.heartbeat().sequence(), 0u);
      ASSERT_TRUE(stalled->Read(&response));
    }
    ASSERT_TRUE(response.has_event());
    ASSERT_EQ(response.event().sequence(), static_cast<uint64_t>(i + 1));
    ASSERT_EQ(response.event().call_completed().call_id(), i);
  }
  stalled_context.TryCancel();
  while (stalled->Read(&response)) {
  }
  stalled->Finish();
}

TEST_P(EndToEndTest, ShutdownEndsStreamsWithUnavailable) {
  StartServer();
  TestSubscriber subscriber(grpc_target_, {"*"});
  WaitForSubscribers(1);
  server_->Shutdown();
  grpc::Status status = subscriber.WaitForEnd();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
}

TEST_P(EndToEndTest, ConnectionPastMaxAgeEndsItsStreamsAfterTheGrace) {
  FanoutServerOptions options;
  options.grpc_connections.max_connection_age = absl::Milliseconds(300);
  options.grpc_connections.max_connection_age_grace = absl::Milliseconds(300);
  StartServer(options);
  TestSubscriber subscriber(grpc_target_, {"*"});
  WaitForSubscribers(1);
  const auto start = std::chrono::steady_clock::now();
  grpc::Status status = subscriber.WaitForEnd();
  EXPECT_NE(status.error_code(), grpc::StatusCode::OK)
      << status.error_message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(ServerOptionsTest, GrpcConnectionSettingsAreValidated) {
  FanoutServerOptions options;
  options.allow_unsigned = true;
  EXPECT_TRUE(ValidateOptions(options).ok());

  FanoutServerOptions no_keepalive = options;
  no_keepalive.grpc_connections.keepalive_time = absl::ZeroDuration();
  EXPECT_EQ(ValidateOptions(no_keepalive).code(),
            absl::StatusCode::kInvalidArgument);
  FanoutServerOptions negative_age = options;
  negative_age.grpc_connections.max_connection_age = absl::Seconds(-1);
  EXPECT_EQ(ValidateOptions(negative_age).code(),
            absl::StatusCode::kInvalidArgument);
  FanoutServerOptions negative_strikes = options;
  negative_strikes.grpc_connections.max_ping_strikes = -1;
  EXPECT_EQ(ValidateOptions(negative_strikes).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ServerOptionsTest, JsonDepthIsValidatedAgainstWhatSubscribersCanParse) {
  FanoutServerOptions options;
  options.allow_unsigned = true;
  options.converter.max_json_depth = kMaxJsonDepthLimit;
  EXPECT_TRUE(ValidateOptions(options).ok());

  for (size_t depth : {size_t{1}, kMaxJsonDepthLimit + 1, size_t{100000}}) {
    FanoutServerOptions bad = options;
    bad.converter.max_json_depth = depth;
    const absl::Status status = ValidateOptions(bad);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << depth;
    EXPECT_THAT(std::string(status.message()),
                ::testing::HasSubstr("max_json_depth"));
  }
}

TEST(ServerOptionsTest, BusIsEmbeddedOrNatsUrlsWithSaneStreamSettings) {
  FanoutServerOptions options;
  options.allow_unsigned = true;
  options.bus = "nats://127.0.0.1:4222, nats://127.0.0.1:4223";
  EXPECT_TRUE(ValidateOptions(options).ok());
  EXPECT_THAT(JetStreamOptionsFor(options).servers,
              ElementsAreArray({"nats://127.0.0.1:4222",
                                "nats://127.0.0.1:4223"}));

  const auto refused = [&](FanoutServerOptions bad, absl::string_view flag) {
    const absl::Status status = ValidateOptions(bad);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << flag;
    EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr(flag));
  };
  FanoutServerOptions bad = options;
  bad.bus = "sqlite";
  refused(bad, "bus");
  bad = options;
  bad.bus = "http://127.0.0.1:4222";
  refused(bad, "nats://");
  bad = options;
  bad.nats.stream = "events.all";
  refused(bad, "nats_stream");
  bad = options;
  bad.nats.subject_prefix = "fanout.>";
  refused(bad, "nats_subject_prefix");
  bad = options;
  bad.nats.replicas = 7;
  refused(bad, "nats_stream_replicas");
  bad = options;
  bad.nats.duplicate_window = absl::Hours(24 * 30);
  refused(bad, "nats_duplicate_window");
  for (const char* url :
       {"nats://", "nats://127.0.0.1:notaport", "nats://127.0.0.1:99999",
        "nats://user:pw@:4222"}) {
    bad = options;
    bad.bus = url;
    refused(bad, "NATS server");
  }
  bad = options;
  bad.bus = "nats://user:pw@127.0.0.1:4222,tls://[::1]:4222,nats://h";
  EXPECT_TRUE(ValidateOptions(bad).ok()) << ValidateOptions(bad);
  bad = options;
  bad.converter.max_event_type_bytes = 2000;
  refused(bad, "max_event_type_bytes");
  bad = options;
  bad.converter.max_id_bytes = 4096;
  refused(bad, "max_id_bytes");
  bad.bus = "embedded";  // Only message ids in NATS headers are bounded.
  EXPECT_TRUE(ValidateOptions(bad).ok());
}

StartPosition After(uint64_t sequence) {
  StartPosition start;
  start.set_after_sequence(sequence);
  return start;
}

std::vector<uint64_t> SequencesOf(const std::vector<Event>& events) {
  std::vector<uint64_t> sequences;
  for (const Event& event : events) sequences.push_back(event.sequence());
  return sequences;
}

std::string Ping(int i) {
  return absl::StrCat(
      R"({"id":"wh_ping_)", i, R"(","event":"test.ping","timestamp":)",
      R"("2026-03-01T19:00:00.000Z","data":{"message":"m)", i, R"("}})");
}

TEST_P(EndToEndTest, DuplicateDeliveryIsAcceptedButNotFannedOutTwice) {
  StartServer();
  TestSubscriber subscriber(grpc_target_, {"*"});
  WaitForSubscribers(1);

  absl::StatusOr<std::string> body = testing::ReadExample("ticket.created");
  ASSERT_TRUE(body.ok());
  absl::StatusOr<HttpAnswer> first = sender_->PostJson(*body);
  absl::StatusOr<HttpAnswer> again = sender_->PostJson(*body);
  ASSERT_TRUE(first.ok() && again.ok());
  const boost::json::value first_json = boost::json::parse(first->body);
  const boost::json::value again_json = boost::json::parse(again->body);
  EXPECT_EQ(first_json.at("status"), "accepted");
  EXPECT_EQ(again->status, 200);
  EXPECT_EQ(again_json.at("status"), "duplicate");
  EXPECT_EQ(again_json.at("sequence"), first_json.at("sequence"));

  // The same id with another body keeps the first and is counted.
  std::string altered = *body;
  altered.replace(altered.find("Jane Smith"), 10, "Jane Smyth");
  absl::StatusOr<HttpAnswer> differing = sender_->PostJson(altered);
  ASSERT_TRUE(differing.ok());
  EXPECT_EQ(boost::json::parse(differing->body).at("status"), "duplicate");
  EXPECT_EQ(Metric("fanout_differing_duplicates_total"), 1);

  // Another type and a field that does not convert under the same id: the
  // answer still describes the event that was kept.
  const std::string retyped = absl::StrReplaceAll(
      *body, {{R"("event": "ticket.created")", R"("event": "call.completed")"},
              {R"("event":"ticket.created")", R"("event":"call.completed")"}});
  ASSERT_NE(retyped, *body);
  absl::StatusOr<HttpAnswer> retyped_answer = sender_->PostJson(retyped);
  ASSERT_TRUE(retyped_answer.ok());
  const boost::json::value retyped_json =
      boost::json::parse(retyped_answer->body);
  EXPECT_EQ(retyped_json.at("status"), "duplicate");
  EXPECT_EQ(retyped_json.at("event"), "ticket.created") << retyped_answer->body;
  EXPECT_EQ(retyped_json.as_object().if_contains("conversionProblems"),
            nullptr)
      << retyped_answer->body;

  // A later, different delivery shows nothing else came through between.
  Post(Ping(1));
  std::vector<Event> events = subscriber.WaitForEvents(2);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].ticket_created().customer_name(), "Jane Smith");
  EXPECT_EQ(events[1].event_type(), "test.ping");
  EXPECT_THAT(SequencesOf(events), ElementsAreArray({1u, 2u}));
}

TEST_P(EndToEndTest, StartPositionsReplayFromTheLog) {
  StartServer();
  for (int i = 1; i <= 10; ++i)
    EXPECT_EQ(Post(Ping(i)), static_cast<uint64_t>(i));

  TestSubscriber after_seven(grpc_target_, {}, After(7));
  EXPECT_THAT(SequencesOf(after_seven.WaitForEvents(3)),
              ElementsAreArray({8u, 9u, 10u}));

  StartPosition oldest;
  oldest.set_from_oldest(true);
  TestSubscriber from_oldest(grpc_target_, {}, oldest);
  EXPECT_EQ(from_oldest.WaitForEvents(10).size(), 10u);

  // Receipt times are all "now"; a time before them replays everything, a
  // time in the future is out of range.
  StartPosition since_past;
  since_past.mutable_since_time()->set_seconds(
      absl::ToUnixSeconds(absl::Now() - absl::Hours(1)));
  TestSubscriber since(grpc_target_, {}, since_past);
  EXPECT_EQ(since.WaitForEvents(10).size(), 10u);

  StartPosition since_future;
  since_future.mutable_since_time()->set_seconds(
      absl::ToUnixSeconds(absl::Now() + absl::Hours(1)));
  TestSubscriber future(grpc_target_, {}, since_future);
  EXPECT_EQ(future.WaitForEnd().error_code(), grpc::StatusCode::OUT_OF_RANGE);

  // After the newest: valid, and waits for live events.
  TestSubscriber at_end(grpc_target_, {}, After(10));
  WaitForSubscribers(4);
  Post(Ping(11));
  EXPECT_THAT(SequencesOf(at_end.WaitForEvents(1)), ElementsAreArray({11u}));
  EXPECT_THAT(SequencesOf(after_seven.WaitForEvents(4)),
              ElementsAreArray({8u, 9u, 10u, 11u}));
}

TEST_P(EndToEndTest, StartBeyondTheNewestIsOutOfRangeNamingTheRange) {
  StartServer();
  for (int i = 1; i <= 3; ++i) Post(Ping(i));

  TestSubscriber beyond(grpc_target_, {}, After(4));
  const grpc::Status status = beyond.WaitForEnd();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("1..3"));
}

TEST_P(EndToEndTest, StartOlderThanRetentionIsOutOfRangeNamingTheRange) {
  FanoutServerOptions options;
  if (!nats()) {
    options.log.retention_bytes = 1;  // No event fits: retention empties it.
    options.log.retention_interval = absl::Hours(1);
  } else {
    // JetStream removes events by age on its own.
    options.log.retention_age = absl::Seconds(1);
    options.nats.duplicate_window = absl::Seconds(1);
  }
  StartServer(options);
  for (int i = 1; i <= 5; ++i) Post(Ping(i));
  if (!nats()) {
    ASSERT_TRUE(static_cast<EmbeddedStore*>(server_->store())
                    ->log()
                    ->EnforceRetention(absl::Now())
                    .ok());
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (server_->store()->Range()->first != 6u && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ(server_->store()->Range()->first, 6u);
  ASSERT_EQ(server_->store()->Range()->last, 5u);

  TestSubscriber too_old(grpc_target_, {}, After(2));
  const grpc::Status status = too_old.WaitForEnd();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_THAT(status.error_message(),
              ::testing::HasSubstr("the newest sequence is 5"));

  // So is a time before the removed events were received.
  StartPosition hour_ago;
  hour_ago.mutable_since_time()->set_seconds(
      absl::ToUnixSeconds(absl::Now() - absl::Hours(1)));
  TestSubscriber since(grpc_target_, {}, hour_ago);
  const grpc::Status since_status = since.WaitForEnd();
  EXPECT_EQ(since_status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_THAT(since_status.error_message(),
              ::testing::HasSubstr("oldest retained is seq 6"));

  // The newest sequence is still a valid resume point, and numbering goes
  // on from it.
  TestSubscriber edge(grpc_target_, {}, After(5));
  WaitForSubscribers(1);
  EXPECT_EQ(Post(Ping(6)), 6u);
  EXPECT_THAT(SequencesOf(edge.WaitForEvents(1)), ElementsAreArray({6u}));
}

TEST_P(EndToEndTest, IdleStreamGetsHeartbeatsCarryingTheNewestSequence) {
  FanoutServerOptions options;
  options.service.heartbeat_interval = absl::Milliseconds(100);
  StartServer(options);
  TestSubscriber tickets(grpc_target_, {"ticket.*"});
  WaitForSubscribers(1);
  for (int i = 1; i <= 3; ++i) Post(Ping(i));

  // Nothing matched, yet the resume point moves past the pings.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::vector<uint64_t> heartbeats;
  while (std::chrono::steady_clock::now() < deadline) {
    heartbeats = tickets.WaitForHeartbeats(heartbeats.size() + 1);
    if (!heartbeats.empty() && heartbeats.back() == 3) break;
  }
  ASSERT_FALSE(heartbeats.empty());
  EXPECT_EQ(heartbeats.back(), 3u);
  EXPECT_TRUE(std::is_sorted(heartbeats.begin(), heartbeats.end()));
  EXPECT_TRUE(tickets.WaitForEvents(0).empty());
}

TEST_P(EndToEndTest, EventsSurviveARestart) {
  StartServer();
  for (int i = 1; i <= 5; ++i) Post(Ping(i));
  server_.reset();

  StartServer();
  EXPECT_EQ(Post(Ping(6)), 6u);
  EXPECT_EQ(boost::json::parse(sender_->PostJson(Ping(2))->body).at("status"),
            "duplicate");
  StartPosition oldest;
  oldest.set_from_oldest(true);
  TestSubscriber subscriber(grpc_target_, {}, oldest);
  EXPECT_THAT(SequencesOf(subscriber.WaitForEvents(6)),
              ElementsAreArray({1u, 2u, 3u, 4u, 5u, 6u}));
}

// Returns a loopback port that was free a moment ago.
int FreePort() {
  boost::asio::io_context io_context;
  boost::asio::ip::tcp::acceptor acceptor(
      io_context, boost::asio::ip::tcp::endpoint(
                      boost::asio::ip::make_address("127.0.0.1"), 0));
  return acceptor.local_endpoint().port();
}

TEST_P(EndToEndTest, SubscriberAndLogSurviveACleanRestart) {
  FanoutServerOptions options;
  options.allow_unsigned = true;
  UseBackend(&options);
  options.http.port = 0;
  options.grpc_address = absl::StrCat("127.0.0.1:", FreePort());
  auto server = FanoutServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = *std::move(server);
  sender_ = std::make_unique<WebhookSender>(
      HttpUrl{"127.0.0.1", std::to_string(server_->http_port()), "/webhooks"});

  // A subscriber built on the client library, which reconnects and
  // resumes after the last sequence it saw.
  EventSubscriberOptions subscriber_options;
  subscriber_options.target = options.grpc_address;
  subscriber_options.initial_backoff = absl::Milliseconds(20);
  subscriber_options.max_backoff = absl::Milliseconds(200);
  EventSubscriber subscriber(subscriber_options);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<uint64_t> received;
  std::thread runner([&] {
    absl::Status status = subscriber.Run([&](const Event& event) {
      std::lock_guard<std::mutex> lock(mu);
      received.push_back(event.sequence());
      cv.notify_all();
      return absl::OkStatus();
    });
    EXPECT_TRUE(status.ok()) << status;
  });
  const auto wait_for = [&](size_t count) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::seconds(20),
                [&] { return received.size() >= count; });
    return received;
  };

  WaitForSubscribers(1);
  for (int i = 1; i <= 3; ++i) Post(Ping(i));
  EXPECT_EQ(wait_for(3).size(), 3u);

  server_->Shutdown();
  server_.reset();
  server = FanoutServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = *std::move(server);
  sender_ = std::make_unique<WebhookSender>(
      HttpUrl{"127.0.0.1", std::to_string(server_->http_port()), "/webhooks"});

  // The store kept its events and its numbering; the subscriber resumes.
  EXPECT_EQ(server_->store()->Range()->last, 3u);
  WaitForSubscribers(1);
  for (int i = 4; i <= 6; ++i)
    EXPECT_EQ(Post(Ping(i)), static_cast<uint64_t>(i));
  EXPECT_THAT(wait_for(6), ElementsAreArray({1u, 2u, 3u, 4u, 5u, 6u}));

  subscriber.Stop();
  runner.join();
}

TEST_P(EndToEndTest, OnlySignedDeliveriesAreKeptWhenSecretsAreSet) {
  FanoutServerOptions options;
  options.webhook_secrets = {"old-secret", "new-secret"};
  StartServer(options);
  TestSubscriber subscriber(grpc_target_, {"*"});
  WaitForSubscribers(1);

  const auto post = [&](const std::map<std::string, std::string>& extra,
                        const std::string& body) {
    std::map<std::string, std::string> headers = {
        {"Content-Type", "application/json"}};
    headers.insert(extra.begin(), extra.end());
    absl::StatusOr<HttpAnswer> answer = sender_->Send("POST", body, headers);
    EXPECT_TRUE(answer.ok()) << answer.status();
    return answer.ok() ? *answer : HttpAnswer();
  };
  const std::string now = std::to_string(absl::ToUnixSeconds(absl::Now()));

  const HttpAnswer unsigned_answer = post({}, Ping(1));
  EXPECT_EQ(unsigned_answer.status, 401);
  EXPECT_EQ(boost::json::parse(unsigned_answer.body).at("error"),
            "unauthenticated");

  const HttpAnswer wrong =
      post({{"X-Webhook-Timestamp", now},
            {"X-Webhook-Signature", SignWebhook("guess", now, Ping(2))}},
           Ping(2));
  EXPECT_EQ(wrong.status, 401);

  // Either spelling of the headers, any active secret.
  const HttpAnswer with_old =
      post({{"X-Webhook-Timestamp", now},
            {"X-Webhook-Signature", SignWebhook("old-secret", now, Ping(3))}},
           Ping(3));
  EXPECT_EQ(with_old.status, 200) << with_old.body;
  const HttpAnswer with_new =
      post({{"X-Staffify-Timestamp", now},
            {"X-Staffify-Signature", SignWebhook("new-secret", now, Ping(4))}},
           Ping(4));
  EXPECT_EQ(with_new.status, 200) << with_new.body;

  std::vector<Event> events = subscriber.WaitForEvents(2);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].id(), "wh_ping_3");
  EXPECT_EQ(events[1].id(), "wh_ping_4");
  EXPECT_EQ(server_->store()->Range()->last, 2u);
}

TEST_P(EndToEndTest,
       ServerWithoutSecretsRefusesToStartUnlessUnsignedIsAllowed) {
  FanoutServerOptions options;
  UseBackend(&options);
  options.http.port = 0;
  options.grpc_address = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<FanoutServer>> server =
      FanoutServer::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(server.status().message()),
              ::testing::HasSubstr("--allow_unsigned"));
}

TEST_P(EndToEndTest, OperatorEndpointsReportHealthReadinessAndMetrics) {
  StartServer();
  TestSubscriber subscriber(grpc_target_, {"ticket.*"});
  WaitForSubscribers(1);
  absl::StatusOr<std::string> body = testing::ReadExample("ticket.created");
  ASSERT_TRUE(body.ok());
  Post(*body);
  ASSERT_EQ(sender_->PostJson(*body)->status, 200);  // A duplicate.
  ASSERT_EQ(sender_->PostJson("{}")->status, 400);
  ASSERT_EQ(subscriber.WaitForEvents(1).size(), 1u);

  const auto get = [&](const std::string& path) {
    WebhookSender client(
        HttpUrl{"127.0.0.1", std::to_string(server_->http_port()), path});
    absl::StatusOr<HttpAnswer> answer = client.Send("GET", "", {});
    EXPECT_TRUE(answer.ok()) << answer.status();
    return answer.ok() ? *answer : HttpAnswer();
  };
  EXPECT_EQ(get("/healthz").status, 200);
  EXPECT_EQ(get("/readyz").status, 200);

  const HttpAnswer metrics = get("/metrics");
  EXPECT_EQ(metrics.status, 200);
  for (const std::string line :
       {"fanout_deliveries_total{event_type=\"ticket.created\","
        "outcome=\"accepted\"} 1",
        "fanout_deliveries_total{event_type=\"ticket.created\","
        "outcome=\"duplicate\"} 1",
        "fanout_deliveries_total{event_type=\"\",outcome=\"invalid\"} 1",
        "fanout_duplicates_total 1", "fanout_subscribers 1",
        "fanout_subscriber_lag{subscriber=\"1\"} 0",
        "fanout_receipt_to_commit_seconds_count 1",
        "fanout_commit_to_send_seconds_count 1",
        "fanout_log_last_sequence 1"}) {
    EXPECT_THAT(metrics.body, ::testing::HasSubstr(line + "\n"));
  }

  // A stream that starts from the oldest event reads it again from the
  // hub's window: a replay, not a live send, so not timed.
  StartPosition oldest;
  oldest.set_from_oldest(true);
  TestSubscriber replaying(grpc_target_, {}, oldest);
  ASSERT_EQ(replaying.WaitForEvents(1).size(), 1u);
  EXPECT_THAT(get("/metrics").body,
              ::testing::HasSubstr("fanout_commit_to_send_seconds_count 1\n"));

  server_->Shutdown();
  EXPECT_FALSE(server_->Ready());
}

INSTANTIATE_TEST_SUITE_P(Backends, EndToEndTest, testing::kAllBackends,
                         testing::BackendName);

}  // namespace
}  // namespace fanout
