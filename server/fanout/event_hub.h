// The in-process fan-out hub: keeps the most recently committed events in a
// bounded window and lets each subscriber read them in order at its own pace.
//
// Subscribers pull: each Subscription has a cursor (the last sequence it
// considered) and asks for the next matching event when it is ready to send
// one. A publish never waits for a subscriber, and memory is bounded by the
// window, not by the number or speed of subscribers. A subscriber whose
// cursor falls out of the window is told so, reads from the event log
// instead, and Seeks past what it read.

#ifndef FANOUT_SERVER_FANOUT_EVENT_HUB_H_
#define FANOUT_SERVER_FANOUT_EVENT_HUB_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/fanout/subscription_filter.h"
#include "server/log/stored_event.h"
#include "staffify/fanout/v1/fanout.pb.h"

namespace fanout {

struct EventHubOptions {
  // How many recent events stay in memory for subscribers to read, at
  // most, and how much memory they may take (the newest event always stays).
  size_t window_events = 8192;
  size_t window_bytes = 64 << 20;
};

class EventHub;

// One subscriber's position in the hub. Created by EventHub::Subscribe.
// Thread-safe.
class Subscription {
 public:
  enum class Next {
    kEvent,       // *event holds the next matching event.
    kNone,        // Nothing yet; `wake` will be called when there is.
    kFellBehind,  // The events after the cursor left the window: read
                  // them from the event log, then Seek.
    kClosed,      // The hub is shutting down.
  };

  ~Subscription();

  // Returns the next event after the cursor that matches the filter and
  // advances the cursor past it. On kNone the subscription is armed: the
  // next matching publish (or the hub closing) calls `wake` once, on the
  // publishing thread.
  // When `published_at` is given, it receives the time the event was
  // published to the hub (for latency metrics). When `more` is given, it
  // says whether another matching event is in the window already, so that
  // the caller can send the two together; non-matching events before it
  // are skipped now.
  Next Read(std::shared_ptr<const StoredEvent>* event,
            absl::Time* published_at = nullptr, bool* more = nullptr);

  // Moves the cursor forward to `through` (never back), after the caller
  // delivered events up to it from elsewhere.
  void Seek(uint64_t through);

  // Detaches from the hub. After Close returns, `wake` is not running and
  // will not be called again. Idempotent.
  void Close();

  uint64_t id() const { return id_; }
  // Sequence of the last event read (or skipped as not matching).
  uint64_t cursor() const;

 private:
  friend class EventHub;
  Subscription(EventHub* hub, uint64_t id, SubscriptionFilter filter,
               uint64_t cursor, std::function<void()> wake);

  void Wake();
  // Moves the cursor past events that do not match; returns whether a
  // matching one follows in the window. REQUIRES: hub_->mu_ held.
  bool SkipToNextMatch();

  EventHub* const hub_;
  const uint64_t id_;
  const SubscriptionFilter filter_;

  // Guarded by hub_->mu_.
  uint64_t cursor_;
  bool armed_ = false;
  bool attached_ = true;

  // Serialises `wake` against Close.
  std::mutex wake_mu_;
  std::function<void()> wake_;
};

class EventHub {
 public:
  explicit EventHub(EventHubOptions options = {});
  // REQUIRES: every Subscription of this hub has been destroyed.
  ~EventHub() = default;

  EventHub(const EventHub&) = delete;
  EventHub& operator=(const EventHub&) = delete;

  // Keeps `event`, whose sequence is set, in the window and wakes the
  // subscribers it matches. Events must come in sequence order; one at or
  // below the last published is ignored, and a gap restarts the window.
  // Thread-safe; never blocks on subscribers.
  void Publish(std::shared_ptr<const StoredEvent> event);

  // As above, for an event without a sequence: assigns it the next one
  // (the first is 1) and returns it. For hubs that are their own source of
  // sequence numbers, such as in tests.
  uint64_t Publish(staffify::fanout::v1::Event event);

  // Makes `last_sequence` the last published, with an empty window: for a
  // hub started over an existing log. Call before any Publish.
  void StartAfter(uint64_t last_sequence);

  // Wakes every armed subscriber, so that streams can act on time passing
  // (send heartbeats). Thread-safe.
  void Tick();

  // Attaches a subscriber that receives events published from now on that
  // match `filter`. `wake` is called as Subscription::Read describes; it must
  // not call Close on its own subscription. Thread-safe.
  std::shared_ptr<Subscription> Subscribe(SubscriptionFilter filter,
                                          std::function<void()> wake);

  // As above, starting after sequence `after` (the next Read looks at
  // after + 1) instead of after the last published; nullopt means the
  // latter.
  std::shared_ptr<Subscription> Subscribe(SubscriptionFilter filter,
                                          std::optional<uint64_t> after,
                                          std::function<void()> wake);

  // Makes every Read return kClosed from now on and wakes all subscribers.
  void Close();

  uint64_t last_sequence() const;
  size_t subscriber_count() const;

  // (subscription id, cursor) of every attached subscriber, by id.
  std::vector<std::pair<uint64_t, uint64_t>> SubscriberCursors() const;

 private:
  friend class Subscription;

  void Detach(Subscription* subscription);
  // Publish with mu_ held; collects the subscriptions to wake once mu_ is
  // released.
  void PublishLocked(std::shared_ptr<const StoredEvent> event,
                     std::vector<std::shared_ptr<Subscription>>* to_wake)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t window_events_;
  const size_t window_bytes_;

  mutable absl::Mutex mu_;
  // window_[i] has sequence first_sequence_ + i.
  struct Slot {
    std::shared_ptr<const StoredEvent> event;
    size_t bytes;  // Memory the event takes.
    absl::Time published_at;
  };
  std::deque<Slot> window_ ABSL_GUARDED_BY(mu_);
  size_t window_bytes_used_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t first_sequence_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t last_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_subscription_id_ ABSL_GUARDED_BY(mu_) = 1;
  struct Attached {
    Subscription* subscription;
    // Publish wakes subscribers outside mu_; the weak pointer keeps a
    // subscription alive across that call, or says it is being destroyed.
    std::weak_ptr<Subscription> handle;
  };
  std::vector<Attached> subscriptions_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace fanout

#endif  // FANOUT_SERVER_FANOUT_EVENT_HUB_H_
