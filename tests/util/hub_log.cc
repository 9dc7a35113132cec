#include "tests/util/hub_log.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

namespace fanout::testing {

HubLog::HubLog(EventLogOptions options) {
  options.data_dir = dir_.path();
  absl::StatusOr<std::unique_ptr<EmbeddedStore>> store =
      EmbeddedStore::Open(std::move(options), &hub_);
  if (!store.ok()) {
    std::fprintf(stderr, "cannot open test log: %s\n",
                 store.status().ToString().c_str());
    std::abort();
  }
  store_ = *std::move(store);
}

}  // namespace fanout::testing
