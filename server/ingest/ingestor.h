// Accepts one delivery body: converts it into an Event, stamps the receipt
// time, and appends it to the event store, which sequences it, keeps it,
// and passes it on to the fan-out hub.
//
// The step between the HTTP front end and the store; it knows nothing of
// HTTP, nor which backend keeps the events.

#ifndef FANOUT_SERVER_INGEST_INGESTOR_H_
#define FANOUT_SERVER_INGEST_INGESTOR_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/common/metrics.h"
#include "server/convert/event_converter.h"
#include "server/log/event_log.h"
#include "server/store/event_store.h"
#include "staffify/fanout/v1/fanout.pb.h"

namespace fanout {

// What became of an accepted delivery.
struct IngestResult {
  // The event's sequence; for a duplicate, the original's.
  uint64_t sequence = 0;
  // The delivery id was already stored: nothing new was kept.
  bool duplicate = false;
  std::string id;
  std::string event_type;
  std::vector<staffify::fanout::v1::ConversionProblem> conversion_problems;
};

class Ingestor {
 public:
  using Clock = std::function<absl::Time()>;
  using Done = std::function<void(absl::StatusOr<IngestResult>)>;

  // `converter`, `store` and `metrics` (which may be null) must outlive
  // the Ingestor. `clock` stamps received_at; it defaults to absl::Now.
  Ingestor(const EventConverter* converter, EventStore* store,
           Metrics* metrics = nullptr, Clock clock = nullptr);

  // Accepts `body`. Calls `done` exactly once, possibly before Ingest
  // returns and on any thread: with the result once the event is committed
  // to the store (or found there already); or with the converter's
  // InvalidArgument or the store's Unavailable (or DeadlineExceeded)
  // error, in which case the delivery may be retried. Thread-safe.
  void Ingest(std::string body, Done done);

 private:
  // Counts the outcome of one delivery in metrics_.
  void Record(absl::Time received_at, const IngestResult& result,
              const absl::StatusOr<AppendResult>& appended);

  const EventConverter* const converter_;
  EventStore* const store_;
  Metrics* const metrics_;
  const Clock clock_;
};

}  // namespace fanout

#endif  // FANOUT_SERVER_INGEST_INGESTOR_H_
