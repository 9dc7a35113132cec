// Parses a delivery body into a JSON value under the rules that make every
// reader of the body see the same data: standard JSON only, valid UTF-8,
// a nesting limit, and no key repeated within one object.
//
// A repeated key is refused rather than resolved: the service keeps and
// forwards the body as it came (raw_body), so a subscriber reading the raw
// body with a first-wins parser would otherwise see another value than the
// one the service routed, deduplicated and converted (Boost.JSON keeps the
// last).

#ifndef FANOUT_SERVER_CONVERT_STRICT_JSON_H_
#define FANOUT_SERVER_CONVERT_STRICT_JSON_H_

#include <boost/json/value.hpp>
#include <cstddef>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fanout {

// Returns the JSON value `text` holds. Returns InvalidArgument when it is
// not one JSON value (with nothing but white space after it), is not valid
// UTF-8 (also in escapes: a lone surrogate), nests arrays and objects deeper
// than `max_depth`, or repeats a key within an object; the message then
// names the problem, and for a repeated key its path, e.g.
// `duplicate key "data.ticketId"`. Keys are compared after unescaping, so
// "a" and "\u0061" are the same key. Integers within 64 bits keep their
// exact value (int64 or uint64); other numbers are the double nearest to
// the text, correctly rounded. The value is allocated from `storage`.
absl::StatusOr<boost::json::value> ParseStrictJson(
    absl::string_view text, size_t max_depth,
    boost::json::storage_ptr storage = {});

}  // namespace fanout

#endif  // FANOUT_SERVER_CONVERT_STRICT_JSON_H_
