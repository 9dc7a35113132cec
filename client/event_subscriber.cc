#include "client/event_subscriber.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/support/channel_arguments.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

namespace fanout {
namespace {

using staffify::fanout::v1::Event;
using staffify::fanout::v1::StartPosition;
using staffify::fanout::v1::SubscribeRequest;
using staffify::fanout::v1::SubscribeResponse;

// gRPC and Abseil share the numeric status codes.
absl::Status ToAbslStatus(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

absl::Status CheckOptions(const EventSubscriberOptions& options) {
  if (options.target.empty()) {
    return absl::InvalidArgumentError("EventSubscriber: target is empty");
  }
  if (options.initial_backoff <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "EventSubscriber: initial_backoff must be positive");
  }
  if (options.max_backoff < options.initial_backoff) {
    return absl::InvalidArgumentError(
        "EventSubscriber: max_backoff is below initial_backoff");
  }
  // Written so that NaN fails too.
  if (!(options.backoff_multiplier >= 1.0)) {
    return absl::InvalidArgumentError(
        "EventSubscriber: backoff_multiplier must be at least 1");
  }
  if (!(options.jitter >= 0.0 && options.jitter <= 1.0)) {
    return absl::InvalidArgumentError(
        "EventSubscriber: jitter must lie in [0, 1]");
  }
  if (!std::all_of(options.access_token.begin(), options.access_token.end(),
                   [](char c) { return c > ' ' && c < 0x7f; })) {
    return absl::InvalidArgumentError(
        "EventSubscriber: access_token must be printable ASCII without "
        "spaces");
  }
  if (options.max_receive_message_bytes <= 0) {
    return absl::InvalidArgumentError(
        "EventSubscriber: max_receive_message_bytes must be positive");
  }
  return absl::OkStatus();
}

// A duration in whole milliseconds for a gRPC channel argument, at least 1.
int ChannelArgMillis(absl::Duration duration) {
  const int64_t millis = absl::ToInt64Milliseconds(duration);
  return static_cast<int>(
      std::clamp<int64_t>(millis, 1, std::numeric_limits<int>::max()));
}

}  // namespace

bool IsRetryableStreamEnd(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::ABORTED:
    // A server that is shutting down cancels calls that arrive meanwhile;
    // the client's own Stop() is told apart before this is asked.
    case grpc::StatusCode::CANCELLED:
      return true;
    default:
      return false;
  }
}

EventSubscriber::EventSubscriber(EventSubscriberOptions options)
    : options_(std::move(options)) {}

EventSubscriber::~EventSubscriber() = default;

absl::Status EventSubscriber::Run(const EventCallback& on_event) {
  if (absl::Status valid = CheckOptions(options_); !valid.ok()) return valid;
  if (!on_event) {
    return absl::InvalidArgumentError(
        "EventSubscriber::Run: the event callback is empty");
  }

  if (stub_ == nullptr) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(options_.max_receive_message_bytes);
    // The channel reconnects on its own schedule too (by default up to two
    // minutes apart), and a call made while it waits fails at once with
    // UNAVAILABLE. Keeping its schedule within ours stops it from holding
    // reconnection back far longer than max_backoff.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
                ChannelArgMillis(options_.initial_backoff));
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
                ChannelArgMillis(options_.initial_backoff));
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                ChannelArgMillis(options_.max_backoff));
    // Pings find a connection that died without a word; the server allows
    // this rate (see FanoutServer).
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    if (!options_.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(options_.tls_server_name);
    }
    std::shared_ptr<grpc::ChannelCredentials> credentials =
        options_.credentials != nullptr ? options_.credentials
                                        : grpc::InsecureChannelCredentials();
    channel_ = grpc::CreateCustomChannel(options_.target, credentials, args);
    stub_ = staffify::fanout::v1::Fanout::NewStub(channel_);
  }

  absl::Duration backoff = options_.initial_backoff;
  while (!stopped()) {
    CallOutcome outcome = RunCall(on_event);
    if (!outcome.callback_error.ok()) return outcome.callback_error;
    // A call that Stop() cancelled ends with CANCELLED; that is no error.
    if (stopped()) break;
    if (!IsRetryableStreamEnd(outcome.status.error_code())) {
      return ToAbslStatus(outcome.status);
    }

    if (outcome.received_something) backoff = options_.initial_backoff;
    const absl::Duration delay = Jittered(backoff);
    if (options_.on_retry) {
      options_.on_retry(ToAbslStatus(outcome.status), delay,
                        NextRequest().start());
    }
    Wait(delay);
    backoff =
        std::min(backoff * options_.backoff_multiplier, options_.max_backoff);
  }
  return absl::OkStatus();
}

void EventSubscriber::Stop() {
  absl::MutexLock lock(&mu_);
  stopped_ = true;
  // Run clears current_call_ under mu_ before the context goes away, so the
  // pointer is live here. Waiters in Wait() wake up when mu_ is released.
  if (current_call_ != nullptr) current_call_->TryCancel();
}

SubscribeRequest EventSubscriber::NextRequest() const {
  SubscribeRequest request;
  for (const std::string& pattern : options_.event_types) {
    request.add_event_types(pattern);
  }
  if (has_position_) {
    request.mutable_start()->set_after_sequence(last_sequence_.load());
  } else if (options_.start.position_case() !=
             StartPosition::POSITION_NOT_SET) {
    *request.mutable_start() = options_.start;
  }
  return request;
}

EventSubscriber::CallOutcome EventSubscriber::RunCall(
    const EventCallback& on_event) {
  CallOutcome outcome;
  grpc::ClientContext context;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) {
      outcome.status = grpc::Status(grpc::StatusCode::CANCELLED, "stopped");
      return outcome;
    }
    // Registered before the call starts: a TryCancel() that comes first is
    // remembered by the context and applied when the call starts.
    current_call_ = &context;
  }
  if (!options_.access_token.empty()) {
    context.AddMetadata("authorization", "Bearer " + options_.access_token);
  }

  std::unique_ptr<grpc::ClientReader<SubscribeResponse>> reader =
      stub_->Subscribe(&context, NextRequest());
  SubscribeResponse response;
  while (reader->Read(&response)) {
    outcome.received_something = true;
    absl::Status handled;
    switch (response.kind_case()) {
      case SubscribeResponse::kEvent:
        handled = on_event(response.event());
        if (handled.ok()) Advance(response.event().sequence());
        break;
      case SubscribeResponse::kHeartbeat:
        if (options_.on_heartbeat) {
          handled = options_.on_heartbeat(response.heartbeat().sequence());
        }
        if (handled.ok()) Advance(response.heartbeat().sequence());
        break;
      default:
        // A kind added after this client was built; nothing to do with it.
        break;
    }
    if (!handled.ok()) {
      outcome.callback_error = std::move(handled);
      context.TryCancel();
      // Finish is meant for a stream that has nothing more to read; after
      // the cancel, these reads end at once.
      while (reader->Read(&response)) {
      }
      break;
    }
  }
  outcome.status = reader->Finish();

  absl::MutexLock lock(&mu_);
  current_call_ = nullptr;
  return outcome;
}

void EventSubscriber::Advance(uint64_t sequence) {
  // Only Run's thread writes, so load-then-store cannot lose an update.
  if (!has_position_ || sequence > last_sequence_.load()) {
    last_sequence_.store(sequence);
  }
  has_position_ = true;
}

absl::Duration EventSubscriber::Jittered(absl::Duration nominal) {
  if (options_.jitter == 0.0) return nominal;
  const double factor =
      1.0 - options_.jitter *
                absl::Uniform<double>(absl::IntervalClosed, bitgen_, 0.0, 1.0);
  return nominal * factor;
}

void EventSubscriber::Wait(absl::Duration delay) {
  if (options_.sleep_for) {
    options_.sleep_for(delay);
    return;
  }
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopped_), delay);
}

bool EventSubscriber::stopped() const {
  absl::MutexLock lock(&mu_);
  return stopped_;
}

}  // namespace fanout
