#include "server/fanout/event_hub.h"

#include <algorithm>
#include <utility>

namespace fanout {

using staffify::fanout::v1::Event;

Subscription::Subscription(EventHub* hub, uint64_t id,
                           SubscriptionFilter filter, uint64_t cursor,
                           std::function<void()> wake)
    : hub_(hub),
      id_(id),
      filter_(std::move(filter)),
      cursor_(cursor),
      wake_(std::move(wake)) {}

Subscription::~Subscription() { Close(); }

Subscription::Next Subscription::Read(std::shared_ptr<const StoredEvent>* event,
                                      absl::Time* published_at, bool* more) {
  absl::MutexLock lock(&hub_->mu_);
  if (hub_->closed_ || !attached_) return Next::kClosed;
  if (cursor_ + 1 < hub_->first_sequence_) return Next::kFellBehind;

  // Every event skipped here is one this subscriber never has to look at
  // again, so the scan costs O(1) per event per subscriber overall.
  while (cursor_ < hub_->last_sequence_) {
    const auto& slot = hub_->window_[cursor_ + 1 - hub_->first_sequence_];
    ++cursor_;
    if (filter_.Matches(slot.event->event_type())) {
      *event = slot.event;
      if (published_at != nullptr) *published_at = slot.published_at;
      if (more != nullptr) *more = SkipToNextMatch();
      return Next::kEvent;
    }
  }
  armed_ = true;
  return Next::kNone;
}

bool Subscription::SkipToNextMatch() {
  while (cursor_ < hub_->last_sequence_) {
    const auto& slot = hub_->window_[cursor_ + 1 - hub_->first_sequence_];
    if (filter_.Matches(slot.event->event_type())) return true;
    ++cursor_;
  }
  return false;
}

void Subscription::Seek(uint64_t through) {
  absl::MutexLock lock(&hub_->mu_);
  cursor_ = std::max(cursor_, through);
}

uint64_t Subscription::cursor() const {
  absl::MutexLock lock(&hub_->mu_);
  return cursor_;
}

void Subscription::Wake() {
  std::lock_guard<std::mutex> lock(wake_mu_);
  if (wake_) wake_();
}

void Subscription::Close() {
  hub_->Detach(this);
  std::lock_guard<std::mutex> lock(wake_mu_);
  wake_ = nullptr;
}

EventHub::EventHub(EventHubOptions options)
    : window_events_(std::max<size_t>(options.window_events, 1)),
      window_bytes_(options.window_bytes) {}

uint64_t EventHub::Publish(Event event) {
  std::vector<std::shared_ptr<Subscription>> to_wake;
  uint64_t sequence;
  {
    absl::MutexLock lock(&mu_);
    sequence = last_sequence_ + 1;
    event.set_sequence(sequence);
    PublishLocked(
        std::make_shared<const StoredEvent>(StoredEvent::FromEvent(event)),
        &to_wake);
  }
  for (const auto& subscription : to_wake) subscription->Wake();
  return sequence;
}

void EventHub::Publish(std::shared_ptr<const StoredEvent> event) {
  std::vector<std::shared_ptr<Subscription>> to_wake;
  {
    absl::MutexLock lock(&mu_);
    PublishLocked(std::move(event), &to_wake);
  }
  for (const auto& subscription : to_wake) subscription->Wake();
}

void EventHub::PublishLocked(
    std::shared_ptr<const StoredEvent> stored,
    std::vector<std::shared_ptr<Subscription>>* to_wake) {
  const uint64_t sequence = stored->sequence();
  if (sequence <= last_sequence_) return;  // Already published.
  if (sequence != last_sequence_ + 1) {
    // A gap: the window must stay contiguous, so it restarts here and
    // subscribers behind it are sent to the log.
    window_.clear();
    window_bytes_used_ = 0;
    first_sequence_ = sequence;
  }
  last_sequence_ = sequence;
  const size_t bytes = stored->MemoryBytes();
  window_.push_back({stored, bytes, absl::Now()});
  window_bytes_used_ += bytes;
  while (window_.size() > 1 && (window_.size() > window_events_ ||
                                window_bytes_used_ > window_bytes_)) {
    window_bytes_used_ -= window_.front().bytes;
    window_.pop_front();
    ++first_sequence_;
  }
  for (const Attached& attached : subscriptions_) {
    Subscription* subscription = attached.subscription;
    if (!subscription->filter_.Matches(stored->event_type())) {
      // A subscriber that has read up to this event would only skip it.
      // Skipping it now keeps an idle subscriber to rare types from
      // falling out of the window while other types stream past.
      if (subscription->cursor_ + 1 == sequence) {
        subscription->cursor_ = sequence;
      }
      continue;
    }
    if (!subscription->armed_) continue;
    if (auto handle = attached.handle.lock()) {
      subscription->armed_ = false;
      to_wake->push_back(std::move(handle));
    }
  }
}

void EventHub::StartAfter(uint64_t last_sequence) {
  absl::MutexLock lock(&mu_);
  window_.clear();
  window_bytes_used_ = 0;
  last_sequence_ = last_sequence;
  first_sequence_ = last_sequence + 1;
}

void EventHub::Tick() {
  std::vector<std::shared_ptr<Subscription>> to_wake;
  {
    absl::MutexLock lock(&mu_);
    for (const Attached& attached : subscriptions_) {
      if (!attached.subscription->armed_) continue;
      if (auto handle = attached.handle.lock()) {
        attached.subscription->armed_ = false;
        to_wake.push_back(std::move(handle));
      }
    }
  }
  for (const auto& subscription : to_wake) subscription->Wake();
}

std::shared_ptr<Subscription> EventHub::Subscribe(SubscriptionFilter filter,
                                                  std::function<void()> wake) {
  return Subscribe(std::move(filter), std::nullopt, std::move(wake));
}

std::shared_ptr<Subscription> EventHub::Subscribe(SubscriptionFilter filter,
                                                  std::optional<uint64_t> after,
                                                  std::function<void()> wake) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<Subscription> subscription(
      new Subscription(this, next_subscription_id_++, std::move(filter),
                       after.value_or(last_sequence_), std::move(wake)));
  subscriptions_.push_back({subscription.get(), subscription});
  return subscription;
}

void EventHub::Close() {
  std::vector<std::shared_ptr<Subscription>> to_wake;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    for (const Attached& attached : subscriptions_) {
      if (auto handle = attached.handle.lock()) {
        attached.subscription->armed_ = false;
        to_wake.push_back(std::move(handle));
      }
    }
  }
  for (const auto& subscription : to_wake) subscription->Wake();
}

void EventHub::Detach(Subscription* subscription) {
  absl::MutexLock lock(&mu_);
  subscription->attached_ = false;
  subscription->armed_ = false;
  subscriptions_.erase(
      std::remove_if(subscriptions_.begin(), subscriptions_.end(),
                     [subscription](const Attached& attached) {
                       return attached.subscription == subscription;
                     }),
      subscriptions_.end());
}

uint64_t EventHub::last_sequence() const {
  absl::MutexLock lock(&mu_);
  return last_sequence_;
}

std::vector<std::pair<uint64_t, uint64_t>> EventHub::SubscriberCursors() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::pair<uint64_t, uint64_t>> cursors;
  for (const Attached& attached : subscriptions_) {
    cursors.emplace_back(attached.subscription->id_,
                         attached.subscription->cursor_);
  }
  return cursors;
}

size_t EventHub::subscriber_count() const {
  absl::MutexLock lock(&mu_);
  return subscriptions_.size();
}

}  // namespace fanout
