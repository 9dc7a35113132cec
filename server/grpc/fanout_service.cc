#include "server/grpc/fanout_service.h"

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/status_mapping.h"
#include "spdlog/spdlog.h"

namespace fanout {
namespace {

using staffify::fanout::v1::Event;
using staffify::fanout::v1::SubscribeRequest;
using staffify::fanout::v1::SubscribeResponse;

// A stream that failed before it started.
class FailedStream : public grpc::ServerWriteReactor<SubscribeResponse> {
 public:
  explicit FailedStream(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

// One Subscribe stream. Callbacks arrive on gRPC's threads and the hub's
// wake-ups on publishing threads; mu_ orders them. StartWrite and Finish are
// called after mu_ is released, so that a reactor callback run inline can
// never find it held. The reactor deletes itself in OnDone, after closing
// its subscription so that no wake-up can reach it afterwards.
class SubscribeStream : public grpc::ServerWriteReactor<SubscribeResponse> {
 public:
  SubscribeStream(EventHub* hub, SubscriptionFilter filter,
                  const std::string& patterns, const std::string& peer) {
    subscription_ = hub->Subscribe(std::move(filter), [this] { Pump(); });
    spdlog::info("subscriber {} attached from {} for [{}]", subscription_->id(),
                 peer, patterns);
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
    }
    Pump();
  }

  void OnCancel() override { Stop(grpc::Status::CANCELLED); }

  void OnDone() override {
    subscription_->Close();
    spdlog::info("subscriber {} detached at seq {}", subscription_->id(),
                 subscription_->cursor());
    delete this;
  }

 private:
  // Starts the next write if none is in flight and an event is ready, or
  // ends the stream if the subscription can no longer deliver.
  void Pump() {
    std::shared_ptr<const Event> event;
    Subscription::Next next;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (writing_ || finished_) return;
      next = subscription_->Read(&event);
      if (next == Subscription::Next::kNone) return;
      if (next == Subscription::Next::kEvent) {
        // TODO: this copies each event once per subscriber; serialising it
        // once and sharing the bytes needs a custom serialisation path.
        *response_.mutable_event() = *event;
        writing_ = true;
      }
    }

    switch (next) {
      case Subscription::Next::kEvent:
        StartWrite(&response_);
        return;
      case Subscription::Next::kFellBehind:
        spdlog::warn(
            "subscriber {} fell behind the in-memory window at seq "
            "{}; ending its stream",
            subscription_->id(), subscription_->cursor());
        Stop(grpc::Status(
            grpc::StatusCode::RESOURCE_EXHAUSTED,
            absl::StrCat("subscriber fell behind the live stream after seq ",
                         subscription_->cursor(),
                         "; the events it had not read left the server's "
                         "memory window")));
        return;
      case Subscription::Next::kClosed:
        Stop(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "server is shutting down"));
        return;
      case Subscription::Next::kNone:
        return;
    }
  }

  // Finishes the stream with `status` unless it is already finishing.
  void Stop(const grpc::Status& status) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      finished_ = true;
    }
    Finish(status);
  }

  std::mutex mu_;
  bool writing_ = false;   // Guarded by mu_.
  bool finished_ = false;  // Guarded by mu_.
  SubscribeResponse response_;
  std::shared_ptr<Subscription> subscription_;
};

}  // namespace

FanoutService::FanoutService(EventHub* hub, FanoutServiceOptions options)
    : hub_(hub), options_(options) {}

grpc::ServerWriteReactor<SubscribeResponse>* FanoutService::Subscribe(
    grpc::CallbackServerContext* context, const SubscribeRequest* request) {
  if (static_cast<size_t>(request->event_types_size()) >
      options_.max_patterns) {
    return new FailedStream(grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat(
            "too many event type patterns: ", request->event_types_size(),
            " (at most ", options_.max_patterns, ")")));
  }
  std::vector<std::string> patterns;
  for (const std::string& pattern : request->event_types()) {
    if (pattern.size() > options_.max_pattern_bytes) {
      return new FailedStream(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                       absl::StrCat("event type pattern longer than ",
                                    options_.max_pattern_bytes, " bytes")));
    }
    patterns.push_back(pattern);
  }
  absl::StatusOr<SubscriptionFilter> filter =
      SubscriptionFilter::Create(patterns);
  if (!filter.ok()) return new FailedStream(ToGrpcStatus(filter.status()));

  return new SubscribeStream(
      hub_, *std::move(filter),
      patterns.empty() ? "*" : absl::StrJoin(patterns, ","), context->peer());
}

}  // namespace fanout
