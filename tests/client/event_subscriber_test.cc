// Checks EventSubscriber against an in-process fake Fanout service whose
// calls follow a script: how many events each call sends, what it sends
// after them, and how it ends. The fake serves a fixed log of events 1..100
// from the position each request asks for, so a client that resumed at the
// wrong place would see a gap or a duplicate.
//
// Backoff waits go through the injectable sleep_for, which records them
// instead of waiting, except in the test that checks Stop() during a real
// wait.

#include "client/event_subscriber.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "staffify/fanout/v1/fanout.grpc.pb.h"

namespace fanout {
namespace {

using staffify::fanout::v1::Event;
using staffify::fanout::v1::Fanout;
using staffify::fanout::v1::StartPosition;
using staffify::fanout::v1::SubscribeRequest;
using staffify::fanout::v1::SubscribeResponse;
using ::testing::ElementsAre;

// Bounds every wait for something another thread does, so that a broken
// subscriber fails the test instead of hanging it.
constexpr absl::Duration kPatience = absl::Seconds(10);

// Sequences 1..kLogSize exist in the fake's log.
constexpr uint64_t kLogSize = 100;

SubscribeResponse EventResponse(uint64_t sequence) {
  SubscribeResponse response;
  Event* event = response.mutable_event();
  event->set_sequence(sequence);
  event->set_id(absl::StrCat("wh_", sequence));
  event->set_event_type("ticket.created");
  return response;
}

SubscribeResponse HeartbeatResponse(uint64_t sequence) {
  SubscribeResponse response;
  response.mutable_heartbeat()->set_sequence(sequence);
  return response;
}

// What one Subscribe call of the fake does.
struct ScriptedCall {
  // How many log events to send, starting at the request's start position.
  size_t events = 0;
  // Sent after those events, as they are.
  std::vector<SubscribeResponse> extra;
  // How the call ends; unset keeps it open until the client cancels it.
  std::optional<grpc::Status> end;
};

ScriptedCall EndsWith(grpc::StatusCode code, size_t events = 0) {
  ScriptedCall call;
  call.events = events;
  call.end = grpc::Status(code, "scripted end");
  return call;
}

// The first log sequence a request asks for.
uint64_t FirstSequence(const StartPosition& start) {
  switch (start.position_case()) {
    case StartPosition::kAfterSequence:
      return start.after_sequence() + 1;
    case StartPosition::kFromOldest:
    case StartPosition::kSinceTime:
      return 1;
    default:
      return kLogSize + 1;  // new events only: none yet
  }
}

// One call of the fake: writes its responses one at a time, then finishes
// as scripted. OnWriteDone and OnCancel may run on different gRPC threads at
// once; mu_ orders them, and Step() makes every decision.
class ScriptedStream : public grpc::ServerWriteReactor<SubscribeResponse> {
 public:
  ScriptedStream(std::vector<SubscribeResponse> responses,
                 std::optional<grpc::Status> end,
                 std::function<void()> on_cancel)
      : responses_(std::move(responses)),
        end_(std::move(end)),
        on_cancel_(std::move(on_cancel)) {
    Step();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (ok) {
        ++next_;
      } else {
        cancelled_ = true;
      }
    }
    Step();
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
    }
    on_cancel_();
    Step();
  }

  void OnDone() override { delete this; }

 private:
  // Starts the next write, or finishes, unless a write is in flight.
  // StartWrite and Finish are called without mu_, since a reaction may run
  // inline.
  void Step() {
    const SubscribeResponse* write = nullptr;
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_) return;
      if (cancelled_) {
        finish = grpc::Status::CANCELLED;
      } else if (next_ < responses_.size()) {
        write = &responses_[next_];
        writing_ = true;
      } else if (end_.has_value()) {
        finish = *end_;
      } else {
        return;  // held open
      }
      if (finish.has_value()) finished_ = true;
    }
    if (write != nullptr) {
      StartWrite(write);
    } else {
      Finish(*finish);
    }
  }

  const std::vector<SubscribeResponse> responses_;
  const std::optional<grpc::Status> end_;
  const std::function<void()> on_cancel_;
  absl::Mutex mu_;
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// A Fanout service that plays a script, one entry per call in arrival
// order; calls beyond the script stay open with nothing to send.
class FakeFanout final : public Fanout::CallbackService {
 public:
  explicit FakeFanout(std::vector<ScriptedCall> script)
      : script_(std::move(script)) {}

  grpc::ServerWriteReactor<SubscribeResponse>* Subscribe(
      grpc::CallbackServerContext* context,
      const SubscribeRequest* request) override {
    ScriptedCall call;
    {
      absl::MutexLock lock(&mu_);
      if (requests_.size() < script_.size()) call = script_[requests_.size()];
      requests_.push_back(*request);
    }
    std::vector<SubscribeResponse> responses;
    uint64_t sequence = FirstSequence(request->start());
    for (size_t i = 0; i < call.events && sequence <= kLogSize; ++i) {
      responses.push_back(EventResponse(sequence++));
    }
    for (const SubscribeResponse& response : call.extra) {
      responses.push_back(response);
    }
    return new ScriptedStream(std::move(responses), call.end, [this] {
      absl::MutexLock lock(&mu_);
      ++cancelled_calls_;
    });
  }

  std::vector<SubscribeRequest> requests() const {
    absl::MutexLock lock(&mu_);
    return requests_;
  }

  // Waits until `count` calls have arrived; false if they did not in time.
  bool WaitForCalls(size_t count) const {
    absl::MutexLock lock(&mu_);
    auto arrived = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return requests_.size() >= count;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&arrived), kPatience);
  }

  // Waits until the clients cancelled `count` calls; false if not in time.
  bool WaitForCancelledCalls(int count) const {
    absl::MutexLock lock(&mu_);
    auto cancelled = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return cancelled_calls_ >= count;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&cancelled), kPatience);
  }

 private:
  const std::vector<ScriptedCall> script_;
  mutable absl::Mutex mu_;
  std::vector<SubscribeRequest> requests_ ABSL_GUARDED_BY(mu_);
  int cancelled_calls_ ABSL_GUARDED_BY(mu_) = 0;
};

// The fake served on a free loopback port.
class FakeServer {
 public:
  explicit FakeServer(std::vector<ScriptedCall> script)
      : service_(std::move(script)) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
  }

  ~FakeServer() { Shutdown(); }

  // Cancels the calls still open and stops listening.
  void Shutdown() {
    if (server_ == nullptr) return;
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
    server_.reset();
  }

  bool started() const { return server_ != nullptr && port_ > 0; }
  std::string target() const { return absl::StrCat("127.0.0.1:", port_); }
  FakeFanout& service() { return service_; }

 private:
  FakeFanout service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

// Start position "from the oldest event", which the fake serves from 1.
StartPosition FromOldest() {
  StartPosition start;
  start.set_from_oldest(true);
  return start;
}

class EventSubscriberTest : public ::testing::Test {
 protected:
  // Options for `server` with a 100ms..1s backoff without jitter, whose
  // waits are recorded in delays_ rather than waited out.
  EventSubscriberOptions OptionsFor(const FakeServer& server) {
    EventSubscriberOptions options;
    options.target = server.target();
    options.event_types = {"ticket.*"};
    options.start = FromOldest();
    options.initial_backoff = absl::Milliseconds(100);
    options.max_backoff = absl::Seconds(1);
    options.jitter = 0;
    options.sleep_for = [this](absl::Duration delay) {
      delays_.push_back(delay);
    };
    return options;
  }

  // An event callback that records sequences in seen_.
  EventCallback Record() {
    return [this](const Event& event) {
      seen_.push_back(event.sequence());
      return absl::OkStatus();
    };
  }

  // An event callback that records sequences and stops `subscriber` once it
  // has seen `last`.
  EventCallback RecordAndStopAt(EventSubscriber* subscriber, uint64_t last) {
    return [this, subscriber, last](const Event& event) {
      seen_.push_back(event.sequence());
      if (event.sequence() == last) subscriber->Stop();
      return absl::OkStatus();
    };
  }

  // Runs `subscriber` on a thread of its own and returns what Run returned.
  // A Run that has not returned within kPatience fails the test and is
  // stopped, so that a broken subscriber cannot hang the suite.
  absl::Status RunBounded(EventSubscriber& subscriber,
                          const EventCallback& on_event) {
    absl::Status status = absl::UnknownError("Run has not returned");
    absl::Notification returned;
    std::thread runner([&] {
      status = subscriber.Run(on_event);
      returned.Notify();
    });
    if (!returned.WaitForNotificationWithTimeout(kPatience)) {
      ADD_FAILURE() << "Run did not return in time; stopping it";
      subscriber.Stop();
    }
    runner.join();
    return status;
  }

  // Written on the thread running Run; read after Run returned.
  std::vector<absl::Duration> delays_;
  std::vector<uint64_t> seen_;
};

TEST_F(EventSubscriberTest, ResumesAfterLastEventWhenStreamBreaks) {
  ScriptedCall second;
  second.events = 3;  // and then held open
  FakeServer server({EndsWith(grpc::StatusCode::UNAVAILABLE, 3), second});
  ASSERT_TRUE(server.started());
  EventSubscriberOptions options = OptionsFor(server);
  std::vector<std::string> retries;
  options.on_retry = [&retries](const absl::Status& cause, absl::Duration delay,
                                const StartPosition& next_start) {
    retries.push_back(absl::StrCat(absl::StatusCodeToString(cause.code()), " ",
                                   absl::FormatDuration(delay), " after ",
                                   next_start.after_sequence()));
  };
  EventSubscriber subscriber(options);

  EXPECT_EQ(RunBounded(subscriber, RecordAndStopAt(&subscriber, 6)),
            absl::OkStatus());

  EXPECT_THAT(seen_, ElementsAre(1, 2, 3, 4, 5, 6));
  EXPECT_EQ(subscriber.last_sequence(), 6u);
  EXPECT_THAT(retries, ElementsAre("UNAVAILABLE 100ms after 3"));
  const std::vector<SubscribeRequest> requests = server.service().requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_THAT(requests[0].event_types(), ElementsAre("ticket.*"));
  EXPECT_TRUE(requests[0].start().from_oldest());
  EXPECT_THAT(requests[1].event_types(), ElementsAre("ticket.*"));
  ASSERT_EQ(requests[1].start().position_case(), StartPosition::kAfterSequence);
  EXPECT_EQ(requests[1].start().after_sequence(), 3u);
}

TEST_F(EventSubscriberTest, HeartbeatMovesTheResumePoint) {
  ScriptedCall first = EndsWith(grpc::StatusCode::UNAVAILABLE, 2);
  first.extra = {HeartbeatResponse(5)};
  ScriptedCall second;
  second.events = 1;
  FakeServer server({first, second});
  ASSERT_TRUE(server.started());
  EventSubscriberOptions options = OptionsFor(server);
  std::vector<uint64_t> heartbeats;
  std::vector<uint64_t> last_sequence_at_heartbeat;
  EventSubscriber* subscriber_ptr = nullptr;
  options.on_heartbeat = [&](uint64_t sequence) {
    heartbeats.push_back(sequence);
    last_sequence_at_heartbeat.push_back(subscriber_ptr->last_sequence());
    return absl::OkStatus();
  };
  EventSubscriber subscriber(options);
  subscriber_ptr = &subscriber;

  EXPECT_EQ(RunBounded(subscriber, RecordAndStopAt(&subscriber, 6)),
            absl::OkStatus());

  EXPECT_THAT(heartbeats, ElementsAre(5));
  // The resume point moves only once the heartbeat callback accepted it.
  EXPECT_THAT(last_sequence_at_heartbeat, ElementsAre(2));
  EXPECT_THAT(seen_, ElementsAre(1, 2, 6));
  EXPECT_EQ(subscriber.last_sequence(), 6u);
  const std::vector<SubscribeRequest> requests = server.service().requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].start().after_sequence(), 5u);
}

TEST_F(EventSubscriberTest, HeartbeatAloneGivesAResumePointEvenAtZero) {
  // A heartbeat for sequence 0 (an empty log) is still a position: the
  // next call must not fall back to "new events only" and lose what was
  // accepted in between.
  ScriptedCall first = EndsWith(grpc::StatusCode::UNAVAILABLE);
  first.extra = {HeartbeatResponse(0)};
  FakeServer server({first, EndsWith(grpc::StatusCode::PERMISSION_DENIED)});
  ASSERT_TRUE(server.started());
  EventSubscriberOptions options = OptionsFor(server);
  options.start.Clear();  // new events only
  EventSubscriber subscriber(options);

  EXPECT_EQ(RunBounded(subscriber, Record()).code(),
            absl::StatusCode::kPermissionDenied);

  const std::vector<SubscribeRequest> requests = server.service().requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_FALSE(requests[0].has_start());
  ASSERT_EQ(requests[1].start().position_case(), StartPosition::kAfterSequence);
  EXPECT_EQ(requests[1].start().after_sequence(), 0u);
}

TEST_F(EventSubscriberTest, ReusesOriginalStartPositionWhileNothingWasSeen) {
  FakeServer server({EndsWith(grpc::StatusCode::UNAVAILABLE),
                     EndsWith(grpc::StatusCode::DEADLINE_EXCEEDED),
                     EndsWith(grpc::StatusCode::PERMISSION_DENIED)});
  ASSERT_TRUE(server.started());
  EventSubscriberOptions options = OptionsFor(server);
  options.start.mutable_since_time()->set_seconds(1772373600);
  options.start.mutable_since_time()->set_nanos(5);
  std::vector<StartPosition> retry_starts;
  options.on_retry = [&retry_starts](const absl::Status&, absl::Duration,
                                     const StartPosition& next_start) {
    retry_starts.push_back(next_start);
  };
  EventSubscriber subscriber(options);

  EXPECT_EQ(RunBounded(subscriber, Record()).code(),
            absl::StatusCode::kPermissionDenied);

  EXPECT_TRUE(seen_.empty());
  EXPECT_EQ(subscriber.last_sequence(), 0u);
  const std::vector<SubscribeRequest> requests = server.service().requests();
  ASSERT_EQ(requests.size(), 3u);
  for (const SubscribeRequest& request : requests) {
    ASSERT_EQ(request.start().position_case(), StartPosition::kSinceTime);
    EXPECT_EQ(request.start().since_time().seconds(), 1772373600);
    EXPECT_EQ(request.start().since_time().nanos(), 5);
  }
  ASSERT_EQ(retry_starts.size(), 2u);
  EXPECT_EQ(retry_starts[1].since_time().seconds(), 1772373600);
}

TEST_F(EventSubscriberTest, NonRetryableStatusEndsRunWithIt) {
  ScriptedCall refused;
  refused.events = 1;
  refused.end = grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                             "after_sequence 0 is outside [4, 9]");
  FakeServer server({refused});
  ASSERT_TRUE(server.started());
  EventSubscriber subscriber(OptionsFor(server));

  EXPECT_EQ(RunBounded(subscriber, Record()),
            absl::OutOfRangeError("after_sequence 0 is outside [4, 9]"));

  EXPECT_THAT(seen_, ElementsAre(1));
  EXPECT_EQ(subscriber.last_sequence(), 1u);
  EXPECT_TRUE(delays_.empty());
  EXPECT_EQ(server.service().requests().size(), 1u);
}

TEST_F(EventSubscriberTest, OnlyTheRetryableCodesReconnect) {
  const grpc::StatusCode kRetryable[] = {grpc::StatusCode::UNAVAILABLE,
                                         grpc::StatusCode::DEADLINE_EXCEEDED,
                                         grpc::StatusCode::RESOURCE_EXHAUSTED,
                                         grpc::StatusCode::INTERNAL,
                                         grpc::StatusCode::UNKNOWN,
                                         grpc::StatusCode::ABORTED,
                                         grpc::StatusCode::CANCELLED,
                                         grpc::StatusCode::OK};
  for (grpc::StatusCode code : kRetryable) {
    SCOPED_TRACE(absl::StrCat("code ", code));
    FakeServer server(
        {EndsWith(code, 1), EndsWith(grpc::StatusCode::PERMISSION_DENIED)});
    ASSERT_TRUE(server.started());
    EventSubscriber subscriber(OptionsFor(server));

    EXPECT_EQ(RunBounded(subscriber, Record()).code(),
              absl::StatusCode::kPermissionDenied);

    const std::vector<SubscribeRequest> requests = server.service().requests();
    ASSERT_EQ(requests.size(), 2u);
    EXPECT_EQ(requests[1].start().after_sequence(), 1u);
  }

  const grpc::StatusCode kFinal[] = {grpc::StatusCode::INVALID_ARGUMENT,
                                     grpc::StatusCode::OUT_OF_RANGE,
                                     grpc::StatusCode::PERMISSION_DENIED,
                                     grpc::StatusCode::UNAUTHENTICATED,
                                     grpc::StatusCode::NOT_FOUND,
                                     grpc::StatusCode::FAILED_PRECONDITION,
                                     grpc::StatusCode::UNIMPLEMENTED};
  for (grpc::StatusCode code : kFinal) {
    SCOPED_TRACE(absl::StrCat("code ", code));
    FakeServer server(
        {EndsWith(code), EndsWith(grpc::StatusCode::UNAVAILABLE)});
    ASSERT_TRUE(server.started());
    EventSubscriber subscriber(OptionsFor(server));

    EXPECT_EQ(RunBounded(subscriber, Record()).code(),
              static_cast<absl::StatusCode>(code));

    EXPECT_EQ(server.service().requests().size(), 1u);
  }
}

TEST_F(EventSubscriberTest, FailingEventCallbackStopsRunWithItsStatus) {
  ScriptedCall held;
  held.events = 3;
  FakeServer server({held});
  ASSERT_TRUE(server.started());
  EventSubscriber subscriber(OptionsFor(server));

  const absl::Status status =
      RunBounded(subscriber, [this](const Event& event) {
        seen_.push_back(event.sequence());
        if (event.sequence() == 2) return absl::DataLossError("disk full");
        return absl::OkStatus();
      });

  EXPECT_EQ(status, absl::DataLossError("disk full"));
  EXPECT_THAT(seen_, ElementsAre(1, 2));
  // Event 2 was not handled, so resuming must deliver it again.
  EXPECT_EQ(subscriber.last_sequence(), 1u);
  EXPECT_TRUE(delays_.empty());
  EXPECT_TRUE(server.service().WaitForCancelledCalls(1));
}

TEST_F(EventSubscriberTest, RunAgainAfterCallbackErrorResumesAtTheFailedEvent) {
  ScriptedCall first;
  first.events = 3;
  ScriptedCall second;
  second.events = 3;
  FakeServer server({first, second});
  ASSERT_TRUE(server.started());
  EventSubscriber subscriber(OptionsFor(server));
  ASSERT_EQ(RunBounded(subscriber,
                       [](const Event& event) {
                         return event.sequence() == 2
                                    ? absl::DataLossError("disk full")
                                    : absl::OkStatus();
                       })
                .code(),
            absl::StatusCode::kDataLoss);

  EXPECT_EQ(RunBounded(subscriber, RecordAndStopAt(&subscriber, 4)),
            absl::OkStatus());

  EXPECT_THAT(seen_, ElementsAre(2, 3, 4));
  const std::vector<SubscribeRequest> requests = server.service().requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].start().after_sequence(), 1u);
}

TEST_F(EventSubscriberTest, FailingHeartbeatCallbackStopsRunWithItsStatus) {
  ScriptedCall held;
  held.events = 1;
  held.extra = {HeartbeatResponse(7)};
  FakeServer server({held});
  ASSERT_TRUE(server.started());
  EventSubscriberOptions options = OptionsFor(server);
  options.on_heartbeat = [](uint64_t) {
    return absl::PermissionDeniedError("read-only resume file");
  };
  EventSubscriber subscriber(options);

  EXPECT_EQ(RunBounded(subscriber, Record()),
            absl::PermissionDeniedError("read-only resume file"));

  EXPECT_THAT(seen_, ElementsAre(1));
  EXPECT_EQ(subscriber.last_sequence(), 1u);
}

TEST_F(EventSubscriberTest, StopEndsAnOpenStreamAndRunReturnsOk) {
  FakeServer server({});  // the call stays open with nothing to send
  ASSERT_TRUE(server.started());
  EventSubscriber subscriber(OptionsFor(server));
  absl::Status status = absl::UnknownError("Run has not returned");
  absl::Notification returned;
  std::thread runner([&] {
    status = subscriber.Run(Record());
    returned.Notify();
  });

  ASSERT_TRUE(server.service().WaitForCalls(1));
  subscriber.Stop();

  EXPECT_TRUE(returned.WaitForNotificationWithTimeout(kPatience));
  runner.join();
  EXPECT_EQ(status, absl::OkStatus());
  EXPECT_TRUE(server.service().WaitForCancelledCalls(1));
  EXPECT_EQ(server.service().requests().size(), 1u);
}

TEST_F(EventSubscriberTest, StopDuringBackoffWaitReturnsPromptly) {
  FakeServer server({EndsWith(grpc::StatusCode::UNAVAILABLE)});
  ASSERT_TRUE(server.started());
  EventSubscriberOptions options = OptionsFor(server);
  options.sleep_for = nullptr;  // a real wait, of an hour
  options.initial_backoff = absl::Hours(1);
  options.max_backoff = absl::Hours(1);
  absl::Notification waiting;
  options.on_retry = [&waiting](const absl::Status&, absl::Duration,
                                const StartPosition&) { waiting.Notify(); };
  EventSubscriber subscriber(options);
  absl::Status status = absl::UnknownError("Run has not returned");
  absl::Notification returned;
  std::thread runner([&] {
    status = subscriber.Run(Record());
    returned.Notify();
  });

  ASSERT_TRUE(waiting.WaitForNotificationWithTimeout(kPatience));
  const absl::Time stop_time = absl::Now();
  subscriber.Stop();

  EXPECT_TRUE(returned.WaitForNotificationWithTimeout(kPatience));
  EXPECT_LT(absl::Now() - stop_time, kPatience);
  runner.join();
  EXPECT_EQ(status, absl::OkStatus());
  EXPECT_EQ(server.service().requests().size(), 1u);
}

TEST_F(EventSubscriberTest, StopBeforeRunMakesRunReturnWithoutConnecting) {
  FakeServer server({});
  ASSERT_TRUE(server.started());
  EventSubscriber subscriber(OptionsFor(server));

  subscriber.Stop();

  EXPECT_EQ(RunBounded(subscriber, Record()), absl::OkStatus());
  EXPECT_TRUE(server.service().requests().empty());
}

TEST_F(EventSubscriberTest, BackoffGrowsAndIsCapped) {
  std::vector<ScriptedCall> script(7, EndsWith(grpc::StatusCode::UNAVAILABLE));
  script.push_back(EndsWith(grpc::StatusCode::PERMISSION_DENIED));
  FakeServer server(script);
  ASSERT_TRUE(server.started());
  EventSubscriber subscriber(OptionsFor(server));  // 100ms..1s, x2

  EXPECT_EQ(RunBounded(subscriber, Record()).code(),
            absl::StatusCode::kPermissionDenied);

  EXPECT_THAT(
      delays_,
      ElementsAre(absl::Milliseconds(100), absl::Milliseconds(200),
                  absl::Milliseconds(400), absl::Milliseconds(800),
                  absl::Seconds(1), absl::Seconds(1), absl::Seconds(1)));
}

TEST_F(EventSubscriberTest, BackoffResetsAfterAStreamDeliveredSomething) {
  ScriptedCall heartbeat_only = EndsWith(grpc::StatusCode::UNAVAILABLE);
  heartbeat_only.extra = {HeartbeatResponse(1)};
  FakeServer server({EndsWith(grpc::StatusCode::UNAVAILABLE),
                     EndsWith(grpc::StatusCode::UNAVAILABLE),
                     EndsWith(grpc::StatusCode::UNAVAILABLE, 1),
                     EndsWith(grpc::StatusCode::UNAVAILABLE), heartbeat_only,
                     EndsWith(grpc::StatusCode::PERMISSION_DENIED)});
  ASSERT_TRUE(server.started());
  EventSubscriber subscriber(OptionsFor(server));

  EXPECT_EQ(RunBounded(subscriber, Record()).code(),
            absl::StatusCode::kPermissionDenied);

  EXPECT_THAT(delays_,
              ElementsAre(absl::Milliseconds(100), absl::Milliseconds(200),
                          absl::Milliseconds(100), absl::Milliseconds(200),
                          absl::Milliseconds(100)));
  EXPECT_THAT(seen_, ElementsAre(1));
}

TEST_F(EventSubscriberTest, JitterShortensWaitsWithinItsBound) {
  std::vector<ScriptedCall> script(20, EndsWith(grpc::StatusCode::UNAVAILABLE));
  script.push_back(EndsWith(grpc::StatusCode::PERMISSION_DENIED));
  FakeServer server(script);
  ASSERT_TRUE(server.started());
  EventSubscriberOptions options = OptionsFor(server);
  options.max_backoff = absl::Milliseconds(400);
  options.jitter = 0.5;
  EventSubscriber subscriber(options);

  EXPECT_EQ(RunBounded(subscriber, Record()).code(),
            absl::StatusCode::kPermissionDenied);

  ASSERT_EQ(delays_.size(), 20u);
  absl::Duration nominal = absl::Milliseconds(100);
  int shortened = 0;
  for (absl::Duration delay : delays_) {
    EXPECT_GE(delay, nominal / 2);
    EXPECT_LE(delay, nominal);
    if (delay < nominal) ++shortened;
    nominal = std::min(nominal * 2, absl::Milliseconds(400));
  }
  // Twenty draws that all land exactly on the bound would mean no jitter.
  EXPECT_GT(shortened, 0);
}

TEST_F(EventSubscriberTest, UnreachableServerIsRetried) {
  std::string target;
  {
    FakeServer gone({});
    ASSERT_TRUE(gone.started());
    target = gone.target();
  }  // nothing listens on the port any more
  EventSubscriberOptions options;
  options.target = target;
  options.jitter = 0;
  std::vector<absl::StatusCode> causes;
  options.on_retry = [&causes](const absl::Status& cause, absl::Duration,
                               const StartPosition&) {
    causes.push_back(cause.code());
  };
  // Stops the subscriber after its third wait.
  EventSubscriber* subscriber_ptr = nullptr;
  options.sleep_for = [&](absl::Duration delay) {
    delays_.push_back(delay);
    if (delays_.size() == 3) subscriber_ptr->Stop();
  };
  EventSubscriber subscriber(options);
  subscriber_ptr = &subscriber;

  EXPECT_EQ(RunBounded(subscriber, Record()), absl::OkStatus());

  EXPECT_THAT(causes, ElementsAre(absl::StatusCode::kUnavailable,
                                  absl::StatusCode::kUnavailable,
                                  absl::StatusCode::kUnavailable));
  EXPECT_THAT(delays_,
              ElementsAre(absl::Milliseconds(100), absl::Milliseconds(200),
                          absl::Milliseconds(400)));
}

TEST_F(EventSubscriberTest, MessageOverTheReceiveLimitIsRefusedByTheClient) {
  SubscribeResponse big = EventResponse(1);
  big.mutable_event()->set_raw_body(std::string(4096, 'x'));
  ScriptedCall call;
  call.extra = {big};
  FakeServer server({call});
  ASSERT_TRUE(server.started());
  EventSubscriberOptions options = OptionsFor(server);
  options.max_receive_message_bytes = 1024;
  std::vector<absl::StatusCode> causes;
  EventSubscriber* subscriber_ptr = nullptr;
  options.on_retry = [&](const absl::Status& cause, absl::Duration,
                         const StartPosition&) {
    causes.push_back(cause.code());
    subscriber_ptr->Stop();
  };
  EventSubscriber subscriber(options);
  subscriber_ptr = &subscriber;

  EXPECT_EQ(RunBounded(subscriber, Record()), absl::OkStatus());

  EXPECT_TRUE(seen_.empty());
  EXPECT_THAT(causes, ElementsAre(absl::StatusCode::kResourceExhausted));
}

TEST_F(EventSubscriberTest, InvalidOptionsAreRefusedWithoutConnecting) {
  FakeServer server({});
  ASSERT_TRUE(server.started());
  struct Case {
    const char* name;
    std::function<void(EventSubscriberOptions&)> spoil;
  };
  const Case kCases[] = {
      {"empty target", [](EventSubscriberOptions& o) { o.target.clear(); }},
      {"zero initial backoff",
       [](EventSubscriberOptions& o) {
         o.initial_backoff = absl::ZeroDuration();
       }},
      {"max below initial",
       [](EventSubscriberOptions& o) {
         o.max_backoff = absl::Milliseconds(50);
       }},
      {"multiplier below 1",
       [](EventSubscriberOptions& o) { o.backoff_multiplier = 0.5; }},
      {"jitter above 1", [](EventSubscriberOptions& o) { o.jitter = 1.5; }},
      {"zero message size",
       [](EventSubscriberOptions& o) { o.max_receive_message_bytes = 0; }},
  };
  for (const Case& test_case : kCases) {
    SCOPED_TRACE(test_case.name);
    EventSubscriberOptions options = OptionsFor(server);
    test_case.spoil(options);
    EventSubscriber subscriber(options);
    EXPECT_EQ(RunBounded(subscriber, Record()).code(),
              absl::StatusCode::kInvalidArgument);
  }

  EventSubscriber subscriber(OptionsFor(server));
  EXPECT_EQ(RunBounded(subscriber, EventCallback()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(server.service().requests().empty());
}

}  // namespace
}  // namespace fanout
