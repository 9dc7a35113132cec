// Runs the whole service in this process with TLS, mutual TLS and access
// tokens, on loopback ports, with certificates made for the test, and
// checks who may connect and what each subscriber sees, live and replayed
// from the log.

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/channel_credentials.h"
#include "client/event_subscriber.h"
#include "client/webhook_sender.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/app/fanout_server.h"
#include "staffify/fanout/v1/fanout.grpc.pb.h"
#include "tests/util/backends.h"
#include "tests/util/examples.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_certificates.h"

namespace fanout {
namespace {

using staffify::fanout::v1::Event;
using staffify::fanout::v1::Fanout;
using staffify::fanout::v1::StartPosition;
using staffify::fanout::v1::SubscribeRequest;
using staffify::fanout::v1::SubscribeResponse;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

constexpr char kTicketsToken[] = "tickets-token-5f2c9a8e71d04b36";
constexpr char kCreatedToken[] = "created-token-0b4e7d21c9a3f658";
constexpr char kEverythingToken[] = "everything-token-93d1a7c5e2b8";
// SHA-256 of kEverythingToken; the file holds only this.
constexpr char kEverythingDigest[] =
    "sha256:72a4cb620c140e88ddd7acfa829ab50b0977b92700fa622e134cb77082e554d4";

// How one Subscribe call went.
struct CallResult {
  std::vector<Event> events;
  grpc::Status status;
};

std::vector<std::string> TypesOf(const std::vector<Event>& events) {
  std::vector<std::string> types;
  for (const Event& event : events) types.push_back(event.event_type());
  return types;
}

StartPosition FromOldest() {
  StartPosition start;
  start.set_from_oldest(true);
  return start;
}

// Subscribes on `channel` and reads until `count` events arrived, or
// (when `through` is set) an event or heartbeat shows that the stream has
// considered every event up to sequence `through`, or the stream ended, or
// 10 seconds passed; then cancels the call. Each entry of `authorization`
// is sent as one "authorization" metadata value.
CallResult Subscribe(const std::shared_ptr<grpc::Channel>& channel,
                     const std::vector<std::string>& patterns,
                     const std::vector<std::string>& authorization,
                     size_t count, const StartPosition& start = FromOldest(),
                     uint64_t through = 0) {
  std::unique_ptr<Fanout::Stub> stub = Fanout::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  for (const std::string& value : authorization) {
    context.AddMetadata("authorization", value);
  }
  SubscribeRequest request;
  for (const std::string& pattern : patterns) request.add_event_types(pattern);
  *request.mutable_start() = start;

  CallResult result;
  std::unique_ptr<grpc::ClientReader<SubscribeResponse>> reader =
      stub->Subscribe(&context, request);
  SubscribeResponse response;
  bool ended = false;
  uint64_t considered = 0;
  while (result.events.size() < count &&
         (through == 0 || considered < through)) {
    if (!reader->Read(&response)) {
      ended = true;
      break;
    }
    if (response.has_event()) {
      result.events.push_back(response.event());
      considered = response.event().sequence();
    } else {
      considered = response.heartbeat().sequence();
    }
  }
  // Cancelling a call that has ended would replace its status.
  if (!ended) {
    context.TryCancel();
    while (reader->Read(&response)) {
    }
  }
  result.status = reader->Finish();
  return result;
}

std::string Bearer(const std::string& token) {
  return absl::StrCat("Bearer ", token);
}

class SecurityTest : public testing::BackendTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(BackendTest::SetUp());
    absl::StatusOr<testing::TestCertificates> made =
        testing::TestCertificates::Create(certs_dir_.path());
    ASSERT_TRUE(made.ok()) << made.status();
    certs_ = *made;

    tokens_file_ = certs_dir_.path() + "/access-tokens";
    std::ofstream(tokens_file_)
        << "# name token patterns\n"
        << "tickets " << kTicketsToken << " ticket.*,test.ping\n"
        << "created " << kCreatedToken << " ticket.created\n"
        << "everything " << kEverythingDigest << " *\n";
    ASSERT_EQ(chmod(tokens_file_.c_str(), 0600), 0);
  }

  // Starts the service with `options` (unsigned deliveries accepted) and
  // posts every example delivery.
  void StartServer(FanoutServerOptions options) {
    options.allow_unsigned = true;
    UseBackend(&options);
    options.http.port = 0;
    options.grpc_address = "127.0.0.1:0";
    absl::StatusOr<std::unique_ptr<FanoutServer>> server =
        FanoutServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    target_ = absl::StrCat("127.0.0.1:", server_->grpc_port());
    sender_ = std::make_unique<WebhookSender>(HttpUrl{
        "127.0.0.1", std::to_string(server_->http_port()), "/webhooks"});
  }

  void PostExamples() {
    for (const std::string& type : testing::ExampleEventTypes()) {
      absl::StatusOr<std::string> body = testing::ReadExample(type);
      ASSERT_TRUE(body.ok()) << body.status();
      absl::StatusOr<HttpAnswer> answer = sender_->PostJson(*body);
      ASSERT_TRUE(answer.ok()) << answer.status();
      ASSERT_EQ(answer->status, 200) << answer->body;
    }
  }

  FanoutServerOptions TlsOptions(bool mutual) const {
    FanoutServerOptions options;
    options.grpc_tls.cert_file = certs_.server_cert;
    options.grpc_tls.key_file = certs_.server_key;
    if (mutual) options.grpc_tls.client_ca_file = certs_.ca;
    return options;
  }

  // A channel with TLS credentials from `tls`.
  std::shared_ptr<grpc::Channel> TlsChannel(const ClientTlsOptions& tls) {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
        MakeChannelCredentials(tls);
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    if (!credentials.ok()) return nullptr;
    return grpc::CreateChannel(target_, *credentials);
  }

  std::shared_ptr<grpc::Channel> PlaintextChannel() {
    return grpc::CreateChannel(target_, grpc::InsecureChannelCredentials());
  }

  testing::TempDir certs_dir_;
  testing::TestCertificates certs_;
  std::string tokens_file_;
  std::unique_ptr<FanoutServer> server_;
  std::string target_;
  std::unique_ptr<WebhookSender> sender_;
};

// ------------------------------------------------------------------- TLS

TEST_P(SecurityTest, TlsClientIsServedAndPlaintextClientIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartServer(TlsOptions(/*mutual=*/false)));
  ASSERT_NO_FATAL_FAILURE(PostExamples());

  ClientTlsOptions tls;
  tls.ca_file = certs_.ca;
  const CallResult secure = Subscribe(TlsChannel(tls), {"ticket.*"}, {}, 4);
  EXPECT_THAT(TypesOf(secure.events),
              ElementsAre("ticket.created", "ticket.note_added",
                          "ticket.resolved", "ticket.status_changed"));

  const CallResult plaintext = Subscribe(PlaintextChannel(), {}, {}, 1);
  EXPECT_TRUE(plaintext.events.empty());
  EXPECT_EQ(plaintext.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << plaintext.status.error_message();

  // A client that trusts another CA does not accept this server.
  tls.ca_file = certs_.other_ca;
  const CallResult distrusting = Subscribe(TlsChannel(tls), {}, {}, 1);
  EXPECT_TRUE(distrusting.events.empty());
  EXPECT_EQ(distrusting.status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_P(SecurityTest, MutualTlsServesOnlyClientsWithACertificateFromItsCa) {
  ASSERT_NO_FATAL_FAILURE(StartServer(TlsOptions(/*mutual=*/true)));
  ASSERT_NO_FATAL_FAILURE(PostExamples());

  ClientTlsOptions with_cert;
  with_cert.ca_file = certs_.ca;
  with_cert.cert_file = certs_.client_cert;
  with_cert.key_file = certs_.client_key;
  const CallResult accepted = Subscribe(TlsChannel(with_cert), {}, {}, 18);
  EXPECT_EQ(accepted.events.size(), 18u) << accepted.status.error_message();

  ClientTlsOptions without_cert;
  without_cert.ca_file = certs_.ca;
  const CallResult anonymous = Subscribe(TlsChannel(without_cert), {}, {}, 1);
  EXPECT_TRUE(anonymous.events.empty());
  EXPECT_EQ(anonymous.status.error_code(), grpc::StatusCode::UNAVAILABLE);

  ClientTlsOptions foreign_cert = with_cert;
  foreign_cert.cert_file = certs_.other_client_cert;
  foreign_cert.key_file = certs_.other_client_key;
  const CallResult stranger = Subscribe(TlsChannel(foreign_cert), {}, {}, 1);
  EXPECT_TRUE(stranger.events.empty());
  EXPECT_EQ(stranger.status.error_code(), grpc::StatusCode::UNAVAILABLE);

  const CallResult plaintext = Subscribe(PlaintextChannel(), {}, {}, 1);
  EXPECT_TRUE(plaintext.events.empty());
  EXPECT_EQ(plaintext.status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_P(SecurityTest, BadTlsFilesStopTheStartNamingTheFile) {
  const auto start_error = [this](FanoutServerOptions options) {
    options.allow_unsigned = true;
    UseBackend(&options);
    options.http.port = 0;
    options.grpc_address = "127.0.0.1:0";
    absl::StatusOr<std::unique_ptr<FanoutServer>> server =
        FanoutServer::Start(std::move(options));
    return server.status();
  };

  FanoutServerOptions missing = TlsOptions(false);
  missing.grpc_tls.cert_file = certs_dir_.path() + "/missing.pem";
  absl::Status status = start_error(missing);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_THAT(status.message(), HasSubstr("--grpc_tls_cert"));
  EXPECT_THAT(status.message(), HasSubstr("missing.pem"));

  FanoutServerOptions mismatched = TlsOptions(false);
  mismatched.grpc_tls.key_file = certs_.client_key;
  status = start_error(mismatched);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("does not belong"));

  FanoutServerOptions half = TlsOptions(false);
  half.grpc_tls.key_file.clear();
  status = start_error(half);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("give both or neither"));

  FanoutServerOptions ca_only;
  ca_only.grpc_tls.client_ca_file = certs_.ca;
  status = start_error(ca_only);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;

  FanoutServerOptions bad_ca = TlsOptions(true);
  bad_ca.grpc_tls.client_ca_file = certs_.client_key;
  status = start_error(bad_ca);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("--grpc_tls_client_ca"));

  ASSERT_EQ(chmod(certs_.server_key.c_str(), 0644), 0);
  status = start_error(TlsOptions(false));
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(status.message(), HasSubstr("--grpc_tls_key"));
}

// ---------------------------------------------------------- access tokens

TEST_P(SecurityTest, CallWithoutAKnownTokenIsUnauthenticated) {
  FanoutServerOptions options;
  options.access_tokens_file = tokens_file_;
  ASSERT_NO_FATAL_FAILURE(StartServer(options));
  ASSERT_NO_FATAL_FAILURE(PostExamples());

  for (const std::vector<std::string>& authorization :
       std::vector<std::vector<std::string>>{
           {},
           {Bearer("not-a-token-of-this-server")},
           {Bearer(std::string(kTicketsToken) + "x")},
           {absl::StrCat("Basic ", kTicketsToken)},
           {kTicketsToken},
           {Bearer(kTicketsToken), Bearer(kCreatedToken)},
           // The digest in the file is not itself a token.
           {Bearer(kEverythingDigest)}}) {
    SCOPED_TRACE(authorization.empty() ? "none" : authorization.front());
    const CallResult result =
        Subscribe(PlaintextChannel(), {"ticket.*"}, authorization, 1);
    EXPECT_TRUE(result.events.empty());
    EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << result.status.error_message();
    EXPECT_THAT(result.status.error_message(),
                ::testing::Not(HasSubstr(kTicketsToken)));
  }

  // Even a malformed request learns nothing but that.
  const CallResult malformed =
      Subscribe(PlaintextChannel(), {"*.created"}, {}, 1);
  EXPECT_EQ(malformed.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);

  EXPECT_THAT(server_->RenderMetrics(),
              HasSubstr("fanout_subscribe_refused_total{reason="
                        "\"unauthenticated\"} 8\n"));
}

TEST_P(SecurityTest, StarMeansEverythingTheTokenMayReadLiveAndReplayed) {
  FanoutServerOptions options;
  options.access_tokens_file = tokens_file_;
  // A window of two events: the replay below comes from the log.
  options.hub.window_events = 2;
  // A stream that has sent all it may sends a heartbeat soon after.
  options.service.heartbeat_interval = absl::Milliseconds(50);
  ASSERT_NO_FATAL_FAILURE(StartServer(options));
  ASSERT_NO_FATAL_FAILURE(PostExamples());

  const std::vector<std::string> granted = {
      "test.ping", "ticket.created", "ticket.note_added", "ticket.resolved",
      "ticket.status_changed"};
  for (const std::vector<std::string>& patterns :
       std::vector<std::vector<std::string>>{{"*"}, {}}) {
    SCOPED_TRACE(patterns.empty() ? "no pattern" : "*");
    // Read until the stream has considered all 18 examples.
    const CallResult replayed =
        Subscribe(PlaintextChannel(), patterns, {Bearer(kTicketsToken)},
                  SIZE_MAX, FromOldest(), /*through=*/18);
    EXPECT_THAT(TypesOf(replayed.events), ElementsAreArray(granted));
    EXPECT_EQ(replayed.status.error_code(), grpc::StatusCode::CANCELLED)
        << replayed.status.error_message();
  }

  // Live: a new stream sees the next granted event and not the others.
  // Streams attach and detach asynchronously: wait for the replays to be
  // gone, then for the new one to be there.
  const auto wait_for_subscribers = [this](size_t count) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (server_->hub()->subscriber_count() != count &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return server_->hub()->subscriber_count() == count;
  };
  ASSERT_TRUE(wait_for_subscribers(0));
  CallResult live;
  std::thread reader([&] {
    live = Subscribe(PlaintextChannel(), {"*"}, {Bearer(kTicketsToken)}, 1,
                     StartPosition());
  });
  if (!wait_for_subscribers(1)) {
    reader.join();
    FAIL() << "the live stream did not attach: " << live.status.error_message();
  }
  for (const char* type :
       {"call.completed", "appointment.booked", "ticket.resolved"}) {
    absl::StatusOr<std::string> body = testing::ReadExample(type);
    ASSERT_TRUE(body.ok());
    std::string again = *body;
    const size_t id = again.find("\"wh_");
    ASSERT_NE(id, std::string::npos);
    again.insert(id + 4, "live-");
    absl::StatusOr<HttpAnswer> answer = sender_->PostJson(again);
    ASSERT_TRUE(answer.ok() && answer->status == 200);
  }
  reader.join();
  ASSERT_EQ(live.events.size(), 1u) << live.status.error_message();
  EXPECT_EQ(live.events[0].event_type(), "ticket.resolved");
  EXPECT_EQ(live.events[0].sequence(), 21u);
}

TEST_P(SecurityTest, WiderPatternIsNarrowedToTheGrant) {
  FanoutServerOptions options;
  options.access_tokens_file = tokens_file_;
  options.service.heartbeat_interval = absl::Milliseconds(50);
  ASSERT_NO_FATAL_FAILURE(StartServer(options));
  ASSERT_NO_FATAL_FAILURE(PostExamples());

  const CallResult narrowed =
      Subscribe(PlaintextChannel(), {"ticket.*"}, {Bearer(kCreatedToken)},
                SIZE_MAX, FromOldest(), /*through=*/18);
  EXPECT_THAT(TypesOf(narrowed.events), ElementsAre("ticket.created"));
  EXPECT_EQ(narrowed.status.error_code(), grpc::StatusCode::CANCELLED)
      << narrowed.status.error_message();
}

TEST_P(SecurityTest, PatternOutsideTheGrantIsPermissionDenied) {
  FanoutServerOptions options;
  options.access_tokens_file = tokens_file_;
  ASSERT_NO_FATAL_FAILURE(StartServer(options));
  ASSERT_NO_FATAL_FAILURE(PostExamples());

  const CallResult denied =
      Subscribe(PlaintextChannel(), {"ticket.*", "call.completed"},
                {Bearer(kTicketsToken)}, 1);
  EXPECT_TRUE(denied.events.empty());
  EXPECT_EQ(denied.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(denied.status.error_message(), HasSubstr("\"call.completed\""));

  // A token granted everything (kept as its digest) reads it.
  const CallResult allowed =
      Subscribe(PlaintextChannel(), {"call.completed"},
                {absl::StrCat("bearer ", kEverythingToken)}, 1);
  EXPECT_THAT(TypesOf(allowed.events), ElementsAre("call.completed"));

  EXPECT_THAT(server_->RenderMetrics(),
              HasSubstr("fanout_subscribe_refused_total{reason="
                        "\"permission_denied\"} 1\n"));
}

TEST_P(SecurityTest, EventSubscriberSendsItsTokenOverMutualTls) {
  FanoutServerOptions options = TlsOptions(/*mutual=*/true);
  options.access_tokens_file = tokens_file_;
  ASSERT_NO_FATAL_FAILURE(StartServer(options));
  ASSERT_NO_FATAL_FAILURE(PostExamples());

  ClientTlsOptions tls;
  tls.ca_file = certs_.ca;
  tls.cert_file = certs_.client_cert;
  tls.key_file = certs_.client_key;
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      MakeChannelCredentials(tls);
  ASSERT_TRUE(credentials.ok()) << credentials.status();

  EventSubscriberOptions subscriber_options;
  subscriber_options.target = target_;
  subscriber_options.credentials = *credentials;
  // The certificate is for localhost too; the check follows this name.
  subscriber_options.tls_server_name = "localhost";
  subscriber_options.access_token = kTicketsToken;
  subscriber_options.start.set_from_oldest(true);
  EventSubscriber subscriber(subscriber_options);
  std::vector<std::string> types;
  const absl::Status run = subscriber.Run([&](const Event& event) {
    types.push_back(event.event_type());
    if (types.size() == 5) subscriber.Stop();
    return absl::OkStatus();
  });
  EXPECT_TRUE(run.ok()) << run;
  EXPECT_THAT(types,
              ElementsAre("test.ping", "ticket.created", "ticket.note_added",
                          "ticket.resolved", "ticket.status_changed"));

  // A wrong token ends Run at once rather than retrying.
  subscriber_options.access_token = "wrong-token-1234567890";
  EventSubscriber refused(subscriber_options);
  const absl::Status status =
      refused.Run([](const Event&) { return absl::OkStatus(); });
  EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated) << status;

  // A name the certificate does not carry fails every handshake: the
  // subscriber keeps retrying (the server may yet be fixed), saying why.
  subscriber_options.access_token = kTicketsToken;
  subscriber_options.tls_server_name = "fanout.example";
  subscriber_options.initial_backoff = absl::Milliseconds(10);
  subscriber_options.max_backoff = absl::Milliseconds(50);
  std::vector<absl::Status> causes;
  EventSubscriber* misnamed_subscriber = nullptr;
  subscriber_options.on_retry = [&](const absl::Status& cause, absl::Duration,
                                    const StartPosition&) {
    causes.push_back(cause);
    if (causes.size() == 2) misnamed_subscriber->Stop();
  };
  EventSubscriber misnamed(subscriber_options);
  misnamed_subscriber = &misnamed;
  size_t received = 0;
  EXPECT_TRUE(misnamed
                  .Run([&](const Event&) {
                    ++received;
                    return absl::OkStatus();
                  })
                  .ok());
  EXPECT_EQ(received, 0u);
  ASSERT_EQ(causes.size(), 2u);
  EXPECT_EQ(causes[0].code(), absl::StatusCode::kUnavailable) << causes[0];
}

TEST_P(SecurityTest, OversizedSubscribeRequestIsRefusedBeforeItIsRead) {
  FanoutServerOptions options;
  ASSERT_NO_FATAL_FAILURE(StartServer(options));
  const size_t limit = MaxSubscribeRequestBytes(options.service);
  ASSERT_LT(limit, 64u << 10);

  // Within the limit, the service itself names what is wrong.
  const CallResult long_pattern =
      Subscribe(PlaintextChannel(), {std::string(1000, 'x')}, {}, 1);
  EXPECT_EQ(long_pattern.status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // Beyond it, gRPC refuses the message before the service sees it.
  const CallResult huge =
      Subscribe(PlaintextChannel(), {std::string(limit + 1, 'x')}, {}, 1);
  EXPECT_EQ(huge.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << huge.status.error_message();
}

TEST(LoopbackAddressTest, OnlyLoopbackAddressesCount) {
  // Where an open server (no tokens) listens without a warning.
  for (const char* address :
       {"127.0.0.1:50051", "127.1.2.3:0", "localhost:9000", "[::1]:50051"}) {
    EXPECT_TRUE(IsLoopbackAddress(address)) << address;
  }
  for (const char* address :
       {"0.0.0.0:50051", "[::]:50051", "10.0.0.5:50051", "fanout:50051",
        "128.0.0.1:1", "localhost.example.com:1", "[::2]:1"}) {
    EXPECT_FALSE(IsLoopbackAddress(address)) << address;
  }
}

TEST_P(SecurityTest, BadTokensFileStopsTheStart) {
  FanoutServerOptions options;
  options.access_tokens_file = tokens_file_;
  ASSERT_EQ(chmod(tokens_file_.c_str(), 0644), 0);
  options.allow_unsigned = true;
  UseBackend(&options);
  options.http.port = 0;
  options.grpc_address = "127.0.0.1:0";

  absl::StatusOr<std::unique_ptr<FanoutServer>> server =
      FanoutServer::Start(options);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kFailedPrecondition)
      << server.status();
  EXPECT_THAT(server.status().message(), HasSubstr("--access_tokens_file"));

  ASSERT_EQ(chmod(tokens_file_.c_str(), 0600), 0);
  std::ofstream(tokens_file_) << "tickets short *\n";
  server = FanoutServer::Start(options);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument)
      << server.status();
  EXPECT_THAT(server.status().message(), HasSubstr("line 1"));
}

INSTANTIATE_TEST_SUITE_P(Backends, SecurityTest, testing::kAllBackends,
                         testing::BackendName);

}  // namespace
}  // namespace fanout
