#include "server/ingest/ingestor.h"

#include <utility>

#include "spdlog/spdlog.h"

namespace fanout {

using staffify::fanout::v1::Event;

Ingestor::Ingestor(const EventConverter* converter, EventHub* hub, Clock clock)
    : converter_(converter),
      hub_(hub),
      clock_(clock ? std::move(clock) : Clock([] { return absl::Now(); })) {}

void Ingestor::Ingest(std::string body, Done done) {
  const absl::Time received_at = clock_();
  absl::StatusOr<Event> event = converter_->Convert(body);
  if (!event.ok()) {
    spdlog::debug("delivery rejected: {}", event.status().ToString());
    done(event.status());
    return;
  }

  SetTimestamp(received_at, event->mutable_received_at());

  IngestResult result;
  result.id = event->id();
  result.event_type = event->event_type();
  result.conversion_problems.assign(event->conversion_problems().begin(),
                                    event->conversion_problems().end());
  result.sequence = hub_->Publish(*std::move(event));

  if (!result.conversion_problems.empty()) {
    spdlog::warn("delivery {} seq {} ({}): {} field(s) did not convert",
                 result.id, result.sequence, result.event_type,
                 result.conversion_problems.size());
  }
  spdlog::debug("delivery {} accepted as seq {} ({})", result.id,
                result.sequence, result.event_type);
  done(std::move(result));
}

}  // namespace fanout
