// Where accepted events are kept: the one interface through which ingest
// appends deliveries and Subscribe streams replay them, whichever backend
// holds them.
//
// Two backends implement it: the embedded log (EmbeddedStore, a SQLite
// database in the server's data directory) and a NATS JetStream stream
// (JetStreamStore, shared by any number of stateless servers). Both assign
// each event a sequence number at commit, keep one event per delivery id,
// and pass each committed event, in sequence order, to the fan-out hub
// they were opened with; ingest, filtering, replay and streaming do not
// know which one is in use.

#ifndef FANOUT_SERVER_STORE_EVENT_STORE_H_
#define FANOUT_SERVER_STORE_EVENT_STORE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/fanout/subscription_filter.h"
#include "server/log/event_log.h"
#include "server/log/stored_event.h"
#include "staffify/fanout/v1/fanout.pb.h"

namespace fanout {

// Reads one subscriber's matching events from the store, in sequence
// order, for a stream that is behind the hub's in-memory window. Used by
// one thread at a time; may hold resources in the backend (a JetStream
// consumer) until destroyed.
class EventReader {
 public:
  virtual ~EventReader() = default;

  // Reads up to `limit` matching events with sequence > `after`, in order,
  // stopping early once they take `limit_bytes` stored bytes (at least one
  // is read). Sets `*scanned_through` to the last sequence known to hold
  // no further matching event, so that the caller can move past events it
  // was not sent; it equals `after` only when the store holds nothing
  // after it yet.
  virtual absl::Status Read(
      uint64_t after, size_t limit, size_t limit_bytes,
      std::vector<std::shared_ptr<const StoredEvent>>* out,
      uint64_t* scanned_through) = 0;
};

class EventStore {
 public:
  using AppendDone = std::function<void(absl::StatusOr<AppendResult>)>;

  virtual ~EventStore() = default;

  // Keeps `event` (sequence unset). `done` runs once, on any thread, after
  // the store made the event durable (as its settings define it): with the
  // assigned sequence, or the original's for a delivery id kept already;
  // or with Unavailable (or DeadlineExceeded), in which case the event may
  // not have been kept and a retry is safe. Thread-safe.
  virtual void Append(staffify::fanout::v1::Event event, AppendDone done) = 0;

  // A reader of the events `filter` matches. Thread-safe.
  virtual std::unique_ptr<EventReader> NewReader(
      const SubscriptionFilter& filter) = 0;

  // The first sequence received at or after `time`, or Range()->last + 1.
  virtual absl::StatusOr<uint64_t> FirstSequenceSince(absl::Time time) = 0;

  // The sequences the store holds now.
  virtual absl::StatusOr<LogRange> Range() = 0;

  // Appends the backend's Prometheus metrics (duplicates, sequences held,
  // and its own) to `out`.
  virtual void RenderMetrics(std::string* out) = 0;

  // Whether the store can take appends now, as far as it knows (the
  // embedded log: always; JetStream: while connected to NATS). Cheap;
  // thread-safe.
  virtual bool Connected() const = 0;

  // For log lines: "embedded" or "nats".
  virtual const char* name() const = 0;
};

// Appends, in Prometheus' text format, the metrics every backend reports:
// the deliveries whose id was stored already, those of them whose body
// differed, and the sequences held (left out when `range` is null).
void RenderStoreMetrics(uint64_t duplicates, uint64_t differing_duplicates,
                        const LogRange* range, std::string* out);

}  // namespace fanout

#endif  // FANOUT_SERVER_STORE_EVENT_STORE_H_
