// Tests for EventHub and Subscription: sequencing, per-subscriber cursors and
// filters, the wake protocol, the bounded window, and shutdown.

#include "server/fanout/event_hub.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/fanout/subscription_filter.h"
#include "staffify/fanout/v1/fanout.pb.h"

namespace fanout {
namespace {

using staffify::fanout::v1::Event;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using Next = Subscription::Next;

Event MakeEvent(const std::string& event_type, const std::string& id) {
  Event event;
  event.set_event_type(event_type);
  event.set_id(id);
  return event;
}

SubscriptionFilter Filter(const std::vector<std::string>& patterns) {
  absl::StatusOr<SubscriptionFilter> filter =
      SubscriptionFilter::Create(patterns);
  EXPECT_TRUE(filter.ok()) << filter.status();
  return filter.ok() ? *filter : SubscriptionFilter();
}

EventHubOptions Window(size_t events) {
  EventHubOptions options;
  options.window_events = events;
  return options;
}

// Counts calls of a subscription's `wake`.
struct WakeCounter {
  std::function<void()> Callback() {
    return [this] { calls.fetch_add(1); };
  }
  std::atomic<int> calls{0};
};

class EventHubTest : public ::testing::Test {
 protected:
  // Reads every event `subscription` has now, in order, as
  // "<sequence>:<id>", and checks that the read ends in kNone.
  static std::vector<std::string> Drain(Subscription& subscription) {
    std::vector<std::string> read;
    std::shared_ptr<const StoredEvent> event;
    Next next;
    while ((next = subscription.Read(&event)) == Next::kEvent) {
      read.push_back(absl::StrCat(event->sequence(), ":", event->Parse().id()));
    }
    EXPECT_EQ(next, Next::kNone);
    return read;
  }

  // Declared first so that it outlives every subscription of a test.
  EventHub hub_;
};

TEST_F(EventHubTest, SequencesStartAtOneAndIncrease) {
  EXPECT_EQ(hub_.last_sequence(), 0u);
  EXPECT_EQ(hub_.Publish(MakeEvent("ticket.created", "a")), 1u);
  EXPECT_EQ(hub_.Publish(MakeEvent("call.completed", "b")), 2u);
  EXPECT_EQ(hub_.Publish(MakeEvent("ticket.created", "c")), 3u);
  EXPECT_EQ(hub_.last_sequence(), 3u);
}

TEST_F(EventHubTest, PublishedEventCarriesItsSequenceAndContents) {
  hub_.Publish(MakeEvent("test.ping", "before"));
  auto subscription = hub_.Subscribe(SubscriptionFilter(), nullptr);
  Event event = MakeEvent("ticket.created", "wh_1");
  event.set_raw_body("{}");
  hub_.Publish(event);

  std::shared_ptr<const StoredEvent> read;
  ASSERT_EQ(subscription->Read(&read), Next::kEvent);
  EXPECT_EQ(read->sequence(), 2u);
  EXPECT_EQ(read->event_type(), "ticket.created");
  const Event parsed = read->Parse();
  EXPECT_EQ(parsed.sequence(), 2u);
  EXPECT_EQ(parsed.id(), "wh_1");
  EXPECT_EQ(parsed.event_type(), "ticket.created");
  EXPECT_EQ(parsed.raw_body(), "{}");
  EXPECT_EQ(subscription->cursor(), 2u);
}

TEST_F(EventHubTest, ReadSaysWhetherAnotherMatchingEventIsWaiting) {
  auto tickets = hub_.Subscribe(Filter({"ticket.*"}), nullptr);
  hub_.Publish(MakeEvent("ticket.created", "t1"));
  hub_.Publish(MakeEvent("call.completed", "c1"));
  hub_.Publish(MakeEvent("ticket.resolved", "t2"));
  hub_.Publish(MakeEvent("call.completed", "c2"));

  std::shared_ptr<const StoredEvent> event;
  bool more = false;
  ASSERT_EQ(tickets->Read(&event, nullptr, &more), Next::kEvent);
  EXPECT_EQ(event->sequence(), 1u);
  EXPECT_TRUE(more);
  // The call in between was skipped on the way.
  EXPECT_EQ(tickets->cursor(), 2u);

  ASSERT_EQ(tickets->Read(&event, nullptr, &more), Next::kEvent);
  EXPECT_EQ(event->sequence(), 3u);
  EXPECT_FALSE(more);
  EXPECT_EQ(tickets->cursor(), 4u);
  EXPECT_EQ(tickets->Read(&event, nullptr, &more), Next::kNone);
}

TEST_F(EventHubTest, SubscriberSeesOnlyEventsPublishedAfterSubscribing) {
  hub_.Publish(MakeEvent("ticket.created", "old-1"));
  hub_.Publish(MakeEvent("ticket.created", "old-2"));
  auto subscription = hub_.Subscribe(SubscriptionFilter(), nullptr);
  EXPECT_EQ(subscription->cursor(), 2u);

  hub_.Publish(MakeEvent("ticket.created", "new-1"));
  hub_.Publish(MakeEvent("call.completed", "new-2"));
  hub_.Publish(MakeEvent("test.ping", "new-3"));

  EXPECT_THAT(Drain(*subscription),
              ElementsAre("3:new-1", "4:new-2", "5:new-3"));
}

TEST_F(EventHubTest, SubscriberSeesOnlyMatchingEventsInOrder) {
  auto tickets = hub_.Subscribe(Filter({"ticket.*"}), nullptr);
  auto calls = hub_.Subscribe(Filter({"call.completed"}), nullptr);

  hub_.Publish(MakeEvent("ticket.created", "t1"));
  hub_.Publish(MakeEvent("call.completed", "c1"));
  hub_.Publish(MakeEvent("call.analyzed", "c2"));
  hub_.Publish(MakeEvent("ticket.resolved", "t2"));
  hub_.Publish(MakeEvent("tickets.created", "x"));

  EXPECT_THAT(Drain(*tickets), ElementsAre("1:t1", "4:t2"));
  EXPECT_THAT(Drain(*calls), ElementsAre("2:c1"));
  // Events that did not match were skipped, not left for later.
  EXPECT_EQ(tickets->cursor(), 5u);
  EXPECT_EQ(calls->cursor(), 5u);
}

TEST_F(EventHubTest, SubscribersReadAtTheirOwnPace) {
  auto fast = hub_.Subscribe(SubscriptionFilter(), nullptr);
  auto slow = hub_.Subscribe(SubscriptionFilter(), nullptr);

  hub_.Publish(MakeEvent("test.ping", "1"));
  EXPECT_THAT(Drain(*fast), ElementsAre("1:1"));
  hub_.Publish(MakeEvent("test.ping", "2"));
  EXPECT_THAT(Drain(*fast), ElementsAre("2:2"));

  EXPECT_THAT(Drain(*slow), ElementsAre("1:1", "2:2"));
}

TEST_F(EventHubTest, EmptyReadArmsAndTheNextMatchingPublishWakesOnce) {
  WakeCounter wake;
  auto subscription = hub_.Subscribe(Filter({"ticket.*"}), wake.Callback());
  std::shared_ptr<const StoredEvent> event;

  ASSERT_EQ(subscription->Read(&event), Next::kNone);
  hub_.Publish(MakeEvent("call.completed", "other"));
  EXPECT_EQ(wake.calls.load(), 0);

  hub_.Publish(MakeEvent("ticket.created", "t1"));
  EXPECT_EQ(wake.calls.load(), 1);
  // The wake disarmed the subscription until its next empty read.
  hub_.Publish(MakeEvent("ticket.resolved", "t2"));
  EXPECT_EQ(wake.calls.load(), 1);

  EXPECT_THAT(Drain(*subscription), ElementsAre("2:t1", "3:t2"));
  hub_.Publish(MakeEvent("ticket.created", "t3"));
  EXPECT_EQ(wake.calls.load(), 2);
}

TEST_F(EventHubTest, SubscriptionThatNeverReadEmptyIsNotWoken) {
  WakeCounter wake;
  auto subscription = hub_.Subscribe(SubscriptionFilter(), wake.Callback());

  hub_.Publish(MakeEvent("ticket.created", "t1"));
  hub_.Publish(MakeEvent("ticket.created", "t2"));
  EXPECT_EQ(wake.calls.load(), 0);

  std::shared_ptr<const StoredEvent> event;
  ASSERT_EQ(subscription->Read(&event), Next::kEvent);
  EXPECT_EQ(event->Parse().id(), "t1");
  hub_.Publish(MakeEvent("ticket.created", "t3"));
  EXPECT_EQ(wake.calls.load(), 0);
}

TEST_F(EventHubTest, WakeRunsOnThePublishingThread) {
  std::thread::id woken_on;
  auto subscription = hub_.Subscribe(SubscriptionFilter(), [&woken_on] {
    woken_on = std::this_thread::get_id();
  });
  std::shared_ptr<const StoredEvent> event;
  ASSERT_EQ(subscription->Read(&event), Next::kNone);

  std::thread publisher([this] { hub_.Publish(MakeEvent("test.ping", "p")); });
  const std::thread::id publisher_id = publisher.get_id();
  publisher.join();

  EXPECT_EQ(woken_on, publisher_id);
}

TEST_F(EventHubTest, LaggingSubscriberFallsBehindWhileOthersKeepReading) {
  EventHub hub(Window(4));
  auto lagging = hub.Subscribe(SubscriptionFilter(), nullptr);
  auto keeping_up = hub.Subscribe(SubscriptionFilter(), nullptr);

  for (int i = 1; i <= 6; ++i) {
    hub.Publish(MakeEvent("ticket.created", absl::StrCat("e", i)));
    EXPECT_THAT(Drain(*keeping_up), ElementsAre(absl::StrCat(i, ":e", i)));
  }

  std::shared_ptr<const StoredEvent> event;
  EXPECT_EQ(lagging->Read(&event), Next::kFellBehind);
  // Falling behind is final for that subscriber.
  EXPECT_EQ(lagging->Read(&event), Next::kFellBehind);

  hub.Publish(MakeEvent("ticket.created", "e7"));
  EXPECT_THAT(Drain(*keeping_up), ElementsAre("7:e7"));
  EXPECT_EQ(lagging->Read(&event), Next::kFellBehind);
}

TEST_F(EventHubTest, SubscriberExactlyOneWindowBehindStillReadsEverything) {
  EventHub hub(Window(4));
  auto subscription = hub.Subscribe(SubscriptionFilter(), nullptr);

  for (int i = 1; i <= 4; ++i) {
    hub.Publish(MakeEvent("ticket.created", absl::StrCat("e", i)));
  }

  EXPECT_THAT(Drain(*subscription),
              ElementsAre("1:e1", "2:e2", "3:e3", "4:e4"));
}

TEST_F(EventHubTest, PartlyReadSubscriberFallsBehindWhenUnreadEventsLeave) {
  EventHub hub(Window(3));
  auto subscription = hub.Subscribe(SubscriptionFilter(), nullptr);
  std::shared_ptr<const StoredEvent> event;

  for (int i = 1; i <= 3; ++i) {
    hub.Publish(MakeEvent("ticket.created", absl::StrCat("e", i)));
  }
  ASSERT_EQ(subscription->Read(&event), Next::kEvent);
  EXPECT_EQ(event->sequence(), 1u);

  // 2 and 3 are unread; 4 and 5 push 2 out.
  hub.Publish(MakeEvent("ticket.created", "e4"));
  ASSERT_EQ(subscription->Read(&event), Next::kEvent);
  EXPECT_EQ(event->sequence(), 2u);
  hub.Publish(MakeEvent("ticket.created", "e5"));
  hub.Publish(MakeEvent("ticket.created", "e6"));
  EXPECT_EQ(subscription->Read(&event), Next::kFellBehind);
}

TEST_F(EventHubTest, IdleSubscriberIsNotBehindWhenOnlyOtherTypesLeave) {
  // A subscriber to a rare type has read everything it can; other types
  // flowing through the window must not end it.
  EventHub hub(Window(4));
  WakeCounter wake;
  auto emergencies = hub.Subscribe(Filter({"emergency.*"}), wake.Callback());
  std::shared_ptr<const StoredEvent> event;
  ASSERT_EQ(emergencies->Read(&event), Next::kNone);

  for (int i = 1; i <= 10; ++i) {
    hub.Publish(MakeEvent("call.completed", absl::StrCat("c", i)));
  }
  EXPECT_EQ(wake.calls.load(), 0);
  hub.Publish(MakeEvent("emergency.escalated", "leak"));
  EXPECT_EQ(wake.calls.load(), 1);

  EXPECT_THAT(Drain(*emergencies), ElementsAre("11:leak"));
}

TEST_F(EventHubTest, CloseDetachesTheSubscriber) {
  WakeCounter wake;
  auto first = hub_.Subscribe(SubscriptionFilter(), wake.Callback());
  auto second = hub_.Subscribe(SubscriptionFilter(), nullptr);
  EXPECT_EQ(hub_.subscriber_count(), 2u);
  EXPECT_NE(first->id(), second->id());

  std::shared_ptr<const StoredEvent> event;
  ASSERT_EQ(first->Read(&event), Next::kNone);
  first->Close();
  EXPECT_EQ(hub_.subscriber_count(), 1u);

  // No wake after Close, even though the subscription was armed.
  hub_.Publish(MakeEvent("ticket.created", "t1"));
  EXPECT_EQ(wake.calls.load(), 0);
  EXPECT_EQ(first->Read(&event), Next::kClosed);
  // The other subscriber is unaffected.
  EXPECT_THAT(Drain(*second), ElementsAre("1:t1"));

  first->Close();
  EXPECT_EQ(hub_.subscriber_count(), 1u);
}

TEST_F(EventHubTest, DroppingTheLastReferenceDetaches) {
  auto subscription = hub_.Subscribe(SubscriptionFilter(), nullptr);
  EXPECT_EQ(hub_.subscriber_count(), 1u);
  subscription.reset();
  EXPECT_EQ(hub_.subscriber_count(), 0u);
  EXPECT_EQ(hub_.Publish(MakeEvent("ticket.created", "t1")), 1u);
}

TEST_F(EventHubTest, HubCloseMakesReadReturnClosedAndWakesArmedSubscribers) {
  WakeCounter all_wake;
  WakeCounter tickets_wake;
  auto all = hub_.Subscribe(SubscriptionFilter(), all_wake.Callback());
  auto tickets = hub_.Subscribe(Filter({"ticket.*"}), tickets_wake.Callback());
  hub_.Publish(MakeEvent("call.completed", "c1"));
  EXPECT_THAT(Drain(*all), ElementsAre("1:c1"));
  EXPECT_THAT(Drain(*tickets), IsEmpty());
  ASSERT_EQ(all_wake.calls.load(), 0);
  ASSERT_EQ(tickets_wake.calls.load(), 0);

  // Both are armed; the close wakes each once, whatever its filter.
  hub_.Close();
  EXPECT_EQ(all_wake.calls.load(), 1);
  EXPECT_EQ(tickets_wake.calls.load(), 1);

  std::shared_ptr<const StoredEvent> event;
  EXPECT_EQ(all->Read(&event), Next::kClosed);
  EXPECT_EQ(tickets->Read(&event), Next::kClosed);
  // Publishing after the close wakes nobody and hands nothing out.
  hub_.Publish(MakeEvent("ticket.created", "t1"));
  EXPECT_EQ(tickets->Read(&event), Next::kClosed);
  EXPECT_EQ(all->Read(&event), Next::kClosed);
  EXPECT_EQ(all_wake.calls.load(), 1);
  EXPECT_EQ(tickets_wake.calls.load(), 1);
}

TEST_F(EventHubTest, HubCloseEndsASubscriberWithUnreadEvents) {
  WakeCounter wake;
  auto busy = hub_.Subscribe(SubscriptionFilter(), wake.Callback());
  hub_.Publish(MakeEvent("ticket.created", "t1"));

  // Close wakes every subscriber, armed or not, so none is left waiting.
  hub_.Close();
  EXPECT_EQ(wake.calls.load(), 1);
  std::shared_ptr<const StoredEvent> event;
  EXPECT_EQ(busy->Read(&event), Next::kClosed);
}

TEST_F(EventHubTest, SubscribingToAClosedHubReadsClosed) {
  hub_.Close();
  auto subscription = hub_.Subscribe(SubscriptionFilter(), nullptr);
  std::shared_ptr<const StoredEvent> event;
  EXPECT_EQ(subscription->Read(&event), Next::kClosed);
}

// Four publishers and several filtered subscribers at once: each subscriber
// must receive every matching event exactly once, in sequence order.
TEST_F(EventHubTest, ConcurrentPublishersAndSubscribersLoseAndRepeatNothing) {
  constexpr int kPublishers = 4;
  // All 8000 events fit the default window, so however the threads are
  // scheduled no reader can fall behind.
  constexpr int kEventsPerPublisher = 2000;
  static_assert(kPublishers * kEventsPerPublisher <= 8192, "window");
  const std::vector<std::string> kTypes = {"ticket.created", "call.completed",
                                           "chat.completed", "test.ping"};

  struct Reader {
    std::vector<std::string> patterns;
    SubscriptionFilter filter;
    std::mutex mu;
    std::condition_variable cv;
    bool woken = false;  // Guarded by mu.
    // Written by the reader thread only; read after join.
    std::vector<std::shared_ptr<const StoredEvent>> received;
    bool failed = false;
    std::string failure;
    // Last, so that it detaches before the members `wake` uses go away.
    std::shared_ptr<Subscription> subscription;
  };
  std::vector<std::unique_ptr<Reader>> readers;
  for (const std::vector<std::string>& patterns :
       std::vector<std::vector<std::string>>{{"*"},
                                             {"ticket.*"},
                                             {"call.completed", "test.ping"},
                                             {"chat.*", "ticket.created"},
                                             {"call.*"}}) {
    auto reader = std::make_unique<Reader>();
    reader->patterns = patterns;
    reader->filter = Filter(patterns);
    Reader* r = reader.get();
    reader->subscription = hub_.Subscribe(reader->filter, [r] {
      std::lock_guard<std::mutex> lock(r->mu);
      r->woken = true;
      r->cv.notify_one();
    });
    readers.push_back(std::move(reader));
  }

  // Publisher p publishes event i with type kTypes[(p + i) % 4], so each
  // type gets the same share from each publisher.
  auto expected_count = [&](const SubscriptionFilter& filter) {
    int count = 0;
    for (int p = 0; p < kPublishers; ++p) {
      for (int i = 0; i < kEventsPerPublisher; ++i) {
        if (filter.Matches(kTypes[(p + i) % kTypes.size()])) ++count;
      }
    }
    return count;
  };

  std::vector<std::thread> reader_threads;
  for (auto& reader : readers) {
    Reader* r = reader.get();
    const size_t want = expected_count(r->filter);
    reader_threads.emplace_back([r, want] {
      std::shared_ptr<const StoredEvent> event;
      while (r->received.size() < want) {
        switch (r->subscription->Read(&event)) {
          case Next::kEvent:
            r->received.push_back(std::move(event));
            break;
          case Next::kNone: {
            std::unique_lock<std::mutex> lock(r->mu);
            // Guards against a lost event hanging the suite; the wake, not
            // the timeout, is what normally ends the wait.
            if (!r->cv.wait_for(lock, std::chrono::seconds(60),
                                [r] { return r->woken; })) {
              r->failed = true;
              r->failure = "timed out waiting for a wake";
              return;
            }
            r->woken = false;
            break;
          }
          case Next::kFellBehind:
          case Next::kClosed:
            r->failed = true;
            r->failure = "subscription ended early";
            return;
        }
      }
    });
  }

  // Publishers start together so that their events interleave.
  std::mutex start_mu;
  std::condition_variable start_cv;
  bool start = false;
  std::vector<std::thread> publishers;
  for (int p = 0; p < kPublishers; ++p) {
    publishers.emplace_back([&, p] {
      {
        std::unique_lock<std::mutex> lock(start_mu);
        start_cv.wait(lock, [&] { return start; });
      }
      for (int i = 0; i < kEventsPerPublisher; ++i) {
        hub_.Publish(MakeEvent(kTypes[(p + i) % kTypes.size()],
                               absl::StrCat(p, "-", i)));
      }
    });
  }
  {
    std::lock_guard<std::mutex> lock(start_mu);
    start = true;
  }
  start_cv.notify_all();
  for (auto& publisher : publishers) publisher.join();
  for (auto& thread : reader_threads) thread.join();

  EXPECT_EQ(hub_.last_sequence(),
            static_cast<uint64_t>(kPublishers * kEventsPerPublisher));
  for (const auto& reader : readers) {
    SCOPED_TRACE(absl::StrJoin(reader->patterns, ","));
    ASSERT_FALSE(reader->failed) << reader->failure;
    EXPECT_EQ(reader->received.size(),
              static_cast<size_t>(expected_count(reader->filter)));

    uint64_t last_sequence = 0;
    // Per publisher, the index of the last event seen from it.
    std::map<std::string, int> last_index;
    for (const auto& event : reader->received) {
      EXPECT_GT(event->sequence(), last_sequence);
      last_sequence = event->sequence();
      EXPECT_TRUE(reader->filter.Matches(event->event_type()))
          << event->event_type();

      // One publisher's events arrive in the order it published them, so
      // no event is seen twice.
      const std::string id = event->Parse().id();
      const std::string publisher = id.substr(0, id.find('-'));
      const int index = std::stoi(id.substr(id.find('-') + 1));
      auto it = last_index.find(publisher);
      if (it != last_index.end()) {
        EXPECT_GT(index, it->second) << id;
      }
      last_index[publisher] = index;
    }

    // Nothing more is waiting: no event was delivered late or twice.
    std::shared_ptr<const StoredEvent> extra;
    EXPECT_EQ(reader->subscription->Read(&extra), Next::kNone);
  }
  readers.clear();
  EXPECT_EQ(hub_.subscriber_count(), 0u);
}

TEST(EventHubWindowTest, WindowIsBoundedByBytesAsWellAsCount) {
  EventHubOptions options;
  options.window_events = 1000;
  options.window_bytes = 64 << 10;
  EventHub hub(options);
  std::shared_ptr<Subscription> behind =
      hub.Subscribe(SubscriptionFilter(), [] {});

  // Ten events of 16 KiB cannot all stay within 64 KiB.
  for (int i = 0; i < 10; ++i) {
    Event event;
    event.set_event_type("test.ping");
    event.set_raw_body(std::string(16 << 10, 'x'));
    hub.Publish(std::move(event));
  }
  std::shared_ptr<const StoredEvent> event;
  EXPECT_EQ(behind->Read(&event), Subscription::Next::kFellBehind);

  // A subscriber after the newest event still reads live ones.
  std::shared_ptr<Subscription> live =
      hub.Subscribe(SubscriptionFilter(), [] {});
  Event next;
  next.set_event_type("test.ping");
  hub.Publish(std::move(next));
  ASSERT_EQ(live->Read(&event), Subscription::Next::kEvent);
  EXPECT_EQ(event->sequence(), 11u);
}

}  // namespace
}  // namespace fanout
