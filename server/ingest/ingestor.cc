#include "server/ingest/ingestor.h"

#include <utility>

#include "spdlog/spdlog.h"

namespace fanout {

using staffify::fanout::v1::Event;

Ingestor::Ingestor(const EventConverter* converter, EventStore* store,
                   Metrics* metrics, Clock clock)
    : converter_(converter),
      store_(store),
      metrics_(metrics),
      clock_(clock ? std::move(clock) : Clock([] { return absl::Now(); })) {}

void Ingestor::Record(absl::Time received_at, const IngestResult& result,
                      const absl::StatusOr<AppendResult>& appended) {
  if (metrics_ == nullptr) return;
  if (!appended.ok()) {
    metrics_->CountDelivery(result.event_type, Metrics::kUnavailable);
    return;
  }
  if (appended->duplicate) {
    metrics_->CountDelivery(result.event_type, Metrics::kDuplicate);
    return;
  }
  metrics_->CountDelivery(result.event_type, Metrics::kAccepted);
  metrics_->CountConversionProblems(result.conversion_problems.size());
  metrics_->receipt_to_commit().Observe(clock_() - received_at);
}

void Ingestor::Ingest(std::string body, Done done) {
  const absl::Time received_at = clock_();
  absl::StatusOr<Event> event = converter_->Convert(body);
  if (!event.ok()) {
    // Refused before its id is known (or trusted).
    spdlog::debug("delivery refused error={:?}", event.status().ToString());
    if (metrics_ != nullptr) metrics_->CountDelivery("", Metrics::kInvalid);
    done(event.status());
    return;
  }

  SetTimestamp(received_at, event->mutable_received_at());

  IngestResult result;
  result.id = event->id();
  result.event_type = event->event_type();
  result.conversion_problems.assign(event->conversion_problems().begin(),
                                    event->conversion_problems().end());

  store_->Append(
      *std::move(event),
      [this, received_at, result = std::move(result),
       done = std::move(done)](absl::StatusOr<AppendResult> appended) mutable {
        if (appended.ok() && appended->differs) {
          // The answer and the counters describe what was kept, not the
          // retry's different body.
          result.event_type = std::move(appended->stored_event_type);
          result.conversion_problems = std::move(appended->stored_problems);
        }
        Record(received_at, result, appended);
        if (!appended.ok()) {
          done(appended.status());
          return;
        }
        result.sequence = appended->sequence;
        result.duplicate = appended->duplicate;
        if (appended->differs) {
          spdlog::warn(
              "duplicate delivery differs from the stored one, which is "
              "kept delivery={:?} seq={}",
              result.id, result.sequence);
        } else if (result.duplicate) {
          spdlog::debug("duplicate delivery delivery={:?} seq={}", result.id,
                        result.sequence);
        } else if (!result.conversion_problems.empty()) {
          // The fields' names and values stay out of the log; the event
          // carries them, with the raw body.
          spdlog::warn(
              "delivery accepted with fields that did not convert "
              "delivery={:?} seq={} event_type={} problems={}",
              result.id, result.sequence, result.event_type,
              result.conversion_problems.size());
        } else {
          spdlog::debug("delivery accepted delivery={:?} seq={} event_type={}",
                        result.id, result.sequence, result.event_type);
        }
        done(std::move(result));
      });
}

}  // namespace fanout
