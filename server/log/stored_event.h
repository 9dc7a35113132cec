// One committed event in the form the log stores it and subscribers receive
// it: the serialized staffify.fanout.v1.Event, with its sequence and type
// beside it for filtering.
//
// Immutable and shared: the hub's window, replays and every stream that
// sends an event hold the same bytes, so an event is serialized once, when
// it is committed, however many subscribers receive it.

#ifndef FANOUT_SERVER_LOG_STORED_EVENT_H_
#define FANOUT_SERVER_LOG_STORED_EVENT_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "staffify/fanout/v1/fanout.pb.h"

namespace fanout {

class StoredEvent {
 public:
  // `serialized` is a staffify.fanout.v1.Event whose sequence is `sequence`
  // and whose event_type is `event_type`.
  StoredEvent(uint64_t sequence, std::string event_type,
              std::string serialized);

  // Serializes `event`, whose sequence must be set.
  static StoredEvent FromEvent(const staffify::fanout::v1::Event& event);

  uint64_t sequence() const { return sequence_; }
  const std::string& event_type() const { return event_type_; }
  const std::string& serialized() const { return serialized_; }

  // The event, parsed (an empty Event if the bytes do not parse). For tests
  // and tools: the data path passes the bytes on as they are.
  staffify::fanout::v1::Event Parse() const;

  // Memory this object takes, roughly, for bounding how many are kept.
  size_t MemoryBytes() const;

 private:
  uint64_t sequence_;
  std::string event_type_;
  std::string serialized_;
};

}  // namespace fanout

#endif  // FANOUT_SERVER_LOG_STORED_EVENT_H_
