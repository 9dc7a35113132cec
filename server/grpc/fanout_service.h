// The gRPC face of the service: serves staffify.fanout.v1.Fanout/Subscribe
// with the callback API, one reactor per stream.
//
// A stream starts at the requested position, replays from the event store
// while it is behind the hub's in-memory window, then follows the hub. Each
// stream keeps at most one write in flight and pulls the next event when it
// completes, so a slow client only holds back its own stream, and whatever
// it has not read stays in the store rather than in memory.
//
// With access tokens configured, each call must carry a known token
// ("authorization: Bearer <token>" metadata), and its patterns are narrowed
// to the token's grant before the stream starts, so live events and replays
// from the store alike carry only what the token may read.
//
// Events are sent as the bytes the store kept (StoredEvent), framed as a
// SubscribeResponse without being parsed or serialized again: the method is
// registered raw, on grpc::ByteBuffer. Events already waiting for a stream
// are written with a buffer hint, so that gRPC sends them together.

#ifndef FANOUT_SERVER_GRPC_FANOUT_SERVICE_H_
#define FANOUT_SERVER_GRPC_FANOUT_SERVICE_H_

#include <grpcpp/support/byte_buffer.h>

#include <cstddef>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/common/metrics.h"
#include "server/common/work_queue.h"
#include "server/fanout/event_hub.h"
#include "server/grpc/access_tokens.h"
#include "server/store/event_store.h"
#include "staffify/fanout/v1/fanout.grpc.pb.h"

namespace fanout {

struct FanoutServiceOptions {
  // Most patterns one Subscribe request may carry.
  size_t max_patterns = 64;
  // Longest pattern accepted, in bytes.
  size_t max_pattern_bytes = 256;
  // A stream with nothing to send for this long gets a Heartbeat.
  absl::Duration heartbeat_interval = absl::Seconds(15);
  // Events one replay step reads from the store (and holds in memory) for a
  // stream that is behind the window, at most, and their stored bytes at
  // most (at least one event is read).
  size_t replay_batch = 256;
  size_t replay_batch_bytes = 4 << 20;
  // Threads reading the store for streams that are behind.
  int replay_threads = 2;
};

class FanoutService final
    : public staffify::fanout::v1::Fanout::WithRawCallbackMethod_Subscribe<
          staffify::fanout::v1::Fanout::Service> {
 public:
  // `hub`, `store`, `metrics` (which may be null) and `access_tokens`
  // must outlive the service and every stream it started. Null
  // `access_tokens` lets every caller read every event.
  FanoutService(EventHub* hub, EventStore* store, Metrics* metrics = nullptr,
                FanoutServiceOptions options = {},
                const AccessTokens* access_tokens = nullptr);

  // Starts a stream, or fails the call with (in this order of checks):
  //   UNAUTHENTICATED    tokens are configured and the call carries none,
  //                      a malformed one or an unknown one;
  //   INVALID_ARGUMENT   too many, too long or malformed patterns;
  //   PERMISSION_DENIED  a requested pattern matches no type the token's
  //                      grant allows (one that matches some is narrowed
  //                      to them, see NarrowToGrant);
  //   INVALID_ARGUMENT   a malformed start position, or
  //   OUT_OF_RANGE       one outside the retained range, or
  //   UNAVAILABLE        the store cannot be reached to resolve it.
  // On the wire format: `request` is a SubscribeRequest, and the
  // stream writes SubscribeResponses.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Subscribe(
      grpc::CallbackServerContext* context,
      const grpc::ByteBuffer* request) override;

  // Returns the sequence a stream starting at `start` begins after, or
  // nullopt for "new events only"; OutOfRange, naming the valid range, for
  // a position before the oldest retained event or after the newest;
  // InvalidArgument for a malformed one; the store's error when it cannot
  // be asked.
  absl::StatusOr<std::optional<uint64_t>> ResolveStart(
      const staffify::fanout::v1::StartPosition& start);

 private:
  // The grant of the call's access token; Unauthenticated when there is
  // no usable one. REQUIRES: access_tokens_ is set.
  absl::StatusOr<const AccessGrant*> Authenticate(
      const grpc::CallbackServerContext& context) const;

  EventHub* const hub_;
  EventStore* const store_;
  Metrics* const metrics_;
  const FanoutServiceOptions options_;
  const AccessTokens* const access_tokens_;
  WorkQueue replay_queue_;
};

}  // namespace fanout

#endif  // FANOUT_SERVER_GRPC_FANOUT_SERVICE_H_
