#include "server/store/embedded_store.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace fanout {
namespace {

class LogReader final : public EventReader {
 public:
  LogReader(EventLog* log, SubscriptionFilter filter)
      : log_(log), filter_(std::move(filter)) {}

  absl::Status Read(uint64_t after, size_t limit, size_t limit_bytes,
                    std::vector<std::shared_ptr<const StoredEvent>>* out,
                    uint64_t* scanned_through) override {
    return log_->Read(
        after, limit, limit_bytes,
        [this](const std::string& type) { return filter_.Matches(type); },
        out, scanned_through);
  }

 private:
  EventLog* const log_;
  const SubscriptionFilter filter_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<EmbeddedStore>> EmbeddedStore::Open(
    EventLogOptions options, EventHub* hub) {
  // Committed events go to the hub, and from there to subscribers, in
  // commit order on the log's writer thread.
  absl::StatusOr<std::unique_ptr<EventLog>> log = EventLog::Open(
      std::move(options),
      [hub](const std::vector<std::shared_ptr<const StoredEvent>>& events) {
        for (const auto& event : events) hub->Publish(event);
      });
  if (!log.ok()) return log.status();
  // Nothing is appended before Open returns, so the hub starts here.
  hub->StartAfter((*log)->range().last);
  return std::unique_ptr<EmbeddedStore>(new EmbeddedStore(*std::move(log)));
}

void EmbeddedStore::Append(staffify::fanout::v1::Event event,
                           AppendDone done) {
  log_->Append(std::move(event), std::move(done));
}

std::unique_ptr<EventReader> EmbeddedStore::NewReader(
    const SubscriptionFilter& filter) {
  return std::make_unique<LogReader>(log_.get(), filter);
}

absl::StatusOr<uint64_t> EmbeddedStore::FirstSequenceSince(absl::Time time) {
  return log_->FirstSequenceSince(time);
}

void EmbeddedStore::RenderMetrics(std::string* out) {
  const LogRange range = log_->range();
  RenderStoreMetrics(log_->duplicates(), log_->differing_duplicates(), &range,
                     out);
  absl::StrAppend(
      out,
      "# HELP fanout_log_commits_total Event log transactions.\n"
      "# TYPE fanout_log_commits_total counter\nfanout_log_commits_total ",
      log_->commits(),
      "\n# HELP fanout_log_checkpoints_total Checkpoints of the event "
      "log's write-ahead log.\n"
      "# TYPE fanout_log_checkpoints_total counter\n"
      "fanout_log_checkpoints_total ",
      log_->checkpoints(),
      "\n# HELP fanout_log_wal_restarts_total Checkpoints that held "
      "commits back because the write-ahead log reached its limit.\n"
      "# TYPE fanout_log_wal_restarts_total counter\n"
      "fanout_log_wal_restarts_total ",
      log_->wal_restarts(), "\n");
}

}  // namespace fanout
