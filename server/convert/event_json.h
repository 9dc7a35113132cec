// Prints an Event as one JSON object shaped like the Staffify delivery it
// came from, plus what the service added.
//
// Used by subscribers that want JSON rather than protobuf, such as
// fanout-subscribe.

#ifndef FANOUT_SERVER_CONVERT_EVENT_JSON_H_
#define FANOUT_SERVER_CONVERT_EVENT_JSON_H_

#include <boost/json/object.hpp>

#include "staffify/fanout/v1/fanout.pb.h"

namespace fanout {

// Returns {"sequence", "id", "event", "timestamp", "receivedAt", "data"} and,
// when there are any, "conversionProblems". "data" holds the typed payload
// keyed by Staffify's own keys (or the untyped payload as it came). The raw
// body is left out unless `include_raw_body`, as "rawBody" (a string).
boost::json::object EventToJson(const staffify::fanout::v1::Event& event,
                                bool include_raw_body = false);

}  // namespace fanout

#endif  // FANOUT_SERVER_CONVERT_EVENT_JSON_H_
