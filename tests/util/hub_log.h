// An embedded event store in a temporary directory whose commits feed a
// hub: the ingest half of the service without its network front ends, for
// tests.

#ifndef FANOUT_TESTS_UTIL_HUB_LOG_H_
#define FANOUT_TESTS_UTIL_HUB_LOG_H_

#include <memory>

#include "server/fanout/event_hub.h"
#include "server/log/event_log.h"
#include "server/store/embedded_store.h"
#include "tests/util/temp_dir.h"

namespace fanout::testing {

class HubLog {
 public:
  explicit HubLog(EventLogOptions options = {});

  EventHub* hub() { return &hub_; }
  EventStore* store() { return store_.get(); }
  EventLog* log() { return store_->log(); }

 private:
  TempDir dir_;
  EventHub hub_;
  std::unique_ptr<EmbeddedStore> store_;
};

}  // namespace fanout::testing

#endif  // FANOUT_TESTS_UTIL_HUB_LOG_H_
