// Tests for EventLog: sequence assignment, deduplication by delivery id,
// group commit, replay reads, receipt-time lookups, retention, and what
// Open does with a data directory it cannot use.

#include "server/log/event_log.h"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <numeric>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "staffify/fanout/v1/fanout.pb.h"
#include "tests/util/temp_dir.h"

namespace fanout {
namespace {

using staffify::fanout::v1::Event;
using ::testing::AnyOf;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using EventPtr = std::shared_ptr<const Event>;
using StoredPtr = std::shared_ptr<const StoredEvent>;

// Receipt times of test events lie in 2200. Retention that the writer runs
// by itself compares them with the real clock and never reaches them, so a
// test decides what is old by the `now` it passes to EnforceRetention.
constexpr absl::Time kBase = absl::FromUnixSeconds(7258118400);

// Long enough that an append or a background pass that has not happened by
// then never will: a failure, not a slow machine.
constexpr absl::Duration kPatience = absl::Seconds(30);

// Read's `limit_bytes` for reads bounded by event count only.
constexpr size_t kNoByteLimit = SIZE_MAX;

void SetReceivedAt(absl::Time time, Event* event) {
  const int64_t micros = absl::ToUnixMicros(time);
  event->mutable_received_at()->set_seconds(micros / 1000000);
  event->mutable_received_at()->set_nanos(
      static_cast<int32_t>(micros % 1000000 * 1000));
}

absl::Time ReceivedAt(const Event& event) {
  return absl::FromUnixSeconds(event.received_at().seconds()) +
         absl::Nanoseconds(event.received_at().nanos());
}

Event MakeEvent(const std::string& id,
                const std::string& event_type = "ticket.created",
                absl::Time received_at = kBase) {
  Event event;
  event.set_id(id);
  event.set_event_type(event_type);
  event.set_raw_body(
      absl::StrCat(R"({"id":")", id, R"(","event":")", event_type, R"("})"));
  SetReceivedAt(received_at, &event);
  return event;
}

absl::StatusOr<AppendResult> AppendAndWait(EventLog* log, Event event) {
  absl::Notification done;
  absl::StatusOr<AppendResult> result =
      absl::DeadlineExceededError("append did not complete");
  log->Append(std::move(event), [&](absl::StatusOr<AppendResult> appended) {
    result = std::move(appended);
    done.Notify();
  });
  done.WaitForNotificationWithTimeout(kPatience);
  return result;
}

// Appends `events` one after another, each after the previous committed,
// and returns their sequences (0 for a failed append).
std::vector<uint64_t> AppendAll(EventLog* log, std::vector<Event> events) {
  std::vector<uint64_t> sequences;
  for (Event& event : events) {
    absl::StatusOr<AppendResult> result = AppendAndWait(log, std::move(event));
    EXPECT_TRUE(result.ok()) << result.status();
    sequences.push_back(result.ok() ? result->sequence : 0);
  }
  return sequences;
}

bool MatchAll(const std::string&) { return true; }

// Every event in the log, parsed.
std::vector<EventPtr> ReadAll(EventLog* log) {
  std::vector<StoredPtr> stored;
  uint64_t scanned_through = 0;
  const absl::Status status =
      log->Read(0, SIZE_MAX, kNoByteLimit, MatchAll, &stored, &scanned_through);
  EXPECT_TRUE(status.ok()) << status;
  std::vector<EventPtr> events;
  for (const StoredPtr& event : stored) {
    events.push_back(std::make_shared<const Event>(event->Parse()));
    EXPECT_EQ(events.back()->sequence(), event->sequence());
    EXPECT_EQ(events.back()->event_type(), event->event_type());
  }
  return events;
}

template <typename EventPointer>
std::vector<uint64_t> SequencesOf(const std::vector<EventPointer>& events) {
  std::vector<uint64_t> sequences;
  for (const auto& event : events) sequences.push_back(event->sequence());
  return sequences;
}

std::vector<uint64_t> Iota(uint64_t first, uint64_t last) {
  std::vector<uint64_t> values(last + 1 - first);
  std::iota(values.begin(), values.end(), first);
  return values;
}

uint64_t StoredBytes(const std::vector<EventPtr>& events) {
  uint64_t bytes = 0;
  for (const EventPtr& event : events) bytes += event->ByteSizeLong();
  return bytes;
}

// Records what a log's CommitListener is given.
class CommitRecorder {
 public:
  EventLog::CommitListener Listener() {
    return [this](const std::vector<StoredPtr>& events) {
      absl::MutexLock lock(&mu_);
      for (const StoredPtr& event : events) {
        sequences_.push_back(event->sequence());
        ids_.push_back(event->Parse().id());
      }
    };
  }

  std::vector<uint64_t> sequences() const {
    absl::MutexLock lock(&mu_);
    return sequences_;
  }
  std::vector<std::string> ids() const {
    absl::MutexLock lock(&mu_);
    return ids_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<uint64_t> sequences_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> ids_ ABSL_GUARDED_BY(mu_);
};

class EventLogTest : public ::testing::Test {
 protected:
  EventLogTest() {
    // A folder that does not exist yet: Open creates it.
    options_.data_dir = dir_.path() + "/log";
    options_.retention_age = absl::ZeroDuration();
    options_.retention_interval = absl::Hours(1000);
  }

  std::unique_ptr<EventLog> OpenLog(EventLog::CommitListener listener = {}) {
    absl::StatusOr<std::unique_ptr<EventLog>> log =
        EventLog::Open(options_, std::move(listener));
    EXPECT_TRUE(log.ok()) << log.status();
    return log.ok() ? *std::move(log) : nullptr;
  }

  std::string DatabasePath() const { return options_.data_dir + "/events.db"; }

  testing::TempDir dir_;
  EventLogOptions options_;
};

TEST_F(EventLogTest, NewLogIsEmptyAndStartsBeforeSequenceOne) {
  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);

  const LogRange range = log->range();
  EXPECT_EQ(range.first, 1u);
  EXPECT_EQ(range.last, 0u);
  EXPECT_THAT(ReadAll(log.get()), IsEmpty());
}

TEST_F(EventLogTest, SequencesStartAtOneAndIncreaseWithoutGaps) {
  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);

  EXPECT_THAT(AppendAll(log.get(), {MakeEvent("a"), MakeEvent("b"),
                                    MakeEvent("c"), MakeEvent("d")}),
              ElementsAre(1, 2, 3, 4));

  const LogRange range = log->range();
  EXPECT_EQ(range.first, 1u);
  EXPECT_EQ(range.last, 4u);
  const std::vector<EventPtr> stored = ReadAll(log.get());
  EXPECT_THAT(SequencesOf(stored), ElementsAre(1, 2, 3, 4));
  ASSERT_EQ(stored.size(), 4u);
  EXPECT_EQ(stored[0]->id(), "a");
  EXPECT_EQ(stored[3]->id(), "d");
}

TEST_F(EventLogTest, ReopenedLogKeepsEventsAndContinuesNumbering) {
  options_.sync = SyncPolicy::kFull;
  {
    std::unique_ptr<EventLog> log = OpenLog();
    ASSERT_NE(log, nullptr);
    EXPECT_THAT(AppendAll(log.get(), {MakeEvent("a"), MakeEvent("b")}),
                ElementsAre(1, 2));
  }

  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->range().first, 1u);
  EXPECT_EQ(log->range().last, 2u);
  EXPECT_THAT(AppendAll(log.get(), {MakeEvent("c")}), ElementsAre(3));

  const std::vector<EventPtr> stored = ReadAll(log.get());
  EXPECT_THAT(SequencesOf(stored), ElementsAre(1, 2, 3));
  ASSERT_EQ(stored.size(), 3u);
  EXPECT_EQ(stored[0]->id(), "a");
  EXPECT_EQ(stored[2]->id(), "c");
}

TEST_F(EventLogTest, EachAppendCompletesExactlyOnceWithItsOwnSequence) {
  constexpr int kAppends = 300;
  std::vector<std::atomic<int>> calls(kAppends);
  std::vector<uint64_t> sequences(kAppends, 0);
  {
    std::unique_ptr<EventLog> log = OpenLog();
    ASSERT_NE(log, nullptr);
    for (int i = 0; i < kAppends; ++i) {
      log->Append(MakeEvent(absl::StrCat("d-", i)),
                  [&calls, &sequences, i](absl::StatusOr<AppendResult> result) {
                    calls[i].fetch_add(1);
                    EXPECT_TRUE(result.ok()) << result.status();
                    if (result.ok()) sequences[i] = result->sequence;
                  });
    }
    // Closing the log completes whatever is still queued.
  }

  // Appends from one thread keep their order: the i-th gets sequence i + 1.
  for (int i = 0; i < kAppends; ++i) {
    EXPECT_EQ(calls[i].load(), 1) << "append " << i;
    EXPECT_EQ(sequences[i], static_cast<uint64_t>(i) + 1) << "append " << i;
  }

  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);
  const std::vector<EventPtr> stored = ReadAll(log.get());
  EXPECT_EQ(stored.size(), static_cast<size_t>(kAppends));
  for (const EventPtr& event : stored) {
    EXPECT_EQ(event->id(), absl::StrCat("d-", event->sequence() - 1));
  }
}

TEST_F(EventLogTest, CommitListenerSeesNewEventsOnceInOrderWithoutDuplicates) {
  CommitRecorder recorder;
  std::unique_ptr<EventLog> log = OpenLog(recorder.Listener());
  ASSERT_NE(log, nullptr);

  AppendAll(log.get(), {MakeEvent("a"), MakeEvent("b"), MakeEvent("a"),
                        MakeEvent("c"), MakeEvent("b")});

  EXPECT_THAT(recorder.sequences(), ElementsAre(1, 2, 3));
  EXPECT_THAT(recorder.ids(), ElementsAre("a", "b", "c"));
}

TEST_F(EventLogTest, DuplicateReturnsOriginalSequenceAndKeepsFirstEvent) {
  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);
  Event original = MakeEvent("dup", "ticket.created");
  original.set_raw_body(R"({"id":"dup","n":1})");
  EXPECT_THAT(AppendAll(log.get(), {original, MakeEvent("other")}),
              ElementsAre(1, 2));

  // Same body, other fields changed: not "differing", since only the body
  // is what Staffify sent.
  Event same_body = original;
  same_body.set_event_type("ticket.resolved");
  absl::StatusOr<AppendResult> retry = AppendAndWait(log.get(), same_body);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_TRUE(retry->duplicate);
  EXPECT_FALSE(retry->differs);
  EXPECT_EQ(retry->sequence, 1u);
  EXPECT_EQ(log->duplicates(), 1u);
  EXPECT_EQ(log->differing_duplicates(), 0u);

  Event other_body = original;
  other_body.set_raw_body(R"({"id":"dup","n":2})");
  absl::StatusOr<AppendResult> changed = AppendAndWait(log.get(), other_body);
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_TRUE(changed->duplicate);
  EXPECT_TRUE(changed->differs);
  EXPECT_EQ(changed->sequence, 1u);
  EXPECT_EQ(log->duplicates(), 2u);
  EXPECT_EQ(log->differing_duplicates(), 1u);

  // Neither retry took a sequence or replaced the stored event.
  EXPECT_EQ(log->range().last, 2u);
  const std::vector<EventPtr> stored = ReadAll(log.get());
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[0]->id(), "dup");
  EXPECT_EQ(stored[0]->event_type(), "ticket.created");
  EXPECT_EQ(stored[0]->raw_body(), R"({"id":"dup","n":1})");
  EXPECT_THAT(AppendAll(log.get(), {MakeEvent("next")}), ElementsAre(3));
}

TEST_F(EventLogTest, NewEventIsNotReportedAsDuplicate) {
  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);

  absl::StatusOr<AppendResult> result =
      AppendAndWait(log.get(), MakeEvent("a"));

  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_FALSE(result->duplicate);
  EXPECT_FALSE(result->differs);
  EXPECT_EQ(log->duplicates(), 0u);
}

TEST_F(EventLogTest, ConcurrentAppendsOfTheSameIdsStoreEachIdOnce) {
  constexpr int kThreads = 6;
  constexpr int kIds = 200;
  CommitRecorder recorder;
  std::unique_ptr<EventLog> log = OpenLog(recorder.Listener());
  ASSERT_NE(log, nullptr);

  absl::Mutex mu;
  std::map<std::string, std::vector<AppendResult>> results;
  int failures = 0;
  absl::BlockingCounter pending(kThreads * kIds);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Each thread appends every id, starting at a different one.
      for (int i = 0; i < kIds; ++i) {
        const std::string id = absl::StrCat("d-", (i + t * 37) % kIds);
        log->Append(MakeEvent(id),
                    [&, id](absl::StatusOr<AppendResult> result) {
                      {
                        absl::MutexLock lock(&mu);
                        if (result.ok()) {
                          results[id].push_back(*result);
                        } else {
                          ++failures;
                        }
                      }
                      pending.DecrementCount();
                    });
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  pending.Wait();

  absl::MutexLock lock(&mu);
  EXPECT_EQ(failures, 0);
  ASSERT_EQ(results.size(), static_cast<size_t>(kIds));
  std::set<uint64_t> sequences;
  for (const auto& [id, appends] : results) {
    ASSERT_EQ(appends.size(), static_cast<size_t>(kThreads)) << id;
    const int firsts = std::count_if(
        appends.begin(), appends.end(),
        [](const AppendResult& result) { return !result.duplicate; });
    EXPECT_EQ(firsts, 1) << id;
    for (const AppendResult& result : appends) {
      EXPECT_EQ(result.sequence, appends.front().sequence) << id;
      EXPECT_FALSE(result.differs) << id;
    }
    sequences.insert(appends.front().sequence);
  }
  EXPECT_THAT(sequences, ElementsAreArray(Iota(1, kIds)));
  EXPECT_EQ(log->duplicates(), static_cast<uint64_t>((kThreads - 1) * kIds));
  EXPECT_EQ(log->range().last, static_cast<uint64_t>(kIds));

  const std::vector<EventPtr> stored = ReadAll(log.get());
  EXPECT_THAT(SequencesOf(stored), ElementsAreArray(Iota(1, kIds)));
  std::set<std::string> stored_ids;
  for (const EventPtr& event : stored) stored_ids.insert(event->id());
  EXPECT_EQ(stored_ids.size(), static_cast<size_t>(kIds));
  EXPECT_THAT(recorder.sequences(), ElementsAreArray(Iota(1, kIds)));
}

TEST_F(EventLogTest, QueuedAppendsShareCommits) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 250;
  constexpr int kAppends = kThreads * kPerThread;
  // The first commit's listener holds the writer until every append is
  // queued, so that the rest must be committed in batches of max_batch.
  absl::Notification all_queued;
  std::atomic<bool> held{false};
  std::unique_ptr<EventLog> log = OpenLog([&](const std::vector<StoredPtr>&) {
    if (!held.exchange(true)) all_queued.WaitForNotification();
  });
  ASSERT_NE(log, nullptr);

  std::atomic<int> failures{0};
  absl::BlockingCounter pending(kAppends);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        log->Append(MakeEvent(absl::StrCat("t", t, "-", i)),
                    [&](absl::StatusOr<AppendResult> result) {
                      if (!result.ok()) failures.fetch_add(1);
                      pending.DecrementCount();
                    });
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  all_queued.Notify();
  pending.Wait();

  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(log->range().last, static_cast<uint64_t>(kAppends));
  EXPECT_LT(log->commits(), static_cast<uint64_t>(kAppends));
  // At most one commit before the queue filled, then full batches.
  const uint64_t max_batch = options_.max_batch;
  EXPECT_LE(log->commits(), 1 + (kAppends - 1 + max_batch - 1) / max_batch);
  EXPECT_GE(log->commits(), (kAppends + max_batch - 1) / max_batch);
}

class ReadTest : public EventLogTest {
 protected:
  // Stores, at sequences 1..7: call, ticket, ticket, call, call, ticket, call.
  void SetUp() override {
    log_ = OpenLog();
    ASSERT_NE(log_, nullptr);
    const std::vector<std::string> types = {
        "call.completed", "ticket.created", "ticket.resolved", "call.completed",
        "call.analyzed",  "ticket.created", "call.completed"};
    std::vector<Event> events;
    for (size_t i = 0; i < types.size(); ++i) {
      events.push_back(MakeEvent(absl::StrCat("d-", i + 1), types[i]));
    }
    ASSERT_THAT(AppendAll(log_.get(), std::move(events)),
                ElementsAreArray(Iota(1, 7)));
  }

  static bool IsTicket(const std::string& event_type) {
    return event_type.rfind("ticket.", 0) == 0;
  }

  std::unique_ptr<EventLog> log_;
  std::vector<StoredPtr> out_;
  uint64_t scanned_through_ = 12345;
};

TEST_F(ReadTest, ReturnsEventsAfterTheGivenSequenceUpToTheLimit) {
  ASSERT_TRUE(
      log_->Read(2, 3, kNoByteLimit, MatchAll, &out_, &scanned_through_).ok());

  EXPECT_THAT(SequencesOf(out_), ElementsAre(3, 4, 5));
  EXPECT_EQ(scanned_through_, 5u);
  EXPECT_EQ(out_[0]->Parse().id(), "d-3");
  EXPECT_EQ(out_[0]->event_type(), "ticket.resolved");
}

TEST_F(ReadTest, SkipsRejectedTypesWithoutCountingThemTowardTheLimit) {
  ASSERT_TRUE(
      log_->Read(0, 2, kNoByteLimit, IsTicket, &out_, &scanned_through_).ok());

  EXPECT_THAT(SequencesOf(out_), ElementsAre(2, 3));
  EXPECT_EQ(scanned_through_, 3u);
}

TEST_F(ReadTest, ScannedThroughMovesPastTrailingRejectedEvents) {
  ASSERT_TRUE(
      log_->Read(3, 10, kNoByteLimit, IsTicket, &out_, &scanned_through_).ok());

  // 6 is the only ticket after 3; 7 was examined and rejected.
  EXPECT_THAT(SequencesOf(out_), ElementsAre(6));
  EXPECT_EQ(scanned_through_, 7u);
}

TEST_F(ReadTest, ScannedThroughCoversEventsWhenNoneMatch) {
  const auto nothing = [](const std::string&) { return false; };

  ASSERT_TRUE(
      log_->Read(1, 10, kNoByteLimit, nothing, &out_, &scanned_through_).ok());

  EXPECT_THAT(out_, IsEmpty());
  EXPECT_EQ(scanned_through_, 7u);
}

TEST_F(ReadTest, NothingAfterTheNewestLeavesScannedThroughAtAfter) {
  ASSERT_TRUE(
      log_->Read(7, 10, kNoByteLimit, MatchAll, &out_, &scanned_through_).ok());

  EXPECT_THAT(out_, IsEmpty());
  EXPECT_EQ(scanned_through_, 7u);
}

TEST_F(ReadTest, StopsOnceTheEventsReadReachTheByteLimit) {
  std::vector<StoredPtr> all;
  ASSERT_TRUE(
      log_->Read(0, 10, kNoByteLimit, MatchAll, &all, &scanned_through_).ok());
  ASSERT_EQ(all.size(), 7u);
  const size_t two_events =
      all[2]->serialized().size() + all[3]->serialized().size();

  ASSERT_TRUE(
      log_->Read(2, 10, two_events, MatchAll, &out_, &scanned_through_).ok());

  EXPECT_THAT(SequencesOf(out_), ElementsAre(3, 4));
  EXPECT_EQ(scanned_through_, 4u);
}

TEST_F(ReadTest, ReadsOneEventEvenIfItExceedsTheByteLimit) {
  ASSERT_TRUE(log_->Read(0, 10, 1, MatchAll, &out_, &scanned_through_).ok());

  EXPECT_THAT(SequencesOf(out_), ElementsAre(1));
  EXPECT_EQ(scanned_through_, 1u);
}

TEST_F(EventLogTest, ReadScansPastManyRejectedEvents) {
  // More rejected events in a row than one read chunk holds.
  constexpr int kEvents = 1500;
  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);
  absl::BlockingCounter pending(kEvents);
  for (int i = 1; i <= kEvents; ++i) {
    const bool wanted = i == 3 || i == 1400;
    log->Append(MakeEvent(absl::StrCat("d-", i),
                          wanted ? "ticket.created" : "call.completed"),
                [&](absl::StatusOr<AppendResult> result) {
                  EXPECT_TRUE(result.ok()) << result.status();
                  pending.DecrementCount();
                });
  }
  pending.Wait();
  const auto is_ticket = [](const std::string& type) {
    return type == "ticket.created";
  };

  std::vector<StoredPtr> out;
  uint64_t scanned_through = 0;
  ASSERT_TRUE(
      log->Read(0, 10, kNoByteLimit, is_ticket, &out, &scanned_through).ok());
  EXPECT_THAT(SequencesOf(out), ElementsAre(3, 1400));
  EXPECT_EQ(scanned_through, static_cast<uint64_t>(kEvents));

  out.clear();
  ASSERT_TRUE(
      log->Read(3, 1, kNoByteLimit, is_ticket, &out, &scanned_through).ok());
  EXPECT_THAT(SequencesOf(out), ElementsAre(1400));
  EXPECT_EQ(scanned_through, 1400u);
}

TEST_F(EventLogTest, FirstSequenceSinceFindsFirstEventReceivedAtOrAfter) {
  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);
  AppendAll(log.get(), {MakeEvent("a", "t.a", kBase + absl::Seconds(10)),
                        MakeEvent("b", "t.a", kBase + absl::Seconds(20)),
                        MakeEvent("c", "t.a", kBase + absl::Seconds(20)),
                        MakeEvent("d", "t.a", kBase + absl::Seconds(30))});

  const auto since = [&](absl::Duration offset) {
    absl::StatusOr<uint64_t> sequence = log->FirstSequenceSince(kBase + offset);
    EXPECT_TRUE(sequence.ok()) << sequence.status();
    return sequence.ok() ? *sequence : 0;
  };
  EXPECT_EQ(since(absl::ZeroDuration()), 1u);
  EXPECT_EQ(since(absl::Seconds(10)), 1u);
  EXPECT_EQ(since(absl::Seconds(10) + absl::Microseconds(1)), 2u);
  EXPECT_EQ(since(absl::Seconds(20)), 2u);
  EXPECT_EQ(since(absl::Seconds(25)), 4u);
  EXPECT_EQ(since(absl::Seconds(30)), 4u);
  // After the newest: where the next event will be.
  EXPECT_EQ(since(absl::Seconds(31)), 5u);
}

TEST_F(EventLogTest, FirstSequenceSinceOnEmptyLogIsOne) {
  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);

  absl::StatusOr<uint64_t> sequence = log->FirstSequenceSince(kBase);

  ASSERT_TRUE(sequence.ok()) << sequence.status();
  EXPECT_EQ(*sequence, 1u);
}

TEST_F(EventLogTest, EarlierReceiptTimeIsRaisedToThePrevious) {
  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);

  AppendAll(log.get(), {MakeEvent("a", "t.a", kBase + absl::Seconds(10)),
                        MakeEvent("b", "t.a", kBase + absl::Seconds(5)),
                        MakeEvent("c", "t.a", kBase + absl::Seconds(12))});

  const std::vector<EventPtr> stored = ReadAll(log.get());
  ASSERT_EQ(stored.size(), 3u);
  EXPECT_EQ(ReceivedAt(*stored[0]), kBase + absl::Seconds(10));
  EXPECT_EQ(ReceivedAt(*stored[1]), kBase + absl::Seconds(10));
  EXPECT_EQ(ReceivedAt(*stored[2]), kBase + absl::Seconds(12));
  absl::StatusOr<uint64_t> sequence =
      log->FirstSequenceSince(kBase + absl::Seconds(6));
  ASSERT_TRUE(sequence.ok()) << sequence.status();
  EXPECT_EQ(*sequence, 1u);
}

class RetentionTest : public EventLogTest {
 protected:
  RetentionTest() { options_.retention_age = absl::Hours(1); }

  // Appends events received at kBase + 0, 10, ..., 50 minutes: sequences
  // 1..6.
  void AppendSixTenMinutesApart(EventLog* log) {
    std::vector<Event> events;
    for (int i = 0; i < 6; ++i) {
      events.push_back(MakeEvent(absl::StrCat("d-", i + 1), "ticket.created",
                                 kBase + absl::Minutes(10 * i)));
    }
    ASSERT_THAT(AppendAll(log, std::move(events)),
                ElementsAreArray(Iota(1, 6)));
  }
};

TEST_F(RetentionTest, AgeLimitDeletesTheOldestPrefix) {
  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);
  AppendSixTenMinutesApart(log.get());

  // Cutoff kBase + 25 min: events at 0, 10 and 20 minutes are too old.
  ASSERT_TRUE(log->EnforceRetention(kBase + absl::Minutes(85)).ok());

  EXPECT_EQ(log->range().first, 4u);
  EXPECT_EQ(log->range().last, 6u);
  EXPECT_THAT(SequencesOf(ReadAll(log.get())), ElementsAre(4, 5, 6));
  EXPECT_THAT(AppendAll(log.get(), {MakeEvent("d-7", "ticket.created",
                                              kBase + absl::Minutes(60))}),
              ElementsAre(7));
}

TEST_F(RetentionTest, EventsWithinTheAgeLimitAreKept) {
  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);
  AppendSixTenMinutesApart(log.get());

  // Cutoff kBase exactly: the event received then is not older than it.
  ASSERT_TRUE(log->EnforceRetention(kBase + absl::Hours(1)).ok());

  EXPECT_EQ(log->range().first, 1u);
  EXPECT_EQ(log->range().last, 6u);
  EXPECT_THAT(SequencesOf(ReadAll(log.get())), ElementsAreArray(Iota(1, 6)));
}

TEST_F(RetentionTest, DeletedPrefixStaysDeletedAfterReopen) {
  {
    std::unique_ptr<EventLog> log = OpenLog();
    ASSERT_NE(log, nullptr);
    AppendSixTenMinutesApart(log.get());
    ASSERT_TRUE(log->EnforceRetention(kBase + absl::Minutes(85)).ok());
  }

  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->range().first, 4u);
  EXPECT_EQ(log->range().last, 6u);
  absl::StatusOr<uint64_t> before = log->FirstSequenceSince(kBase);
  EXPECT_EQ(before.status().code(), absl::StatusCode::kOutOfRange);
}

TEST_F(RetentionTest, SequencesContinueAfterRetentionEmptiesTheLog) {
  {
    std::unique_ptr<EventLog> log = OpenLog();
    ASSERT_NE(log, nullptr);
    AppendSixTenMinutesApart(log.get());
    ASSERT_TRUE(log->EnforceRetention(kBase + absl::Hours(3)).ok());

    EXPECT_EQ(log->range().first, 7u);
    EXPECT_EQ(log->range().last, 6u);
    EXPECT_THAT(ReadAll(log.get()), IsEmpty());
  }

  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->range().first, 7u);
  EXPECT_EQ(log->range().last, 6u);
  EXPECT_THAT(AppendAll(log.get(), {MakeEvent("new", "ticket.created",
                                              kBase + absl::Hours(3))}),
              ElementsAre(7));
  EXPECT_EQ(log->range().first, 7u);
  EXPECT_EQ(log->range().last, 7u);
  EXPECT_THAT(SequencesOf(ReadAll(log.get())), ElementsAre(7));
}

TEST_F(RetentionTest, FirstSequenceSinceBeforeDeletedEventsIsOutOfRange) {
  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);
  AppendSixTenMinutesApart(log.get());
  // Deletes the events received at 0, 10 and 20 minutes.
  ASSERT_TRUE(log->EnforceRetention(kBase + absl::Minutes(85)).ok());

  for (absl::Duration offset :
       {-absl::Hours(1), absl::ZeroDuration(), absl::Minutes(20)}) {
    absl::StatusOr<uint64_t> sequence = log->FirstSequenceSince(kBase + offset);
    EXPECT_EQ(sequence.status().code(), absl::StatusCode::kOutOfRange)
        << offset;
    EXPECT_THAT(sequence.status().message(), HasSubstr("seq 4")) << offset;
  }
  // Just after the newest deleted event nothing is missing.
  absl::StatusOr<uint64_t> sequence = log->FirstSequenceSince(
      kBase + absl::Minutes(20) + absl::Microseconds(1));
  ASSERT_TRUE(sequence.ok()) << sequence.status();
  EXPECT_EQ(*sequence, 4u);
}

TEST_F(RetentionTest, DeliveryDeletedByRetentionIsStoredAgainAsNewEvent) {
  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);
  AppendSixTenMinutesApart(log.get());
  ASSERT_TRUE(log->EnforceRetention(kBase + absl::Minutes(85)).ok());

  absl::StatusOr<AppendResult> again = AppendAndWait(
      log.get(), MakeEvent("d-1", "ticket.created", kBase + absl::Minutes(60)));

  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->duplicate);
  EXPECT_EQ(again->sequence, 7u);
  EXPECT_EQ(log->duplicates(), 0u);
}

TEST_F(RetentionTest, ReceiptTimesStayNonDecreasingAfterEmptyingAndReopen) {
  {
    std::unique_ptr<EventLog> log = OpenLog();
    ASSERT_NE(log, nullptr);
    AppendSixTenMinutesApart(log.get());
    ASSERT_TRUE(log->EnforceRetention(kBase + absl::Hours(3)).ok());
  }
  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);

  // Received (by a clock that went back) before the newest deleted event.
  AppendAll(log.get(), {MakeEvent("late", "ticket.created", kBase)});

  const std::vector<EventPtr> stored = ReadAll(log.get());
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(ReceivedAt(*stored[0]), kBase + absl::Minutes(50));
}

TEST_F(RetentionTest, ByteLimitDeletesOldestEventsUntilUnderTheLimit) {
  options_.retention_age = absl::ZeroDuration();
  {
    std::unique_ptr<EventLog> log = OpenLog();
    ASSERT_NE(log, nullptr);
    std::vector<Event> events;
    for (int i = 1; i <= 10; ++i) {
      Event event = MakeEvent(absl::StrCat("d-", i));
      event.set_raw_body(std::string(1000 + i, 'x'));
      events.push_back(std::move(event));
    }
    AppendAll(log.get(), std::move(events));
  }
  // Reopened with a limit a little over four events' worth.
  options_.retention_bytes = 4500;
  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);
  const std::vector<EventPtr> before = ReadAll(log.get());
  ASSERT_EQ(before.size(), 10u);
  ASSERT_GT(StoredBytes(before), options_.retention_bytes);

  ASSERT_TRUE(log->EnforceRetention(kBase).ok());

  const std::vector<EventPtr> kept = ReadAll(log.get());
  EXPECT_THAT(SequencesOf(kept), ElementsAre(7, 8, 9, 10));
  EXPECT_LE(StoredBytes(kept), options_.retention_bytes);
  // Keeping one more would have exceeded the limit.
  EXPECT_GT(StoredBytes(kept) + before[5]->ByteSizeLong(),
            options_.retention_bytes);
  EXPECT_EQ(log->range().first, 7u);
  EXPECT_EQ(log->range().last, 10u);
}

TEST_F(RetentionTest, ByteLimitCountsEventsAppendedAfterOpen) {
  options_.retention_age = absl::ZeroDuration();
  options_.retention_bytes = 4500;
  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);
  for (int i = 1; i <= 10; ++i) {
    Event event = MakeEvent(absl::StrCat("d-", i));
    event.set_raw_body(std::string(1000, 'x'));
    ASSERT_TRUE(AppendAndWait(log.get(), std::move(event)).ok());
  }

  ASSERT_TRUE(log->EnforceRetention(kBase).ok());

  const std::vector<EventPtr> kept = ReadAll(log.get());
  ASSERT_FALSE(kept.empty());
  EXPECT_LE(StoredBytes(kept), options_.retention_bytes);
  EXPECT_GT(StoredBytes(kept) + kept.front()->ByteSizeLong(),
            options_.retention_bytes);
  EXPECT_EQ(kept.back()->sequence(), 10u);
  EXPECT_EQ(log->range().first, kept.front()->sequence());
  EXPECT_EQ(log->range().last, 10u);
}

// Waits, up to kPatience, until retention has deleted everything through
// `sequence`.
bool AwaitTrimmedThrough(EventLog* log, uint64_t sequence) {
  const absl::Time deadline = absl::Now() + kPatience;
  while (log->range().first <= sequence) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

TEST_F(RetentionTest, RunsOnItsOwnEveryRetentionInterval) {
  // Received two hours ago by the real clock, which the writer's own
  // retention passes use.
  const absl::Time old = absl::Now() - absl::Hours(2);
  {
    options_.retention_age = absl::ZeroDuration();
    std::unique_ptr<EventLog> log = OpenLog();
    ASSERT_NE(log, nullptr);
    AppendAll(log.get(),
              {MakeEvent("a", "t.a", old), MakeEvent("b", "t.a", old)});
  }
  options_.retention_age = absl::Hours(1);
  options_.retention_interval = absl::Milliseconds(10);
  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);

  // Nothing is appended: only the interval can start this pass.
  ASSERT_TRUE(AwaitTrimmedThrough(log.get(), 2));
  EXPECT_EQ(log->range().first, 3u);
  EXPECT_EQ(log->range().last, 2u);

  // And it comes round again.
  AppendAll(log.get(),
            {MakeEvent("c", "t.a", old), MakeEvent("d", "t.a", old)});
  ASSERT_TRUE(AwaitTrimmedThrough(log.get(), 4));
  EXPECT_EQ(log->range().first, 5u);
  EXPECT_EQ(log->range().last, 4u);
  EXPECT_THAT(ReadAll(log.get()), IsEmpty());
}

TEST_F(EventLogTest, OpenFailsWhenDataDirCannotBeCreated) {
  const std::string file = dir_.path() + "/plain-file";
  std::ofstream(file) << "not a folder";
  options_.data_dir = file + "/log";

  absl::StatusOr<std::unique_ptr<EventLog>> log =
      EventLog::Open(options_, nullptr);

  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(log.status().message(), HasSubstr(options_.data_dir));
}

TEST_F(EventLogTest, OpenFailsWhenDataDirIsAFile) {
  const std::string file = dir_.path() + "/plain-file";
  std::ofstream(file) << "not a folder";
  options_.data_dir = file;

  absl::StatusOr<std::unique_ptr<EventLog>> log =
      EventLog::Open(options_, nullptr);

  ASSERT_FALSE(log.ok());
  EXPECT_THAT(log.status().code(), AnyOf(absl::StatusCode::kUnavailable,
                                         absl::StatusCode::kInternal));
  EXPECT_THAT(log.status().message(), HasSubstr(file + "/"));
}

TEST_F(EventLogTest, OpenFailsOnAFileThatIsNotADatabase) {
  options_.data_dir = dir_.path();
  {
    std::ofstream out(DatabasePath());
    for (int i = 0; i < 200; ++i) out << "this is not an SQLite database\n";
  }

  absl::StatusOr<std::unique_ptr<EventLog>> log =
      EventLog::Open(options_, nullptr);

  ASSERT_FALSE(log.ok());
  EXPECT_THAT(log.status().code(), AnyOf(absl::StatusCode::kUnavailable,
                                         absl::StatusCode::kInternal));
  EXPECT_THAT(log.status().message(), HasSubstr(DatabasePath()));
  EXPECT_THAT(log.status().message(), HasSubstr("not a database"));
}

TEST_F(EventLogTest, OpenFailsOnAnotherSchemaVersion) {
  {
    std::unique_ptr<EventLog> log = OpenLog();
    ASSERT_NE(log, nullptr);
    AppendAll(log.get(), {MakeEvent("a")});
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(DatabasePath().c_str(), &db), SQLITE_OK);
  const int rc =
      sqlite3_exec(db, "UPDATE meta SET value = 3 WHERE key = 'schema_version'",
                   nullptr, nullptr, nullptr);
  const int changed = sqlite3_changes(db);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK);
  ASSERT_EQ(changed, 1);

  absl::StatusOr<std::unique_ptr<EventLog>> log =
      EventLog::Open(options_, nullptr);

  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(log.status().message(), HasSubstr("schema version 3"));
}

// Runs `sql` on the database at `path`; returns SQLite's result code.
int ExecSql(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open(path.c_str(), &db);
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  sqlite3_close(db);
  return rc;
}

// The first column of the first row of `sql` on the database at `path`.
int64_t QuerySql(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  int64_t value = -1;
  sqlite3_stmt* statement = nullptr;
  if (sqlite3_open(path.c_str(), &db) == SQLITE_OK &&
      sqlite3_prepare_v2(db, sql, -1, &statement, nullptr) == SQLITE_OK &&
      sqlite3_step(statement) == SQLITE_ROW) {
    value = sqlite3_column_int64(statement, 0);
  }
  sqlite3_finalize(statement);
  sqlite3_close(db);
  return value;
}

TEST_F(EventLogTest, LogOfSchemaVersionOneIsUpgradedInPlace) {
  // A log as the first schema left it: ids unique by a text index, three
  // events kept (sequences 2..4; 1 was deleted by retention).
  constexpr const char* kVersionOneSchema = R"sql(
    PRAGMA journal_mode=WAL;
    CREATE TABLE events (
      sequence       INTEGER PRIMARY KEY,
      delivery_id    TEXT    NOT NULL UNIQUE,
      event_type     TEXT    NOT NULL,
      received_at_us INTEGER NOT NULL,
      event          BLOB    NOT NULL);
    CREATE INDEX events_by_received_at ON events (received_at_us);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO meta (key, value) VALUES ('schema_version', 1),
      ('last_sequence', 4), ('trimmed_through', 1),
      ('trimmed_received_at_us', 7258118400000000);
  )sql";
  std::filesystem::create_directories(options_.data_dir);
  ASSERT_EQ(ExecSql(DatabasePath(), kVersionOneSchema), SQLITE_OK);
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(DatabasePath().c_str(), &db), SQLITE_OK);
    sqlite3_stmt* insert = nullptr;
    ASSERT_EQ(
        sqlite3_prepare_v2(db, "INSERT INTO events VALUES (?1, ?2, ?3, ?4, ?5)",
                           -1, &insert, nullptr),
        SQLITE_OK);
    for (int sequence = 2; sequence <= 4; ++sequence) {
      Event event = MakeEvent(absl::StrCat("old-", sequence), "ticket.created",
                              kBase + absl::Seconds(sequence));
      event.set_sequence(sequence);
      const std::string blob = event.SerializeAsString();
      sqlite3_bind_int64(insert, 1, sequence);
      sqlite3_bind_text(insert, 2, event.id().c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(insert, 3, "ticket.created", -1, SQLITE_STATIC);
      sqlite3_bind_int64(insert, 4, absl::ToUnixMicros(ReceivedAt(event)));
      sqlite3_bind_blob(insert, 5, blob.data(), static_cast<int>(blob.size()),
                        SQLITE_TRANSIENT);
      ASSERT_EQ(sqlite3_step(insert), SQLITE_DONE);
      sqlite3_reset(insert);
    }
    sqlite3_finalize(insert);
    sqlite3_close(db);
  }

  {
    std::unique_ptr<EventLog> log = OpenLog();
    ASSERT_NE(log, nullptr);
    EXPECT_EQ(log->range().first, 2u);
    EXPECT_EQ(log->range().last, 4u);
    const std::vector<EventPtr> stored = ReadAll(log.get());
    EXPECT_THAT(SequencesOf(stored), ElementsAre(2, 3, 4));
    ASSERT_EQ(stored.size(), 3u);
    EXPECT_EQ(stored[1]->id(), "old-3");

    // Ids stored before the upgrade are still found.
    absl::StatusOr<AppendResult> retry =
        AppendAndWait(log.get(), MakeEvent("old-3"));
    ASSERT_TRUE(retry.ok()) << retry.status();
    EXPECT_TRUE(retry->duplicate);
    EXPECT_EQ(retry->sequence, 3u);
    EXPECT_THAT(AppendAll(log.get(), {MakeEvent("new")}), ElementsAre(5));
  }

  EXPECT_EQ(QuerySql(DatabasePath(),
                     "SELECT value FROM meta WHERE key = 'schema_version'"),
            2);
  // The text index on delivery_id is gone; the hash index took its place.
  EXPECT_EQ(QuerySql(DatabasePath(),
                     "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
                     " AND tbl_name = 'events' AND name LIKE 'sqlite_auto%'"),
            0);
  EXPECT_EQ(
      QuerySql(DatabasePath(), "SELECT count(*) FROM events WHERE id_hash = 0"),
      0);
  std::unique_ptr<EventLog> reopened = OpenLog();
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->range().last, 5u);
}

TEST_F(EventLogTest, DeliveryIdsWhoseHashesCollideAreToldApartByTheirIds) {
  // Every id hashes alike, so the id itself decides.
  options_.id_hash = [](absl::string_view) { return uint64_t{42}; };
  {
    std::unique_ptr<EventLog> log = OpenLog();
    ASSERT_NE(log, nullptr);
    EXPECT_THAT(AppendAll(log.get(), {MakeEvent("a"), MakeEvent("b")}),
                ElementsAre(1, 2));

    absl::StatusOr<AppendResult> retry =
        AppendAndWait(log.get(), MakeEvent("b"));
    ASSERT_TRUE(retry.ok()) << retry.status();
    EXPECT_TRUE(retry->duplicate);
    EXPECT_EQ(retry->sequence, 2u);
    absl::StatusOr<AppendResult> fresh =
        AppendAndWait(log.get(), MakeEvent("c"));
    ASSERT_TRUE(fresh.ok()) << fresh.status();
    EXPECT_FALSE(fresh->duplicate);
    EXPECT_EQ(fresh->sequence, 3u);
  }

  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);
  absl::StatusOr<AppendResult> retry = AppendAndWait(log.get(), MakeEvent("a"));
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_TRUE(retry->duplicate);
  EXPECT_EQ(retry->sequence, 1u);
  const std::vector<EventPtr> stored = ReadAll(log.get());
  ASSERT_EQ(stored.size(), 3u);
  EXPECT_EQ(stored[0]->id(), "a");
  EXPECT_EQ(stored[1]->id(), "b");
  EXPECT_EQ(stored[2]->id(), "c");
  EXPECT_EQ(log->duplicates(), 1u);
}

TEST(HashDeliveryIdTest, IsTheDocumentedFunction) {
  // Stored in every log: a change here needs a new schema version.
  EXPECT_EQ(HashDeliveryId(""), 0xefd01f60ba992926u);
  EXPECT_EQ(HashDeliveryId("wh_a1b2c3d4-e5f6-7890-abcd-ef1234567890"),
            0xff254953dccc64e8u);
}

TEST_F(EventLogTest, ClosingCompletesQueuedAppends) {
  constexpr int kAppends = 1000;
  options_.sync = SyncPolicy::kFull;
  std::atomic<int> succeeded{0};
  std::atomic<int> failed{0};
  {
    std::unique_ptr<EventLog> log = OpenLog();
    ASSERT_NE(log, nullptr);
    for (int i = 0; i < kAppends; ++i) {
      log->Append(MakeEvent(absl::StrCat("d-", i)),
                  [&](absl::StatusOr<AppendResult> result) {
                    (result.ok() ? succeeded : failed).fetch_add(1);
                  });
    }
  }

  // Every callback ran before the destructor returned.
  EXPECT_EQ(succeeded.load(), kAppends);
  EXPECT_EQ(failed.load(), 0);
  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->range().last, static_cast<uint64_t>(kAppends));
  EXPECT_EQ(ReadAll(log.get()).size(), static_cast<size_t>(kAppends));
}

TEST_F(EventLogTest, WriteAheadLogStaysBoundedAsEventsAccumulate) {
  // Sixteen times the WAL's limit, with duplicates, whose look-ups must not
  // pin the WAL either.
  constexpr int kRounds = 4;
  constexpr int kPerRound = 1000;
  constexpr size_t kBodyBytes = 4000;
  options_.checkpoint_bytes = 256 << 10;
  options_.wal_max_bytes = 1 << 20;
  std::unique_ptr<EventLog> log = OpenLog();
  ASSERT_NE(log, nullptr);
  for (int round = 0; round < kRounds; ++round) {
    std::atomic<int> failures{0};
    absl::BlockingCounter pending(kPerRound + 1);
    const auto done = [&](absl::StatusOr<AppendResult> result) {
      if (!result.ok()) failures.fetch_add(1);
      pending.DecrementCount();
    };
    for (int i = 0; i < kPerRound; ++i) {
      Event event = MakeEvent(absl::StrCat("d-", round, "-", i));
      event.set_raw_body(std::string(kBodyBytes, 'x'));
      log->Append(std::move(event), done);
    }
    log->Append(MakeEvent("d-0-0"), done);
    pending.Wait();
    ASSERT_EQ(failures.load(), 0);
  }
  EXPECT_EQ(log->range().last, static_cast<uint64_t>(kRounds * kPerRound));
  EXPECT_EQ(log->duplicates(), static_cast<uint64_t>(kRounds));

  const uint64_t written = uint64_t{kRounds} * kPerRound * kBodyBytes;
  const uint64_t wal_bytes =
      std::filesystem::file_size(DatabasePath() + "-wal");
  EXPECT_LT(wal_bytes, written / 2);
  EXPECT_GT(std::filesystem::file_size(DatabasePath()), written / 2);
  EXPECT_GT(log->checkpoints(), 0u);
}

TEST(EventLogLockTest, SecondLogOnTheSameDirectoryIsRefused) {
  testing::TempDir dir;
  EventLogOptions options;
  options.data_dir = dir.path();
  auto first = EventLog::Open(options, nullptr);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = EventLog::Open(options, nullptr);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.status().message()),
              ::testing::HasSubstr("in use by another process"));

  first->reset();
  EXPECT_TRUE(EventLog::Open(options, nullptr).ok());
}

}  // namespace
}  // namespace fanout
