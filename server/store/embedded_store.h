// The embedded backend of EventStore: an EventLog (SQLite, in the server's
// data directory) whose commits feed the hub. The default; one server owns
// the data directory.

#ifndef FANOUT_SERVER_STORE_EMBEDDED_STORE_H_
#define FANOUT_SERVER_STORE_EMBEDDED_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/fanout/event_hub.h"
#include "server/log/event_log.h"
#include "server/store/event_store.h"

namespace fanout {

class EmbeddedStore final : public EventStore {
 public:
  // Opens the log `options` describe and starts `hub` after its newest
  // event; from then on every commit is published to `hub`, which must
  // outlive the store. Returns EventLog::Open's error.
  static absl::StatusOr<std::unique_ptr<EmbeddedStore>> Open(
      EventLogOptions options, EventHub* hub);

  // Commits the appends in flight and closes the log.
  ~EmbeddedStore() override = default;

  void Append(staffify::fanout::v1::Event event, AppendDone done) override;
  std::unique_ptr<EventReader> NewReader(
      const SubscriptionFilter& filter) override;
  absl::StatusOr<uint64_t> FirstSequenceSince(absl::Time time) override;
  absl::StatusOr<LogRange> Range() override { return log_->range(); }
  void RenderMetrics(std::string* out) override;
  bool Connected() const override { return true; }
  const char* name() const override { return "embedded"; }

  // The log itself, for tests and tools.
  EventLog* log() { return log_.get(); }

 private:
  explicit EmbeddedStore(std::unique_ptr<EventLog> log)
      : log_(std::move(log)) {}

  std::unique_ptr<EventLog> log_;
};

}  // namespace fanout

#endif  // FANOUT_SERVER_STORE_EMBEDDED_STORE_H_
