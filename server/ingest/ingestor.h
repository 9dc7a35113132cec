// Accepts one delivery body: converts it into an Event, stamps the receipt
// time, and hands it to the hub, which sequences it and fans it out.
//
// The step between the HTTP front end and the fan-out hub; it knows nothing
// of HTTP.

#ifndef FANOUT_SERVER_INGEST_INGESTOR_H_
#define FANOUT_SERVER_INGEST_INGESTOR_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/convert/event_converter.h"
#include "server/fanout/event_hub.h"
#include "staffify/fanout/v1/fanout.pb.h"

namespace fanout {

// What became of an accepted delivery.
struct IngestResult {
  uint64_t sequence = 0;
  std::string id;
  std::string event_type;
  std::vector<staffify::fanout::v1::ConversionProblem> conversion_problems;
};

class Ingestor {
 public:
  using Clock = std::function<absl::Time()>;
  using Done = std::function<void(absl::StatusOr<IngestResult>)>;

  // `converter` and `hub` must outlive the Ingestor. `clock` stamps
  // received_at; it defaults to absl::Now.
  Ingestor(const EventConverter* converter, EventHub* hub,
           Clock clock = nullptr);

  // Accepts `body`. Calls `done` exactly once, possibly before Ingest
  // returns and on any thread: with the result once the event is published,
  // or with the converter's InvalidArgument error, in which case nothing was
  // kept. Thread-safe.
  void Ingest(std::string body, Done done);

 private:
  const EventConverter* const converter_;
  EventHub* const hub_;
  const Clock clock_;
};

}  // namespace fanout

#endif  // FANOUT_SERVER_INGEST_INGESTOR_H_
