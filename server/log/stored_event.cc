#include "server/log/stored_event.h"

#include <utility>

namespace fanout {

using staffify::fanout::v1::Event;

StoredEvent::StoredEvent(uint64_t sequence, std::string event_type,
                         std::string serialized)
    : sequence_(sequence),
      event_type_(std::move(event_type)),
      serialized_(std::move(serialized)) {}

StoredEvent StoredEvent::FromEvent(const Event& event) {
  return StoredEvent(event.sequence(), event.event_type(),
                     event.SerializeAsString());
}

Event StoredEvent::Parse() const {
  Event event;
  if (!event.ParseFromString(serialized_)) event.Clear();
  return event;
}

size_t StoredEvent::MemoryBytes() const {
  // The strings' heap blocks, this object, and the shared_ptr control block
  // it usually lives in.
  return sizeof(*this) + 2 * sizeof(void*) + serialized_.capacity() +
         event_type_.capacity();
}

}  // namespace fanout
