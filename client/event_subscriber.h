// A resuming subscriber for the Fanout service, for C++ services that want
// the event stream without handling reconnection themselves.
//
// EventSubscriber holds one Subscribe call open at a time and hands every
// event to a callback. When the stream breaks for a reason that may pass
// (the server restarted, the network dropped, the subscriber fell behind),
// it waits with exponential backoff and subscribes again with
// after_sequence = the last sequence it saw, so that the callback sees every
// matching event once, in sequence order, with no gap.

#ifndef FANOUT_CLIENT_EVENT_SUBSCRIBER_H_
#define FANOUT_CLIENT_EVENT_SUBSCRIBER_H_

#include <grpcpp/channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/status.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "staffify/fanout/v1/fanout.grpc.pb.h"

namespace fanout {

// Handles one event. Returning a non-OK status stops EventSubscriber::Run,
// which then returns that status.
using EventCallback =
    std::function<absl::Status(const staffify::fanout::v1::Event& event)>;

// Handles one heartbeat: every event up to `sequence` has been considered
// for the stream. Returning a non-OK status stops EventSubscriber::Run, which
// then returns that status.
using HeartbeatCallback = std::function<absl::Status(uint64_t sequence)>;

// Told about each reconnection before its wait: `cause` is the status that
// ended the stream, `delay` the wait before the next attempt, and
// `next_start` where the next call will start.
using RetryCallback =
    std::function<void(const absl::Status& cause, absl::Duration delay,
                       const staffify::fanout::v1::StartPosition& next_start)>;

// How an EventSubscriber connects and where its stream starts.
struct EventSubscriberOptions {
  // host:port (or any gRPC target name) of the Fanout service. Required.
  std::string target;

  // Event type patterns, as in SubscribeRequest.event_types: "ticket.created",
  // "ticket.*", "*". Empty means every type.
  std::vector<std::string> event_types;

  // Where the first call starts. Unset (the default) means new events only.
  // Later calls resume after the last sequence seen, or use this position
  // again while nothing has been seen.
  staffify::fanout::v1::StartPosition start;

  // Credentials for the channel. Null means plaintext
  // (grpc::InsecureChannelCredentials()). For TLS and mutual TLS from PEM
  // files, see MakeChannelCredentials in client/channel_credentials.h.
  std::shared_ptr<grpc::ChannelCredentials> credentials;

  // With TLS: the name the server's certificate must carry, when it is not
  // the host part of `target` (e.g. a certificate for "fanout.internal"
  // reached at 10.0.0.5:50051). Empty: the host part of `target`.
  std::string tls_server_name;

  // Sent with every call as "authorization: Bearer <access_token>" when
  // not empty, for servers with --access_tokens_file. REQUIRES: printable
  // ASCII without spaces. The server refuses a missing or unknown token
  // with UNAUTHENTICATED, and types outside the token's grant with
  // PERMISSION_DENIED; Run returns either at once.
  std::string access_token;

  // Reconnection backoff. The first wait after a broken stream is
  // initial_backoff; each further attempt that fails without receiving
  // anything multiplies it by backoff_multiplier, up to max_backoff. A stream
  // that delivered an event or a heartbeat resets it to initial_backoff.
  // Each actual wait is drawn uniformly from
  // [nominal * (1 - jitter), nominal], so it never exceeds max_backoff and
  // subscribers that broke together do not reconnect together.
  // REQUIRES: 0 < initial_backoff <= max_backoff, backoff_multiplier >= 1,
  // 0 <= jitter <= 1 (Run returns InvalidArgument otherwise).
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(10);
  double backoff_multiplier = 2.0;
  double jitter = 0.2;

  // Largest message accepted from the server. An event holds the delivery's
  // body twice (raw and typed), so this must be at least twice the server's
  // --max_body_bytes plus some headroom. REQUIRES: > 0.
  // A larger message ends the stream with RESOURCE_EXHAUSTED, which Run
  // retries like a server's RESOURCE_EXHAUSTED, so it keeps failing on the
  // same event every max_backoff (on_retry shows it).
  // TODO: tell the client-side refusal apart and end Run with it.
  int max_receive_message_bytes = 64 << 20;

  // Optional. Called, on the thread running Run, for each heartbeat.
  HeartbeatCallback on_heartbeat;

  // Optional. Called, on the thread running Run, before each reconnection
  // wait; meant for logging.
  RetryCallback on_retry;

  // Optional; for tests. Replaces the reconnection wait: called on the
  // thread running Run with the wait's length, and should return when the
  // wait is over. Stop() cannot cut a replaced wait short, but Run checks
  // for Stop() as soon as it returns. Unset: a real wait that Stop() ends.
  std::function<void(absl::Duration)> sleep_for;
};

// Keeps a Subscribe stream going, resuming after breaks, and hands each
// event to a callback.
//
// Thread safety: Run must not be called from two threads at once. Stop and
// last_sequence may be called from any thread at any time, including from
// inside the callbacks.
//
// A connection that dies silently (no RST, no GOAWAY) is found by HTTP/2
// keepalive pings (every 30 s, 10 s to answer) and becomes a reconnection.
class EventSubscriber {
 public:
  // Does not connect; Run does. Options are checked by Run.
  explicit EventSubscriber(EventSubscriberOptions options);
  // REQUIRES: Run is not running.
  ~EventSubscriber();

  EventSubscriber(const EventSubscriber&) = delete;
  EventSubscriber& operator=(const EventSubscriber&) = delete;

  // Subscribes and calls `on_event` for each event, on the calling thread,
  // in sequence order, until one of:
  //   - Stop() is called: returns OK (promptly, also during a backoff wait);
  //   - `on_event` or on_heartbeat returns a non-OK status: cancels the call
  //     and returns that status;
  //   - the stream ends with a status that retrying cannot fix (any code but
  //     UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL,
  //     UNKNOWN, ABORTED, or OK): returns it, e.g. InvalidArgument for a bad
  //     pattern or OutOfRange for a start position outside the retained
  //     range. CANCELLED that Stop() did not cause is returned too.
  // A stream that ends with a retryable code, or with OK (the server closed
  // it although the subscriber wanted more), is resumed after a backoff wait
  // with after_sequence = last_sequence(), or from options.start while no
  // sequence has been seen. Returns InvalidArgument, without connecting,
  // when the options break their REQUIRES or `on_event` is empty.
  //
  // Run may be called again after it returned a non-OK status; it then
  // resumes where the previous run left off. After Stop() it returns OK at
  // once.
  absl::Status Run(const EventCallback& on_event);

  // Makes Run return OK: cancels the current call, or ends the backoff wait.
  // Does not block. Stopping is final: later calls to Run return OK at once.
  void Stop();

  // The highest sequence seen so far: of the last event whose callback
  // returned OK, or of a heartbeat (whose callback, if any, returned OK).
  // 0 until something was seen. Once something was seen, a new
  // EventSubscriber started with StartPosition.after_sequence = this value
  // misses nothing.
  uint64_t last_sequence() const { return last_sequence_.load(); }

 private:
  // How one Subscribe call ended.
  struct CallOutcome {
    grpc::Status status;
    bool received_something = false;
    absl::Status callback_error;  // non-OK when a callback stopped the call
  };

  // The request for the next call: the original start position until a
  // sequence was seen, then after_sequence.
  staffify::fanout::v1::SubscribeRequest NextRequest() const;

  // Runs one Subscribe call to its end.
  CallOutcome RunCall(const EventCallback& on_event);

  // Records `sequence` as seen if it is higher than the last one.
  void Advance(uint64_t sequence);

  // The wait before the next attempt, given the current nominal backoff.
  absl::Duration Jittered(absl::Duration nominal);

  // Waits `delay` or until Stop(), whichever is first.
  void Wait(absl::Duration delay);

  bool stopped() const;

  const EventSubscriberOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<staffify::fanout::v1::Fanout::Stub> stub_;
  std::atomic<uint64_t> last_sequence_{0};
  // Whether an event or a heartbeat was seen, so that calls resume after
  // last_sequence_ (a heartbeat may carry sequence 0). Used by Run only.
  bool has_position_ = false;
  absl::BitGen bitgen_;  // for jitter; used by Run only

  mutable absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  // The context of the call in progress, so that Stop() can cancel it.
  grpc::ClientContext* current_call_ ABSL_GUARDED_BY(mu_) = nullptr;
};

// Whether a Subscribe stream that ended with `code` is worth opening again:
// true for UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL,
// UNKNOWN, ABORTED and OK; false for every other code.
bool IsRetryableStreamEnd(grpc::StatusCode code);

}  // namespace fanout

#endif  // FANOUT_CLIENT_EVENT_SUBSCRIBER_H_
