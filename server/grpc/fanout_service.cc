#include "server/grpc/fanout_service.h"

#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/support/slice.h>

#include <deque>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "server/common/status_mapping.h"
#include "server/convert/event_converter.h"
#include "spdlog/spdlog.h"

namespace fanout {
namespace {

using google::protobuf::internal::WireFormatLite;
using staffify::fanout::v1::StartPosition;
using staffify::fanout::v1::SubscribeRequest;
using staffify::fanout::v1::SubscribeResponse;
using Response = grpc::ByteBuffer;

// The name of a gRPC status code, e.g. "UNAVAILABLE" (the numeric codes
// coincide with absl's).
std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

// A stream refused before it started.
class FailedStream : public grpc::ServerWriteReactor<Response> {
 public:
  FailedStream(const grpc::Status& status, const std::string& peer) {
    spdlog::info("subscription refused peer={} status={} error={:?}", peer,
                 CodeName(status.error_code()), status.error_message());
    Finish(status);
  }
  void OnDone() override { delete this; }
};

// SubscribeResponse{event} on the wire: the field's tag and length, then
// the stored Event's bytes, which gRPC references rather than copies; the
// StoredEvent lives until gRPC lets go of them.
Response EventResponse(std::shared_ptr<const StoredEvent> event) {
  const std::string& bytes = event->serialized();
  uint8_t header[1 + 5];
  uint8_t* end = google::protobuf::io::CodedOutputStream::WriteVarint32ToArray(
      WireFormatLite::MakeTag(SubscribeResponse::kEventFieldNumber,
                              WireFormatLite::WIRETYPE_LENGTH_DELIMITED),
      header);
  end = google::protobuf::io::CodedOutputStream::WriteVarint32ToArray(
      static_cast<uint32_t>(bytes.size()), end);
  auto* held = new std::shared_ptr<const StoredEvent>(std::move(event));
  const grpc::Slice slices[] = {
      grpc::Slice(header, static_cast<size_t>(end - header)),
      grpc::Slice(
          const_cast<char*>(bytes.data()), bytes.size(),
          [](void* held) {
            delete static_cast<std::shared_ptr<const StoredEvent>*>(held);
          },
          held)};
  return Response(slices, 2);
}

Response HeartbeatResponse(uint64_t sequence) {
  SubscribeResponse response;
  response.mutable_heartbeat()->set_sequence(sequence);
  const grpc::Slice slice(response.SerializeAsString());
  return Response(&slice, 1);
}

struct StreamContext {
  EventHub* hub;
  EventStore* store;
  Metrics* metrics;  // May be null.
  WorkQueue* replay_queue;
  const FanoutServiceOptions* options;
};

// One Subscribe stream. Callbacks arrive on gRPC's threads, hub wake-ups on
// the store's thread that feeds the hub, replay results on the replay queue; mu_ orders
// them. StartWrite and Finish are called after mu_ is released, so that a
// reactor callback run inline can never find it held.
//
// Lifetime: gRPC holds one reference until OnDone, and each replay task in
// flight holds another; the last to let go deletes the stream. OnDone
// closes the hub subscription first, so no wake-up arrives afterwards.
class SubscribeStream : public grpc::ServerWriteReactor<Response> {
 public:
  SubscribeStream(const StreamContext& context, SubscriptionFilter filter,
                  std::optional<uint64_t> after, const std::string& patterns,
                  const std::string& peer)
      : context_(context),
        filter_(filter),
        attached_at_(absl::Now()),
        // A stream with nothing to send at once begins with a heartbeat, so
        // that a client learns its position before any event: were it to
        // reconnect "new only", it would skip what arrived in between.
        last_activity_(absl::InfinitePast()) {
    subscription_ =
        context_.hub->Subscribe(std::move(filter), after, [this] { Pump(); });
    // The id is the one of the fanout_subscriber_lag metric.
    spdlog::info(
        "subscriber attached subscriber={} peer={} patterns={:?} after_seq={}",
        subscription_->id(), peer, patterns, subscription_->cursor());
    Pump();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      // The client went away mid-write.
      Stop(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"));
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      last_activity_ = absl::Now();
    }
    Pump();
  }

  void OnCancel() override { Stop(grpc::Status::CANCELLED); }

  void OnDone() override {
    subscription_->Close();
    uint64_t events_sent;
    grpc::StatusCode end_code;
    {
      std::lock_guard<std::mutex> lock(mu_);
      events_sent = events_sent_;
      end_code = end_code_;
    }
    spdlog::info(
        "subscriber detached subscriber={} seq={} events_sent={} status={}",
        subscription_->id(), subscription_->cursor(), events_sent,
        CodeName(end_code));
    Release();
  }

 private:
  enum class Action { kNothing, kWrite, kReplay, kClose };

  // Starts the next write if none is in flight and something is ready,
  // starts a replay step if the stream is behind the hub's window, or ends
  // the stream if the hub is closing.
  void Pump() {
    Action action = Action::kNothing;
    // Another event is ready to follow this one: gRPC may hold this one
    // back (up to its write buffer) and send both in one write.
    bool more = false;
    bool hint = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (writing_ || finished_ || replaying_) return;

      std::shared_ptr<const StoredEvent> event;
      if (!backlog_.empty()) {
        event = std::move(backlog_.front());
        backlog_.pop_front();
        more = !backlog_.empty();
        action = Action::kWrite;
      } else {
        absl::Time published_at;
        switch (subscription_->Read(&event, &published_at, &more)) {
          case Subscription::Next::kEvent:
            action = Action::kWrite;
            // Events committed before the stream attached are replays
            // from the window, not a measure of live delivery.
            if (context_.metrics != nullptr && published_at >= attached_at_) {
              context_.metrics->commit_to_send().Observe(absl::Now() -
                                                         published_at);
            }
            break;
          case Subscription::Next::kNone:
            if (absl::Now() - last_activity_ >=
                context_.options->heartbeat_interval) {
              response_ = HeartbeatResponse(subscription_->cursor());
              writing_ = true;
              action = Action::kWrite;
            }
            break;
          case Subscription::Next::kFellBehind:
            replaying_ = true;
            ++references_;
            action = Action::kReplay;
            break;
          case Subscription::Next::kClosed:
            action = Action::kClose;
            break;
        }
      }
      if (event != nullptr) {
        response_ = EventResponse(std::move(event));
        writing_ = true;
        ++events_sent_;
      }
      if (writing_) {
        hint = more && wrote_;
        wrote_ = true;
      }
    }

    switch (action) {
      case Action::kWrite:
        // A write with the hint is always followed by another write (the
        // event known to be ready), or by Finish, either of which flushes.
        // Not the first: it carries the initial metadata, and gRPC would
        // hold both back and complete neither.
        StartWrite(&response_, hint ? grpc::WriteOptions().set_buffer_hint()
                                    : grpc::WriteOptions());
        return;
      case Action::kReplay:
        context_.replay_queue->Post([this] { ReplayStep(); });
        return;
      case Action::kClose:
        Stop(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "server is shutting down; resume with "
                          "after_sequence"));
        return;
      case Action::kNothing:
        return;
    }
  }

  // Reads the next batch of matching events after the cursor from the
  // store, on the replay queue.
  void ReplayStep() {
    const uint64_t after = subscription_->cursor();
    absl::StatusOr<LogRange> range = context_.store->Range();
    absl::Status status = range.status();
    std::vector<std::shared_ptr<const StoredEvent>> events;
    uint64_t scanned_through = after;
    if (!status.ok()) {
      // Reported below.
    } else if (after + 1 < range->first) {
      status = absl::OutOfRangeError(absl::StrCat(
          "events after seq ", after,
          " were removed by retention while this stream was behind; the "
          "oldest retained is seq ",
          range->first));
    } else {
      // Kept across steps: a backend's reader may hold a cursor of its own.
      if (reader_ == nullptr) reader_ = context_.store->NewReader(filter_);
      status = reader_->Read(after, context_.options->replay_batch,
                             context_.options->replay_batch_bytes, &events,
                             &scanned_through);
      if (status.ok() && scanned_through == after) {
        status = absl::UnavailableError(
            absl::StrCat("event store has nothing after seq ", after));
      }
    }

    if (!status.ok()) {
      spdlog::warn(
          "subscriber replay failed subscriber={} after_seq={} "
          "error={:?}",
          subscription_->id(), after, status.ToString());
      {
        std::lock_guard<std::mutex> lock(mu_);
        replaying_ = false;
      }
      Stop(ToGrpcStatus(status));
    } else {
      {
        std::lock_guard<std::mutex> lock(mu_);
        backlog_.assign(std::make_move_iterator(events.begin()),
                        std::make_move_iterator(events.end()));
        subscription_->Seek(scanned_through);
        replaying_ = false;
      }
      Pump();
    }
    Release();
  }

  // Finishes the stream with `status` unless it is already finishing.
  void Stop(const grpc::Status& status) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      finished_ = true;
      end_code_ = status.error_code();
    }
    Finish(status);
  }

  void Release() {
    bool last;
    {
      std::lock_guard<std::mutex> lock(mu_);
      last = --references_ == 0;
    }
    if (last) {
      // The reader may talk to the backend as it closes (to delete a
      // JetStream consumer): not on a gRPC thread.
      if (reader_ != nullptr) {
        context_.replay_queue->Post(
            [reader = std::shared_ptr<EventReader>(std::move(reader_))] {});
      }
      delete this;
    }
  }

  const StreamContext context_;
  const SubscriptionFilter filter_;
  std::shared_ptr<Subscription> subscription_;
  // Created by the first replay step; used on the replay queue only.
  std::unique_ptr<EventReader> reader_;

  std::mutex mu_;
  bool writing_ = false;    // Guarded by mu_.
  bool finished_ = false;   // Guarded by mu_.
  bool replaying_ = false;  // Guarded by mu_.
  int references_ = 1;      // Guarded by mu_.
  // Events written (heartbeats not counted), and how the stream ended.
  uint64_t events_sent_ = 0;                          // Guarded by mu_.
  grpc::StatusCode end_code_ = grpc::StatusCode::OK;  // Guarded by mu_.
  const absl::Time attached_at_;
  absl::Time last_activity_;                          // Guarded by mu_.
  std::deque<std::shared_ptr<const StoredEvent>> backlog_;  // Guarded by mu_.
  bool wrote_ = false;                                      // Guarded by mu_.
  Response response_;  // Owned by the write in flight.
};

}  // namespace

FanoutService::FanoutService(EventHub* hub, EventStore* store,
                             Metrics* metrics,
                             FanoutServiceOptions options,
                             const AccessTokens* access_tokens)
    : hub_(hub),
      store_(store),
      metrics_(metrics),
      options_(options),
      access_tokens_(access_tokens),
      replay_queue_(options.replay_threads) {}

absl::StatusOr<const AccessGrant*> FanoutService::Authenticate(
    const grpc::CallbackServerContext& context) const {
  const auto& metadata = context.client_metadata();
  const auto [first, last] = metadata.equal_range("authorization");
  if (first == last) {
    return absl::UnauthenticatedError(
        "this server requires an access token: send \"authorization: "
        "Bearer <token>\" metadata");
  }
  if (std::next(first) != last) {
    return absl::UnauthenticatedError(
        "more than one authorization metadata entry");
  }
  absl::StatusOr<absl::string_view> token = ParseBearerToken(
      absl::string_view(first->second.data(), first->second.size()));
  if (!token.ok()) return absl::UnauthenticatedError(token.status().message());
  const AccessGrant* grant = access_tokens_->Find(*token);
  if (grant == nullptr) {
    return absl::UnauthenticatedError("unknown access token");
  }
  return grant;
}

absl::StatusOr<std::optional<uint64_t>> FanoutService::ResolveStart(
    const StartPosition& start) {
  absl::StatusOr<LogRange> current = store_->Range();
  if (!current.ok()) return current.status();
  const LogRange range = *current;
  const std::string valid =
      range.first > range.last
          ? absl::StrCat("the log holds no events; the newest sequence is ",
                         range.last)
          : absl::StrCat("retained sequences are ", range.first, "..",
                         range.last);
  switch (start.position_case()) {
    case StartPosition::POSITION_NOT_SET:
    case StartPosition::kNewOnly:
      return std::nullopt;
    case StartPosition::kFromOldest:
      return range.first - 1;
    case StartPosition::kAfterSequence: {
      const uint64_t after = start.after_sequence();
      if (after > range.last) {
        return absl::OutOfRangeError(absl::StrCat(
            "after_sequence ", after, " is beyond the newest event; ", valid));
      }
      if (after + 1 < range.first) {
        return absl::OutOfRangeError(absl::StrCat(
            "after_sequence ", after, " is older than retention; ", valid));
      }
      return after;
    }
    case StartPosition::kSinceTime: {
      // The range google.protobuf.Timestamp allows: years 1 to 9999.
      if (start.since_time().seconds() < -62135596800 ||
          start.since_time().seconds() > 253402300799 ||
          start.since_time().nanos() < 0 ||
          start.since_time().nanos() > 999999999) {
        return absl::InvalidArgumentError("since_time is not a valid time");
      }
      const absl::Time since = TimeFromTimestamp(start.since_time());
      if (since > absl::Now()) {
        return absl::OutOfRangeError(absl::StrCat(
            "since_time ", absl::FormatTime(since),
            " is in the future; for new events only, leave start unset"));
      }
      absl::StatusOr<uint64_t> first = store_->FirstSequenceSince(since);
      if (!first.ok()) {
        return absl::Status(
            first.status().code(),
            absl::StrCat(first.status().message(), "; ", valid));
      }
      return *first - 1;
    }
  }
  return absl::InvalidArgumentError("unknown start position");
}

grpc::ServerWriteReactor<Response>* FanoutService::Subscribe(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* wire) {
  const auto refuse = [context](const grpc::Status& status) {
    return new FailedStream(status, context->peer());
  };
  // Before anything else, so that a caller without a token learns nothing
  // about the log, not even whether its request is well formed.
  const AccessGrant* grant = nullptr;
  if (access_tokens_ != nullptr) {
    absl::StatusOr<const AccessGrant*> authenticated = Authenticate(*context);
    if (!authenticated.ok()) {
      if (metrics_ != nullptr) metrics_->CountSubscribeUnauthenticated();
      return refuse(ToGrpcStatus(authenticated.status()));
    }
    grant = *authenticated;
  }
  // As the generated handler would: the same parser, the same error.
  SubscribeRequest parsed;
  grpc::ByteBuffer copy(*wire);  // Deserialize consumes its buffer.
  const grpc::Status status =
      grpc::SerializationTraits<SubscribeRequest>::Deserialize(&copy, &parsed);
  if (!status.ok()) return refuse(status);
  const SubscribeRequest* request = &parsed;

  if (static_cast<size_t>(request->event_types_size()) >
      options_.max_patterns) {
    return refuse(grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat(
            "too many event type patterns: ", request->event_types_size(),
            " (at most ", options_.max_patterns, ")")));
  }
  std::vector<std::string> patterns;
  for (const std::string& pattern : request->event_types()) {
    if (pattern.size() > options_.max_pattern_bytes) {
      return refuse(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                       absl::StrCat("event type pattern longer than ",
                                    options_.max_pattern_bytes, " bytes")));
    }
    patterns.push_back(pattern);
  }
  absl::StatusOr<SubscriptionFilter> filter =
      SubscriptionFilter::Create(patterns);
  if (!filter.ok()) return refuse(ToGrpcStatus(filter.status()));

  std::string described = patterns.empty() ? "*" : absl::StrJoin(patterns, ",");
  if (grant != nullptr) {
    absl::StatusOr<std::vector<std::string>> narrowed =
        NarrowToGrant(patterns, grant->patterns);
    if (!narrowed.ok()) {
      if (metrics_ != nullptr) metrics_->CountSubscribePermissionDenied();
      return refuse(ToGrpcStatus(narrowed.status()));
    }
    filter = SubscriptionFilter::Create(*narrowed);
    if (!filter.ok()) return refuse(ToGrpcStatus(filter.status()));
    described = absl::StrCat(absl::StrJoin(*narrowed, ","), " (token ",
                             grant->name, ")");
  }

  absl::StatusOr<std::optional<uint64_t>> after =
      ResolveStart(request->start());
  if (!after.ok()) return refuse(ToGrpcStatus(after.status()));

  return new SubscribeStream(
      StreamContext{hub_, store_, metrics_, &replay_queue_, &options_},
      *std::move(filter), *after, described, context->peer());
}

}  // namespace fanout
