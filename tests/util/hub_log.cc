#include "tests/util/hub_log.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

namespace fanout::testing {

HubLog::HubLog(EventLogOptions options) {
  options.data_dir = dir_.path();
  EventHub* hub = &hub_;
  absl::StatusOr<std::unique_ptr<EventLog>> log = EventLog::Open(
      std::move(options),
      [hub](const std::vector<std::shared_ptr<const StoredEvent>>& events) {
        for (const auto& event : events) hub->Publish(event);
      });
  if (!log.ok()) {
    std::fprintf(stderr, "cannot open test log: %s\n",
                 log.status().ToString().c_str());
    std::abort();
  }
  log_ = *std::move(log);
  hub_.StartAfter(log_->range().last);
}

}  // namespace fanout::testing
