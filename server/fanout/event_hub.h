// The in-process fan-out hub: assigns sequence numbers to accepted events,
// keeps the most recent ones in a bounded window, and lets each subscriber
// read them in order at its own pace.
//
// Subscribers pull: each Subscription has a cursor into the window and asks
// for the next matching event when it is ready to send one. A publish never
// waits for a subscriber, and memory is bounded by the window, not by the
// number or speed of subscribers. A subscriber whose cursor falls out of the
// window is told so and must be ended.

#ifndef FANOUT_SERVER_FANOUT_EVENT_HUB_H_
#define FANOUT_SERVER_FANOUT_EVENT_HUB_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/fanout/subscription_filter.h"
#include "staffify/fanout/v1/fanout.pb.h"

namespace fanout {

struct EventHubOptions {
  // How many recent events stay in memory for subscribers to read.
  size_t window_events = 8192;
};

class EventHub;

// One subscriber's position in the hub. Created by EventHub::Subscribe.
// Thread-safe.
class Subscription {
 public:
  enum class Next {
    kEvent,       // *event holds the next matching event.
    kNone,        // Nothing yet; `wake` will be called when there is.
    kFellBehind,  // Events this subscriber had not read left the window.
    kClosed,      // The hub is shutting down.
  };

  ~Subscription();

  // Returns the next event after the cursor that matches the filter and
  // advances the cursor past it. On kNone the subscription is armed: the
  // next matching publish (or the hub closing) calls `wake` once, on the
  // publishing thread.
  Next Read(std::shared_ptr<const staffify::fanout::v1::Event>* event);

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

  // Assigns `event` the next sequence number (the first is 1), keeps it in
  // the window and wakes the subscribers it matches. Returns the sequence.
  // Thread-safe; never blocks on subscribers.
  uint64_t Publish(staffify::fanout::v1::Event event);

  // Attaches a subscriber that receives events published from now on that
  // match `filter`. `wake` is called as Subscription::Read describes; it must
  // not call Close on its own subscription. Thread-safe.
  std::shared_ptr<Subscription> Subscribe(SubscriptionFilter filter,
                                          std::function<void()> wake);

  // Makes every Read return kClosed from now on and wakes all subscribers.
  void Close();

  uint64_t last_sequence() const;
  size_t subscriber_count() const;

 private:
  friend class Subscription;

  void Detach(Subscription* subscription);

  const size_t window_events_;

  mutable absl::Mutex mu_;
  // window_[i] has sequence first_sequence_ + i.
  std::deque<std::shared_ptr<const staffify::fanout::v1::Event>> window_
      ABSL_GUARDED_BY(mu_);
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
