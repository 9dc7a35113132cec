// Checks that NatsServers gives tests working NATS deployments, driven with
// the NATS C client as a JetStream backend would be: a standalone server
// that stores and keeps a message, a three-node cluster whose replicated
// stream keeps every acknowledged message through a node's SIGKILL and
// restart, and no server process outliving its owner.

#include "tests/util/nats_servers.h"

#include <nats/nats.h>
#include <signal.h>
#include <sys/types.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/util/temp_dir.h"

namespace fanout::testing {
namespace {

constexpr char kStream[] = "EVENTS";
constexpr char kSubject[] = "events.created";

struct ConnectionDeleter {
  void operator()(natsConnection* connection) const {
    natsConnection_Destroy(connection);
  }
};
struct ContextDeleter {
  void operator()(jsCtx* context) const { jsCtx_Destroy(context); }
};
struct StreamInfoDeleter {
  void operator()(jsStreamInfo* info) const { jsStreamInfo_Destroy(info); }
};
struct PubAckDeleter {
  void operator()(jsPubAck* ack) const { jsPubAck_Destroy(ack); }
};
using StreamInfo = std::unique_ptr<jsStreamInfo, StreamInfoDeleter>;
using PubAck = std::unique_ptr<jsPubAck, PubAckDeleter>;

absl::Status NatsError(const std::string& what, natsStatus status,
                       jsErrCode code = static_cast<jsErrCode>(0)) {
  return absl::UnavailableError(
      absl::StrCat(what, ": ", natsStatus_GetText(status), " (JetStream error ",
                   static_cast<int>(code), ") ", nats_GetLastError(nullptr)));
}

// A cnats connection to any of a deployment's servers, reconnecting to
// another one when its server goes away, with a JetStream context whose
// requests wait at most a second.
class JetStreamClient {
 public:
  static absl::StatusOr<std::unique_ptr<JetStreamClient>> Connect(
      const std::string& urls) {
    std::vector<std::string> servers = absl::StrSplit(urls, ',');
    std::vector<const char*> server_pointers;
    for (const std::string& server : servers) {
      server_pointers.push_back(server.c_str());
    }
    natsOptions* options = nullptr;
    natsStatus status = natsOptions_Create(&options);
    if (status == NATS_OK) {
      status = natsOptions_SetServers(options, server_pointers.data(),
                                      static_cast<int>(servers.size()));
    }
    if (status == NATS_OK) status = natsOptions_SetMaxReconnect(options, 100);
    if (status == NATS_OK) status = natsOptions_SetReconnectWait(options, 100);
    natsConnection* connection = nullptr;
    if (status == NATS_OK) {
      status = natsConnection_Connect(&connection, options);
    }
    natsOptions_Destroy(options);
    if (status != NATS_OK) return NatsError("connect to " + urls, status);
    auto client = std::unique_ptr<JetStreamClient>(new JetStreamClient);
    client->connection_.reset(connection);

    jsOptions js_options;
    jsOptions_Init(&js_options);
    js_options.Wait = 1000;
    jsCtx* context = nullptr;
    status = natsConnection_JetStream(&context, connection, &js_options);
    if (status != NATS_OK) return NatsError("JetStream context", status);
    client->context_.reset(context);
    return client;
  }

  // Creates kStream on kSubject's prefix, in files, with `replicas`.
  absl::Status AddStream(int replicas) {
    jsStreamConfig config;
    jsStreamConfig_Init(&config);
    const char* subjects[] = {"events.>"};
    config.Name = kStream;
    config.Subjects = subjects;
    config.SubjectsLen = 1;
    config.Storage = js_FileStorage;
    config.Replicas = replicas;
    jsStreamInfo* info = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    const natsStatus status =
        js_AddStream(&info, context_.get(), &config, nullptr, &code);
    StreamInfo owned(info);
    if (status != NATS_OK) return NatsError("add stream", status, code);
    return absl::OkStatus();
  }

  absl::StatusOr<StreamInfo> Info() {
    jsStreamInfo* info = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    const natsStatus status =
        js_GetStreamInfo(&info, context_.get(), kStream, nullptr, &code);
    StreamInfo owned(info);
    if (status != NATS_OK) return NatsError("stream info", status, code);
    return owned;
  }

  // Publishes `payload` to kSubject once, with message id `id`.
  absl::StatusOr<PubAck> Publish(const std::string& id,
                                 const std::string& payload) {
    jsPubOptions options;
    jsPubOptions_Init(&options);
    options.MsgId = id.c_str();
    jsPubAck* ack = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    const natsStatus status =
        js_Publish(&ack, context_.get(), kSubject, payload.data(),
                   static_cast<int>(payload.size()), &options, &code);
    PubAck owned(ack);
    if (status != NATS_OK) return NatsError("publish " + id, status, code);
    return owned;
  }

  // Publishes until the stream acknowledges or `timeout` passes: while a
  // cluster elects a new stream leader, publishes time out or find no
  // responder. The message id makes the stream store a message once even
  // if an earlier attempt was stored but its acknowledgement lost.
  absl::StatusOr<PubAck> PublishUntilAcknowledged(const std::string& id,
                                                  const std::string& payload,
                                                  absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      absl::StatusOr<PubAck> ack = Publish(id, payload);
      if (ack.ok() || absl::Now() >= deadline) return ack;
      absl::SleepFor(absl::Milliseconds(100));
    }
  }

 private:
  JetStreamClient() = default;

  std::unique_ptr<natsConnection, ConnectionDeleter> connection_;
  std::unique_ptr<jsCtx, ContextDeleter> context_;
};

// Whether a process with `pid` exists (a zombie counts: it is not reaped).
bool ProcessExists(pid_t pid) { return kill(pid, 0) == 0 || errno != ESRCH; }

// Whether `pid` has ended, reaped or not: it is gone, or a zombie of a
// parent that has yet to reap it.
bool ProcessEnded(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return true;
  // "pid (comm) state ...": comm may hold spaces and parentheses.
  const size_t comm_end = line.rfind(')');
  return comm_end == std::string::npos || comm_end + 2 >= line.size() ||
         line[comm_end + 2] == 'Z' || line[comm_end + 2] == 'X';
}

TEST(NatsServersTest, StandaloneServerAcknowledgesFirstPublishAsSequenceOne) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<NatsServers>> servers =
      NatsServers::Start(1, dir.path());
  ASSERT_TRUE(servers.ok()) << servers.status();
  ASSERT_EQ((*servers)->nodes(), 1);
  EXPECT_TRUE((*servers)->running(0));
  EXPECT_EQ((*servers)->urls(), (*servers)->url(0));
  EXPECT_EQ((*servers)->url(0).rfind("nats://127.0.0.1:", 0), 0u);

  absl::StatusOr<std::unique_ptr<JetStreamClient>> client =
      JetStreamClient::Connect((*servers)->urls());
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE((*client)->AddStream(1).ok());
  absl::StatusOr<PubAck> ack = (*client)->Publish("first", "hello");
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(std::string((*ack)->Stream), kStream);
  EXPECT_EQ((*ack)->Sequence, 1u);
  EXPECT_FALSE((*ack)->Duplicate);
}

TEST(NatsServersTest, StandaloneServerKeepsItsStoreAcrossStopAndRestart) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<NatsServers>> servers =
      NatsServers::Start(1, dir.path());
  ASSERT_TRUE(servers.ok()) << servers.status();
  const std::string url = (*servers)->url(0);
  {
    absl::StatusOr<std::unique_ptr<JetStreamClient>> client =
        JetStreamClient::Connect((*servers)->urls());
    ASSERT_TRUE(client.ok()) << client.status();
    ASSERT_TRUE((*client)->AddStream(1).ok());
    ASSERT_TRUE((*client)->Publish("kept", "hello").ok());
  }

  const pid_t stopped = (*servers)->pid(0);
  (*servers)->Stop(0);
  EXPECT_FALSE((*servers)->running(0));
  EXPECT_EQ((*servers)->pid(0), 0);
  EXPECT_FALSE(ProcessExists(stopped));

  const absl::Status restarted = (*servers)->Restart(0);
  ASSERT_TRUE(restarted.ok()) << restarted;
  EXPECT_TRUE((*servers)->running(0));
  EXPECT_EQ((*servers)->url(0), url);
  absl::StatusOr<std::unique_ptr<JetStreamClient>> client =
      JetStreamClient::Connect((*servers)->urls());
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<StreamInfo> info = (*client)->Info();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ((*info)->State.Msgs, 1u);
}

TEST(NatsServersTest, ClusterKeepsReplicatedStreamThroughKillAndRestart) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<NatsServers>> servers =
      NatsServers::Start(3, dir.path());
  ASSERT_TRUE(servers.ok()) << servers.status();
  ASSERT_EQ((*servers)->nodes(), 3);
  EXPECT_EQ((*servers)->urls(),
            absl::StrCat((*servers)->url(0), ",", (*servers)->url(1), ",",
                         (*servers)->url(2)));

  absl::StatusOr<std::unique_ptr<JetStreamClient>> client =
      JetStreamClient::Connect((*servers)->urls());
  ASSERT_TRUE(client.ok()) << client.status();
  const absl::Status added = (*client)->AddStream(3);
  ASSERT_TRUE(added.ok()) << added;
  for (int i = 1; i <= 100; ++i) {
    absl::StatusOr<PubAck> ack =
        (*client)->Publish(absl::StrCat("message-", i), "before");
    ASSERT_TRUE(ack.ok()) << ack.status();
    EXPECT_EQ((*ack)->Sequence, static_cast<uint64_t>(i));
  }

  // Killing the stream's leader makes the other two elect a new one.
  absl::StatusOr<StreamInfo> info = (*client)->Info();
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_NE((*info)->Cluster, nullptr);
  ASSERT_NE((*info)->Cluster->Leader, nullptr);
  const int leader = (*servers)->NodeNamed((*info)->Cluster->Leader);
  ASSERT_GE(leader, 0) << (*info)->Cluster->Leader;
  EXPECT_EQ((*info)->Cluster->ReplicasLen, 2);
  const absl::Time killed = absl::Now();
  (*servers)->Kill(leader);
  EXPECT_FALSE((*servers)->running(leader));

  for (int i = 101; i <= 200; ++i) {
    absl::StatusOr<PubAck> ack = (*client)->PublishUntilAcknowledged(
        absl::StrCat("message-", i), "after", absl::Seconds(20));
    ASSERT_TRUE(ack.ok()) << ack.status();
    EXPECT_EQ((*ack)->Sequence, static_cast<uint64_t>(i));
  }
  // How long a JetStream backend must ride out a lost stream leader.
  std::cerr << "publishes were acknowledged again "
            << absl::FormatDuration(absl::Now() - killed)
            << " after the stream leader was killed\n";

  const absl::Status restarted = (*servers)->Restart(leader);
  ASSERT_TRUE(restarted.ok()) << restarted;
  EXPECT_TRUE((*servers)->running(leader));
  info = (*client)->Info();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ((*info)->State.Msgs, 200u);
  EXPECT_EQ((*info)->State.FirstSeq, 1u);
  EXPECT_EQ((*info)->State.LastSeq, 200u);

  // The restarted node is a replica again, caught up, as the stream's
  // leader sees it (which it learns a moment after the node does).
  const std::string& restarted_name = (*servers)->server_name(leader);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  bool caught_up = false;
  while (!caught_up && absl::Now() < deadline) {
    info = (*client)->Info();
    ASSERT_TRUE(info.ok()) << info.status();
    ASSERT_NE((*info)->Cluster, nullptr);
    const jsClusterInfo& cluster = *(*info)->Cluster;
    caught_up = cluster.Leader != nullptr && cluster.Leader == restarted_name;
    for (int i = 0; i < cluster.ReplicasLen; ++i) {
      const jsPeerInfo& peer = *cluster.Replicas[i];
      if (peer.Name == restarted_name) {
        caught_up = peer.Current && !peer.Offline && peer.Lag == 0;
      }
    }
    if (!caught_up) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(caught_up) << restarted_name << " is not a current replica";
}

TEST(NatsServersTest, DestructorEndsAndReapsEveryProcess) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<NatsServers>> servers =
      NatsServers::Start(3, dir.path());
  ASSERT_TRUE(servers.ok()) << servers.status();
  std::vector<pid_t> pids;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE((*servers)->running(i));
    pids.push_back((*servers)->pid(i));
    ASSERT_TRUE(ProcessExists(pids.back()));
  }

  servers->reset();
  for (pid_t pid : pids) EXPECT_FALSE(ProcessExists(pid)) << pid;
}

// A test process that dies mid-way, without running any destructor, takes
// its servers with it. (Death tests run first, before cnats starts its
// threads, so the forked child is a copy of a single-threaded process.)
TEST(NatsServersDeathTest, ServersDieWithTheProcessThatStartedThem) {
  GTEST_FLAG_SET(death_test_style, "fast");
  TempDir dir;
  const std::string pid_path = dir.path() + "/server.pid";
  EXPECT_EXIT(
      {
        absl::StatusOr<std::unique_ptr<NatsServers>> servers =
            NatsServers::Start(1, dir.path());
        if (!servers.ok()) {
          std::cerr << servers.status() << "\n";
          std::_Exit(1);
        }
        std::ofstream(pid_path) << (*servers)->pid(0) << "\n";
        raise(SIGKILL);
      },
      ::testing::KilledBySignal(SIGKILL), "");

  pid_t pid = 0;
  std::ifstream(pid_path) >> pid;
  ASSERT_GT(pid, 0);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!ProcessEnded(pid) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_TRUE(ProcessEnded(pid)) << pid;
}

}  // namespace
}  // namespace fanout::testing
