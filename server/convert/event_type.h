// The one grammar of event type names, shared by ingest (which refuses
// deliveries whose type breaks it) and subscription patterns (which name
// types in it), so that every accepted type can be subscribed to.
//
// An event type is one or more segments joined by '.'; a segment is one or
// more characters, none of them whitespace, a control character, '.' or
// '*' ('*' is the pattern wildcard). Anything else printable, UTF-8
// included, is allowed: newer Staffify types must not be refused for a
// character this version did not expect. The domain of a type is its first
// segment.

#ifndef FANOUT_SERVER_CONVERT_EVENT_TYPE_H_
#define FANOUT_SERVER_CONVERT_EVENT_TYPE_H_

#include "absl/strings/string_view.h"

namespace fanout {

// Returns true if `segment` is a valid segment of an event type.
bool IsEventTypeSegment(absl::string_view segment);

// Returns true if `type` is a valid event type.
bool IsEventType(absl::string_view type);

// Returns true if `text` is free of control characters (C0, DEL), so that
// it can appear in a log line as it is.
bool IsPrintable(absl::string_view text);

}  // namespace fanout

#endif  // FANOUT_SERVER_CONVERT_EVENT_TYPE_H_
