// The NATS JetStream backend of EventStore: events live in one JetStream
// stream, so that any number of servers, none holding state of its own,
// share one sequence of events.
//
//   Append     publishes the event (serialized, sequence unset) on its
//              type's subject (server/nats/subjects.h) with the delivery id
//              as JetStream's message id, and completes when JetStream
//              acknowledges it; a message id within the stream's duplicate
//              window is answered with the original's sequence.
//   sequences  are the stream's sequences, the same on every server.
//   the hub    is fed by one consumer per server that follows the whole
//              stream from the newest event at start-up ("the tail").
//   replays    read through a consumer per replaying stream, filtered on
//              the server when the subscription names one type or domain.
//
// Settings of the stream (replicas, storage, duplicate window, age and size
// limits) are applied when the stream is created; a stream that exists with
// other settings stops the start with an error naming each difference.

#ifndef FANOUT_SERVER_NATS_JETSTREAM_STORE_H_
#define FANOUT_SERVER_NATS_JETSTREAM_STORE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/work_queue.h"
#include "server/fanout/event_hub.h"
#include "server/store/event_store.h"

// cnats types, kept out of users of this header.
typedef struct __natsConnection natsConnection;
typedef struct __natsOptions natsOptions;
typedef struct __jsCtx jsCtx;
typedef struct __natsMsg natsMsg;
typedef struct jsPubAck jsPubAck;
typedef struct jsPubAckErr jsPubAckErr;

namespace fanout {

struct JetStreamOptions {
  // NATS server URLs ("nats://host:4222"); any reachable one will do, the
  // client learns the rest of a cluster from it.
  std::vector<std::string> servers;
  // The stream, and the prefix of its subjects ("<prefix>.>").
  std::string stream = "FANOUT";
  std::string subject_prefix = "fanout";
  // Copies JetStream keeps of each event (1, 3 or 5 in a cluster).
  int replicas = 1;
  // Keeps events in memory instead of files (lost when every replica
  // restarts).
  bool memory_storage = false;
  // How long a delivery id is remembered for duplicate detection.
  absl::Duration duplicate_window = absl::Hours(24);
  // Events older than this are removed, and the oldest go once the stream
  // holds more than max_bytes; zero means no limit.
  absl::Duration max_age = absl::Hours(24 * 7);
  uint64_t max_bytes = 0;
  // How long the start waits for NATS and JetStream (a cluster electing
  // its leaders) before giving up.
  absl::Duration connect_timeout = absl::Seconds(30);
  // Longest wait for one JetStream answer: a publish acknowledgement, a
  // stream lookup, a replay fetch.
  absl::Duration request_timeout = absl::Seconds(5);
  // Publishes awaiting JetStream's acknowledgement, at most; deliveries
  // beyond it are answered 503 at once.
  int max_pending_publishes = 4096;
  // Events the tail takes from JetStream per request. They are held in
  // memory together: at most this many times max_event_bytes.
  int tail_batch = 256;
  // How the server proves who it is to NATS: a credentials file (a user's
  // JWT and seed, as NATS' tools write them); empty for none, or for a
  // user and password in the server URLs.
  std::string creds_file;
  // TLS to NATS: the CAs that signed the NATS servers' certificates
  // (empty: the system's), and a client certificate and key for servers
  // that verify clients. TLS is used when any of these is given or a URL
  // is tls://.
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  // The largest event ingest makes; the start fails when the NATS servers
  // take smaller messages (their max_payload). Zero: not checked.
  uint64_t max_event_bytes = 0;
};

// Longest subject the store publishes on: NATS refuses protocol lines
// over 4 KiB, and closes the connection that sends one.
inline constexpr size_t kMaxNatsSubjectBytes = 3072;

// Returns InvalidArgument naming the first setting that makes no sense.
absl::Status ValidateJetStreamOptions(const JetStreamOptions& options);

class JetStreamStore final : public EventStore {
 public:
  // Connects, creates the stream (or checks the existing one's settings),
  // starts `hub` after the stream's newest event and starts the tail that
  // publishes every later event to it. `hub` must outlive the store.
  // Returns Unavailable when NATS or JetStream cannot be reached within
  // connect_timeout; FailedPrecondition when the stream's settings differ,
  // or when the servers' max_payload is below max_event_bytes.
  static absl::StatusOr<std::unique_ptr<JetStreamStore>> Open(
      JetStreamOptions options, EventHub* hub);

  // Waits (up to request_timeout) for publishes in flight, fails the rest
  // with Unavailable, stops the tail and disconnects.
  ~JetStreamStore() override;

  void Append(staffify::fanout::v1::Event event, AppendDone done) override;
  std::unique_ptr<EventReader> NewReader(
      const SubscriptionFilter& filter) override;
  absl::StatusOr<uint64_t> FirstSequenceSince(absl::Time time) override;
  absl::StatusOr<LogRange> Range() override;
  void RenderMetrics(std::string* out) override;
  bool Connected() const override;
  const char* name() const override { return "nats"; }

  // The event a message of the stream holds, or nullptr for a message
  // this service did not write.
  std::shared_ptr<const StoredEvent> ToEvent(natsMsg* msg) const;

  const JetStreamOptions& options() const { return options_; }
  // The newest sequence the tail received (and published to the hub).
  uint64_t tail_sequence() const { return tail_sequence_.load(); }
  jsCtx* jetstream() const { return js_; }

 private:
  struct PendingAppend {
    AppendDone done;
    std::string raw_body;  // To tell a differing duplicate.
  };

  JetStreamStore(JetStreamOptions options, EventHub* hub);

  // What State() reads of the stream.
  struct StreamState {
    LogRange range;
    // Events removed by retention were stored at or before this time
    // (InfinitePast: none was removed).
    absl::Time removed_until;
  };

  absl::Status Connect();
  // Applies the credentials and TLS settings to `nats_options`.
  absl::Status SetUpSecurity(natsOptions* nats_options);
  absl::StatusOr<StreamState> State();
  // Creates the stream, or checks that the existing one has our settings.
  absl::Status EnsureStream();
  // Follows the stream into the hub, on tail_.
  void TailLoop(uint64_t after);
  // Completes an acknowledged (or failed) publish, on cnats' thread.
  static void OnAck(jsCtx* js, natsMsg* msg, jsPubAck* ack,
                    jsPubAckErr* error, void* store);
  void CompleteAppend(natsMsg* msg, jsPubAck* ack, jsPubAckErr* error);
  // Answers a duplicate from the stored original, on duplicates_queue_.
  void ResolveDuplicate(uint64_t sequence, PendingAppend pending);
  // Counts a publish JetStream did not acknowledge, and logs it: at most
  // one line a second, with the number since the last line, as a stream
  // electing a leader fails every publish for seconds.
  void PublishFailed(const std::string& reason);

  const JetStreamOptions options_;
  EventHub* const hub_;
  natsConnection* connection_ = nullptr;
  jsCtx* js_ = nullptr;

  absl::Mutex mu_;
  std::unordered_map<natsMsg*, PendingAppend> pending_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_failure_log_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t unlogged_failures_ ABSL_GUARDED_BY(mu_) = 0;

  std::atomic<uint64_t> duplicates_{0};
  std::atomic<uint64_t> differing_duplicates_{0};
  std::atomic<uint64_t> publish_failures_{0};
  std::atomic<uint64_t> tail_restarts_{0};
  std::atomic<uint64_t> foreign_messages_{0};
  std::atomic<uint64_t> tail_sequence_{0};
  // Set when the connection to NATS was restored: the tail checks its
  // consumer.
  std::atomic<bool> reconnected_{false};

  std::thread tail_;
  // Declared last: destroyed (its tasks run) first.
  std::unique_ptr<WorkQueue> duplicates_queue_;
};

}  // namespace fanout

#endif  // FANOUT_SERVER_NATS_JETSTREAM_STORE_H_
