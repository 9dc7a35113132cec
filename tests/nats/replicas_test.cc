// Several servers in front of one JetStream stream: deliveries taken by one
// reach subscribers of another with the same sequences, a delivery posted
// to two at once is kept once, and neither a NATS node nor a server going
// away during a burst loses or repeats an acknowledged event.

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nats/nats.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/event_subscriber.h"
#include "client/webhook_sender.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/app/fanout_server.h"
#include "server/grpc/fanout_service.h"
#include "tests/util/nats_servers.h"
#include "tests/util/test_certificates.h"
#include "tests/util/temp_dir.h"

namespace fanout {
namespace {

using staffify::fanout::v1::Event;
using ::testing::ElementsAreArray;

std::string Delivery(int i) {
  return absl::StrCat(R"({"id":"wh_burst_)", i,
                      R"(","event":"test.ping","timestamp":)",
                      R"("2026-03-01T19:00:00.000Z","data":{"message":"m)", i,
                      R"("}})");
}

// What a POST was answered: the HTTP status, and for a 200 the status
// field and sequence of the JSON answer.
struct Answer {
  int http = 0;
  std::string status;
  uint64_t sequence = 0;
};

Answer PostTo(const FanoutServer& server, const std::string& body) {
  WebhookSender sender(
      HttpUrl{"127.0.0.1", std::to_string(server.http_port()), "/webhooks"});
  absl::StatusOr<HttpAnswer> answer = sender.PostJson(body);
  Answer result;
  if (!answer.ok()) return result;
  result.http = answer->status;
  if (answer->status == 200) {
    const boost::json::value json = boost::json::parse(answer->body);
    result.status = std::string(json.at("status").as_string());
    result.sequence = json.at("sequence").to_number<uint64_t>();
  }
  return result;
}

// Receives events with the client library on a thread of its own, from
// any of the servers `target` names, resuming after the last sequence it
// saw whenever its stream breaks.
class Receiver {
 public:
  explicit Receiver(const std::string& target,
                    std::vector<std::string> patterns = {}) {
    EventSubscriberOptions options;
    options.target = target;
    options.event_types = std::move(patterns);
    options.start.set_from_oldest(true);
    options.initial_backoff = absl::Milliseconds(20);
    options.max_backoff = absl::Milliseconds(200);
    subscriber_ = std::make_unique<EventSubscriber>(options);
    thread_ = std::thread([this] {
      absl::Status status = subscriber_->Run([this](const Event& event) {
        std::lock_guard<std::mutex> lock(mu_);
        sequences_.push_back(event.sequence());
        ids_.push_back(event.id());
        types_.push_back(event.event_type());
        cv_.notify_all();
        return absl::OkStatus();
      });
      EXPECT_TRUE(status.ok()) << status;
    });
  }

  ~Receiver() {
    subscriber_->Stop();
    thread_.join();
  }

  // Waits up to 60 s until `count` events arrived; returns their
  // sequences.
  std::vector<uint64_t> WaitFor(size_t count) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(60),
                 [&] { return sequences_.size() >= count; });
    return sequences_;
  }

  std::vector<std::string> ids() {
    std::lock_guard<std::mutex> lock(mu_);
    return ids_;
  }

  std::vector<std::string> types() {
    std::lock_guard<std::mutex> lock(mu_);
    return types_;
  }

  size_t received() {
    std::lock_guard<std::mutex> lock(mu_);
    return sequences_.size();
  }

 private:
  std::unique_ptr<EventSubscriber> subscriber_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint64_t> sequences_;
  std::vector<std::string> ids_;
  std::vector<std::string> types_;
};

class ReplicasTest : public ::testing::Test {
 protected:
  void StartNats(int nodes) {
    absl::StatusOr<std::unique_ptr<testing::NatsServers>> nats =
        testing::NatsServers::Start(nodes, nats_dir_.path());
    ASSERT_TRUE(nats.ok()) << nats.status();
    nats_ = *std::move(nats);
  }

  // Starts a server on the NATS servers; returns nullptr on failure.
  // A server on the NATS servers, on free loopback ports, taking unsigned
  // deliveries.
  FanoutServerOptions ReplicaOptions() const {
    FanoutServerOptions options;
    options.allow_unsigned = true;
    options.bus = nats_->urls();
    options.http.port = 0;
    options.grpc_address = "127.0.0.1:0";
    return options;
  }

  std::unique_ptr<FanoutServer> StartReplica(int stream_replicas = 1) {
    FanoutServerOptions options = ReplicaOptions();
    options.nats.replicas = stream_replicas;
    options.nats.request_timeout = absl::Seconds(2);
    options.shutdown_grace = absl::Seconds(2);
    absl::StatusOr<std::unique_ptr<FanoutServer>> server =
        FanoutServer::Start(options);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  // The node that leads the stream (where JetStream orders its writes), or
  // -1.
  int StreamLeader() {
    natsConnection* connection = nullptr;
    if (natsConnection_ConnectTo(&connection, nats_->urls().c_str()) !=
        NATS_OK) {
      return -1;
    }
    jsCtx* js = nullptr;
    jsStreamInfo* info = nullptr;
    int node = -1;
    if (natsConnection_JetStream(&js, connection, nullptr) == NATS_OK &&
        js_GetStreamInfo(&info, js, "FANOUT", nullptr, nullptr) == NATS_OK &&
        info->Cluster != nullptr && info->Cluster->Leader != nullptr) {
      node = nats_->NodeNamed(info->Cluster->Leader);
    }
    jsStreamInfo_Destroy(info);
    jsCtx_Destroy(js);
    natsConnection_Destroy(connection);
    return node;
  }

  static std::string GrpcTarget(const FanoutServer& server) {
    return absl::StrCat("127.0.0.1:", server.grpc_port());
  }

  testing::TempDir nats_dir_;
  std::unique_ptr<testing::NatsServers> nats_;
};

TEST_F(ReplicasTest, DeliveriesToOneReplicaReachSubscribersOfAnother) {
  StartNats(1);
  std::unique_ptr<FanoutServer> a = StartReplica();
  std::unique_ptr<FanoutServer> b = StartReplica();
  ASSERT_TRUE(a && b);
  Receiver on_b(GrpcTarget(*b));

  std::vector<uint64_t> assigned;
  for (int i = 1; i <= 60; ++i) {
    // Mostly to A, some to B: one sequence either way.
    const Answer answer = PostTo(i % 3 == 0 ? *b : *a, Delivery(i));
    ASSERT_EQ(answer.http, 200);
    ASSERT_EQ(answer.status, "accepted");
    assigned.push_back(answer.sequence);
  }
  std::vector<uint64_t> expected(60);
  for (size_t i = 0; i < expected.size(); ++i) expected[i] = i + 1;
  EXPECT_THAT(assigned, ElementsAreArray(expected));
  EXPECT_THAT(on_b.WaitFor(60), ElementsAreArray(expected));
  for (int i = 0; i < 60; ++i) {
    EXPECT_EQ(on_b.ids()[i], absl::StrCat("wh_burst_", i + 1));
  }
}

TEST_F(ReplicasTest, SameDeliveryPostedToTwoReplicasAtOnceIsStoredOnce) {
  StartNats(1);
  std::unique_ptr<FanoutServer> a = StartReplica();
  std::unique_ptr<FanoutServer> b = StartReplica();
  ASSERT_TRUE(a && b);

  constexpr int kDeliveries = 40;
  for (int i = 1; i <= kDeliveries; ++i) {
    Answer to_a;
    Answer to_b;
    std::thread racer([&] { to_b = PostTo(*b, Delivery(i)); });
    to_a = PostTo(*a, Delivery(i));
    racer.join();
    ASSERT_EQ(to_a.http, 200);
    ASSERT_EQ(to_b.http, 200);
    // One is kept; the other is told it is a duplicate of it.
    EXPECT_EQ((to_a.status == "accepted") + (to_b.status == "accepted"), 1)
        << to_a.status << " " << to_b.status;
    EXPECT_EQ(to_a.sequence, to_b.sequence);
    EXPECT_EQ(to_a.sequence, static_cast<uint64_t>(i));
  }
  ASSERT_EQ(a->store()->Range()->last, static_cast<uint64_t>(kDeliveries));
  Receiver everything(GrpcTarget(*a));
  EXPECT_EQ(everything.WaitFor(kDeliveries).size(),
            static_cast<size_t>(kDeliveries));
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(everything.received(), static_cast<size_t>(kDeliveries));
}

// Posts deliveries 1..count, each until it is acknowledged (as Staffify
// retries), to the servers in turn; returns the sequence each id was
// acknowledged with. `midway` runs after half of them.
std::map<int, uint64_t> PostUntilAcknowledged(
    const std::vector<FanoutServer*>& servers, int count,
    const std::function<void()>& midway) {
  std::map<int, uint64_t> acknowledged;
  for (int i = 1; i <= count; ++i) {
    if (i == count / 2) midway();
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    for (size_t attempt = 0; absl::Now() < deadline; ++attempt) {
      FanoutServer* server = servers[(i + attempt) % servers.size()];
      if (server == nullptr) continue;
      const Answer answer = PostTo(*server, Delivery(i));
      if (answer.http == 200) {
        acknowledged[i] = answer.sequence;
        break;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    EXPECT_EQ(acknowledged.count(i), 1u) << "delivery " << i;
  }
  return acknowledged;
}

TEST_F(ReplicasTest, StoppingOneNatsNodeDuringABurstLosesNoAcknowledgedEvent) {
  StartNats(3);
  std::unique_ptr<FanoutServer> a = StartReplica(/*stream_replicas=*/3);
  std::unique_ptr<FanoutServer> b = StartReplica(/*stream_replicas=*/3);
  ASSERT_TRUE(a && b);

  // The stream's leader goes: JetStream stops taking writes until the other
  // two elect a new one, and publishes in flight meanwhile are answered 503
  // (and retried) even where they were stored.
  constexpr int kDeliveries = 300;
  const std::map<int, uint64_t> acknowledged =
      PostUntilAcknowledged({a.get(), b.get()}, kDeliveries, [&] {
        const int leader = StreamLeader();
        ASSERT_GE(leader, 0);
        nats_->Kill(leader);
      });
  ASSERT_EQ(acknowledged.size(), static_cast<size_t>(kDeliveries));

  // Every acknowledged delivery is in the stream, once, at the sequence
  // it was acknowledged with; a retry of one JetStream kept but could not
  // acknowledge is answered as its duplicate.
  Receiver everything(absl::StrCat("ipv4:127.0.0.1:", a->grpc_port(),
                                   ",127.0.0.1:", b->grpc_port()));
  std::vector<uint64_t> sequences = everything.WaitFor(kDeliveries);
  ASSERT_EQ(sequences.size(), static_cast<size_t>(kDeliveries));
  const std::vector<std::string> ids = everything.ids();
  std::map<std::string, uint64_t> stored;
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_TRUE(stored.emplace(ids[i], sequences[i]).second)
        << ids[i] << " stored twice";
  }
  for (const auto& [i, sequence] : acknowledged) {
    const std::string id = absl::StrCat("wh_burst_", i);
    ASSERT_EQ(stored.count(id), 1u) << id << " lost";
    EXPECT_EQ(stored[id], sequence) << id;
  }
  EXPECT_TRUE(std::is_sorted(sequences.begin(), sequences.end()));
}

TEST_F(ReplicasTest, SubscribersOfAStoppedReplicaResumeOnAnotherWithoutGaps) {
  StartNats(1);
  std::unique_ptr<FanoutServer> a = StartReplica();
  std::unique_ptr<FanoutServer> b = StartReplica();
  ASSERT_TRUE(a && b);
  const int a_port = a->grpc_port();

  // A and then B: the channel uses A while it answers, then B.
  Receiver subscriber(absl::StrCat("ipv4:127.0.0.1:", a_port, ",127.0.0.1:",
                                   b->grpc_port()));
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (a->hub()->subscriber_count() == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(a->hub()->subscriber_count(), 1u);

  constexpr int kDeliveries = 400;
  FanoutServer* servers[] = {a.get(), b.get()};
  std::vector<FanoutServer*> targets(std::begin(servers), std::end(servers));
  std::atomic<bool> stopped_a{false};
  std::thread stopper;
  const std::map<int, uint64_t> acknowledged =
      PostUntilAcknowledged(targets, kDeliveries, [&] {
        // A goes away mid-burst, while it streams; the burst goes on
        // through B.
        targets[0] = nullptr;
        stopper = std::thread([&] {
          a->Shutdown();
          stopped_a = true;
        });
      });
  stopper.join();
  ASSERT_TRUE(stopped_a);
  ASSERT_EQ(acknowledged.size(), static_cast<size_t>(kDeliveries));

  std::vector<uint64_t> expected(kDeliveries);
  for (int i = 0; i < kDeliveries; ++i) expected[i] = i + 1;
  EXPECT_THAT(subscriber.WaitFor(kDeliveries), ElementsAreArray(expected));
  EXPECT_EQ(b->hub()->subscriber_count(), 1u);
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(subscriber.received(), static_cast<size_t>(kDeliveries));
}

TEST_F(ReplicasTest, WhileNatsIsDownDeliveriesGet503AndReadinessFails) {
  StartNats(1);
  std::unique_ptr<FanoutServer> a = StartReplica();
  ASSERT_TRUE(a);
  Receiver subscriber(GrpcTarget(*a));
  ASSERT_EQ(PostTo(*a, Delivery(1)).status, "accepted");
  ASSERT_TRUE(a->Ready());

  nats_->Stop(0);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (a->Ready() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_FALSE(a->Ready());
  // Not kept, and said so: Staffify retries.
  EXPECT_EQ(PostTo(*a, Delivery(2)).http, 503);

  ASSERT_TRUE(nats_->Restart(0).ok());
  const std::map<int, uint64_t> acknowledged =
      PostUntilAcknowledged({a.get()}, 3, [] {});
  EXPECT_TRUE(a->Ready());
  EXPECT_EQ(acknowledged.at(3), 3u);
  // The subscriber saw every event once, across the outage.
  EXPECT_THAT(subscriber.WaitFor(3), ElementsAreArray({1u, 2u, 3u}));
}

TEST_F(ReplicasTest, StreamWithOtherSettingsStopsTheStartNamingEachOne) {
  StartNats(1);
  std::unique_ptr<FanoutServer> first = StartReplica();
  ASSERT_TRUE(first);
  ASSERT_EQ(PostTo(*first, Delivery(1)).status, "accepted");

  FanoutServerOptions options = ReplicaOptions();
  options.nats.duplicate_window = absl::Hours(2);
  options.nats.memory_storage = true;
  options.log.retention_age = absl::Hours(48);
  absl::StatusOr<std::unique_ptr<FanoutServer>> other =
      FanoutServer::Start(options);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  const std::string message(other.status().message());
  EXPECT_THAT(message, ::testing::HasSubstr("FANOUT exists with other"));
  EXPECT_THAT(message, ::testing::HasSubstr("storage is file (settings give "
                                            "memory)"));
  EXPECT_THAT(message, ::testing::HasSubstr("duplicate window is 24h "
                                            "(settings give 2h)"));
  EXPECT_THAT(message, ::testing::HasSubstr("max age is 168h (settings give "
                                            "48h)"));
  EXPECT_THAT(message, ::testing::Not(::testing::HasSubstr("replicas")));

  // Nothing was changed: the first server goes on, and so does a second
  // one with the same settings.
  EXPECT_EQ(PostTo(*first, Delivery(2)).sequence, 2u);
  std::unique_ptr<FanoutServer> same = StartReplica();
  ASSERT_TRUE(same);
  EXPECT_EQ(PostTo(*same, Delivery(3)).sequence, 3u);
}

TEST_F(ReplicasTest, StreamJetStreamRefusesStopsTheStartAtOnce) {
  StartNats(1);
  FanoutServerOptions options = ReplicaOptions();
  options.nats.replicas = 3;  // One node cannot hold three copies.
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<FanoutServer>> server =
      FanoutServer::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kFailedPrecondition)
      << server.status();
  EXPECT_THAT(std::string(server.status().message()),
              ::testing::HasSubstr("create stream FANOUT"));
  // Not retried until --nats_connect_timeout (30 s).
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST_F(ReplicasTest, NatsThatTakesSmallerMessagesThanEventsStopsTheStart) {
  StartNats(1);  // max_payload 8 MB.
  FanoutServerOptions options = ReplicaOptions();
  options.http.max_body_bytes = 12 << 20;
  options.converter.max_event_bytes = 16 << 20;
  absl::StatusOr<std::unique_ptr<FanoutServer>> server =
      FanoutServer::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(server.status().message()),
              ::testing::HasSubstr("max_payload"));
}

TEST_F(ReplicasTest, UnreachableNatsStopsTheStartAfterTheConnectTimeout) {
  StartNats(1);
  const std::string url = nats_->url(0);
  nats_->Stop(0);
  FanoutServerOptions options = ReplicaOptions();
  options.bus = url;
  options.nats.connect_timeout = absl::Milliseconds(500);
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<FanoutServer>> server =
      FanoutServer::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(server.status().message()),
              ::testing::HasSubstr(url));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

// NATS servers that take clients over mutual TLS only: the server connects
// with the CA and client certificate it is given, and a mistake in them
// stops its start naming the flag.
TEST_F(ReplicasTest, ConnectsOverMutualTlsWithTheFilesItIsGiven) {
  absl::StatusOr<testing::TestCertificates> certs =
      testing::TestCertificates::Create(nats_dir_.path());
  ASSERT_TRUE(certs.ok()) << certs.status();
  absl::StatusOr<std::unique_ptr<testing::NatsServers>> nats =
      testing::NatsServers::Start(
          1, nats_dir_.path(),
          absl::StrCat("tls {\n  cert_file: \"", certs->server_cert,
                       "\"\n  key_file: \"", certs->server_key,
                       "\"\n  ca_file: \"", certs->ca,
                       "\"\n  verify: true\n}\n"));
  ASSERT_TRUE(nats.ok()) << nats.status();
  nats_ = *std::move(nats);

  FanoutServerOptions options = ReplicaOptions();
  options.nats.connect_timeout = absl::Seconds(1);
  options.nats.tls_ca_file = certs->ca;
  options.nats.tls_cert_file = certs->client_cert;
  options.nats.tls_key_file = certs->client_key;
  absl::StatusOr<std::unique_ptr<FanoutServer>> server =
      FanoutServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(PostTo(**server, Delivery(1)).status, "accepted");
  server->reset();

  // Without a client certificate the NATS server refuses the connection.
  FanoutServerOptions anonymous = options;
  anonymous.nats.tls_cert_file.clear();
  anonymous.nats.tls_key_file.clear();
  server = FanoutServer::Start(anonymous);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable)
      << server.status();

  // A CA that did not sign the NATS server's certificate is refused.
  FanoutServerOptions wrong_ca = options;
  wrong_ca.nats.tls_ca_file = certs->other_ca;
  server = FanoutServer::Start(wrong_ca);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable)
      << server.status();

  // Files that are missing or unsafe stop the start naming their flag.
  FanoutServerOptions missing = options;
  missing.nats.tls_ca_file = nats_dir_.path() + "/missing.pem";
  server = FanoutServer::Start(missing);
  EXPECT_THAT(std::string(server.status().message()),
              ::testing::HasSubstr("--nats_tls_ca_file"));
  ASSERT_EQ(chmod(certs->client_key.c_str(), 0644), 0);
  server = FanoutServer::Start(options);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(server.status().message()),
              ::testing::HasSubstr("--nats_tls_key_file"));
  FanoutServerOptions creds = options;
  creds.nats.creds_file = certs->ca;  // Not a credentials file.
  ASSERT_EQ(chmod(certs->client_key.c_str(), 0600), 0);
  ASSERT_EQ(chmod(certs->ca.c_str(), 0600), 0);
  server = FanoutServer::Start(creds);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(server.status().message()),
              ::testing::HasSubstr("--nats_creds_file"));
}

TEST_F(ReplicasTest, IdsThatDifferOnlyInSpacesAreDifferentDeliveries) {
  StartNats(1);
  std::unique_ptr<FanoutServer> a = StartReplica();
  ASSERT_TRUE(a);
  const auto post = [&](const std::string& id) {
    return PostTo(*a, absl::StrCat(R"({"id":")", id,
                                   R"(","event":"test.ping","timestamp":)",
                                   R"("2026-03-01T19:00:00Z","data":{}})"));
  };
  EXPECT_EQ(post("lead").status, "accepted");
  EXPECT_EQ(post(" lead").status, "accepted");
  EXPECT_EQ(post("lead ").status, "accepted");
  EXPECT_EQ(post("%20lead").status, "accepted");
  const Answer again = post(" lead");
  EXPECT_EQ(again.status, "duplicate");
  EXPECT_EQ(again.sequence, 2u);
}

TEST_F(ReplicasTest, SinceTimeAtOrBeforeTheEpochReplaysEverything) {
  StartNats(1);
  std::unique_ptr<FanoutServer> a = StartReplica();
  ASSERT_TRUE(a);
  for (int i = 1; i <= 3; ++i) ASSERT_EQ(PostTo(*a, Delivery(i)).sequence, i);
  for (const int64_t seconds : {int64_t{0}, int64_t{-1}, -62135596800}) {
    staffify::fanout::v1::StartPosition since;
    since.mutable_since_time()->set_seconds(seconds);
    absl::StatusOr<std::optional<uint64_t>> after =
        FanoutService(a->hub(), a->store()).ResolveStart(since);
    ASSERT_TRUE(after.ok()) << seconds << ": " << after.status();
    EXPECT_EQ(*after, std::optional<uint64_t>(0)) << seconds;
  }
}

TEST_F(ReplicasTest, SinceTimeAfterEveryRemovedEventIsValidOnAnEmptyStream) {
  StartNats(1);
  FanoutServerOptions options = ReplicaOptions();
  options.log.retention_age = absl::Seconds(1);
  options.nats.duplicate_window = absl::Seconds(1);
  absl::StatusOr<std::unique_ptr<FanoutServer>> a =
      FanoutServer::Start(options);
  ASSERT_TRUE(a.ok()) << a.status();
  const absl::Time before = absl::Now() - absl::Seconds(1);
  for (int i = 1; i <= 3; ++i) ASSERT_EQ(PostTo(**a, Delivery(i)).sequence, i);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while ((*a)->store()->Range()->first != 4u && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ((*a)->store()->Range()->first, 4u);

  FanoutService service((*a)->hub(), (*a)->store());
  staffify::fanout::v1::StartPosition since;
  since.mutable_since_time()->set_seconds(absl::ToUnixSeconds(absl::Now()));
  absl::StatusOr<std::optional<uint64_t>> after = service.ResolveStart(since);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(*after, std::optional<uint64_t>(3));
  since.mutable_since_time()->set_seconds(absl::ToUnixSeconds(before));
  EXPECT_EQ(service.ResolveStart(since).status().code(),
            absl::StatusCode::kOutOfRange);
}

// A replay whose byte limit is below each event's size reads them one at a
// time (JetStream refuses a fetch whose next message exceeds its limit).
TEST_F(ReplicasTest, ReplayOfEventsLargerThanItsByteLimitReadsEachOne) {
  StartNats(1);
  FanoutServerOptions options = ReplicaOptions();
  options.hub.window_events = 2;
  options.service.replay_batch_bytes = 100;
  absl::StatusOr<std::unique_ptr<FanoutServer>> a =
      FanoutServer::Start(options);
  ASSERT_TRUE(a.ok()) << a.status();
  const std::string text(1000, 'x');
  for (int i = 1; i <= 10; ++i) {
    ASSERT_EQ(PostTo(**a, absl::StrCat(R"({"id":"wh_big_)", i,
                                       R"(","event":"test.ping","timestamp":)",
                                       R"("2026-03-01T19:00:00Z","data":{)",
                                       R"("message":")", text, R"("}})"))
                  .sequence,
              static_cast<uint64_t>(i));
  }
  Receiver replaying(GrpcTarget(**a));
  EXPECT_THAT(replaying.WaitFor(10),
              ElementsAreArray({1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u, 9u, 10u}));
}

// A message on the stream's subjects that this service did not write is
// skipped and counted; events around it are delivered as usual.
TEST_F(ReplicasTest, MessageThisServiceDidNotWriteIsSkipped) {
  StartNats(1);
  std::unique_ptr<FanoutServer> a = StartReplica();
  ASSERT_TRUE(a);
  ASSERT_EQ(PostTo(*a, Delivery(1)).sequence, 1u);
  natsConnection* connection = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&connection, nats_->urls().c_str()),
            NATS_OK);
  jsCtx* js = nullptr;
  ASSERT_EQ(natsConnection_JetStream(&js, connection, nullptr), NATS_OK);
  jsPubAck* ack = nullptr;
  // "%zz" is no escape EventTypeSubject writes.
  ASSERT_EQ(js_Publish(&ack, js, "fanout.bad%zz", "junk", 4, nullptr, nullptr),
            NATS_OK);
  EXPECT_EQ(ack->Sequence, 2u);
  jsPubAck_Destroy(ack);
  jsCtx_Destroy(js);
  natsConnection_Destroy(connection);
  ASSERT_EQ(PostTo(*a, Delivery(3)).sequence, 3u);

  Receiver replaying(GrpcTarget(*a));
  EXPECT_THAT(replaying.WaitFor(2), ElementsAreArray({1u, 3u}));
  EXPECT_THAT(a->RenderMetrics(),
              ::testing::HasSubstr("fanout_nats_foreign_messages_total 1\n"));
}

// Types as a newer sender might write them: NATS wildcards, the subject
// encoding's own escape, characters outside ASCII. Each reaches exactly the
// subscribers whose patterns match it, whether they read it live or replay
// it through a consumer JetStream filters.
TEST_F(ReplicasTest, TypesWithCharactersNatsTreatsSpeciallyRouteExactly) {
  StartNats(1);
  std::unique_ptr<FanoutServer> a = StartReplica();
  ASSERT_TRUE(a);
  const std::vector<std::string> types = {
      "ticket.created", "ticket.>",  "a>b.x",   "a%3Eb.x",
      "a>b",            "caf\xC3\xA9.open", "ticket", "ticket.>.x"};
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases =
      {{"ticket.created", {"ticket.created"}},
       {"ticket.>", {"ticket.>"}},
       {"ticket.*", {"ticket.created", "ticket.>", "ticket.>.x"}},
       {"a>b.*", {"a>b.x"}},
       {"a%3Eb.*", {"a%3Eb.x"}},
       {"a>b", {"a>b"}},
       {"caf\xC3\xA9.*", {"caf\xC3\xA9.open"}},
       {"ticket", {"ticket"}}};

  std::vector<std::unique_ptr<Receiver>> live;
  for (const auto& [pattern, expected] : cases) {
    live.push_back(
        std::make_unique<Receiver>(GrpcTarget(*a), std::vector{pattern}));
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (a->hub()->subscriber_count() < cases.size() &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  for (size_t i = 0; i < types.size(); ++i) {
    const std::string body = absl::StrCat(
        R"({"id":"wh_type_)", i, R"(","event":")", types[i],
        R"(","timestamp":"2026-03-01T19:00:00Z","data":{}})");
    ASSERT_EQ(PostTo(*a, body).status, "accepted") << types[i];
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& [pattern, expected] = cases[i];
    SCOPED_TRACE(pattern);
    live[i]->WaitFor(expected.size());
    Receiver replaying(GrpcTarget(*a), {pattern});
    replaying.WaitFor(expected.size());
    absl::SleepFor(absl::Milliseconds(100));  // Nothing more comes.
    EXPECT_THAT(live[i]->types(), ElementsAreArray(expected));
    EXPECT_THAT(replaying.types(), ElementsAreArray(expected));
  }
}

}  // namespace
}  // namespace fanout
