// Event type patterns, as subscribers write them, and the set of them that
// decides whether one subscriber receives one event.
//
//   "ticket.created"  that type exactly;
//   "ticket.*"        every type whose domain (text before the first '.')
//                     is "ticket";
//   "*"               every type.
//
// Patterns also describe what an access token may read (its grant); a
// subscription under a grant is narrowed to the types both allow, see
// NarrowToGrant.

#ifndef FANOUT_SERVER_FANOUT_SUBSCRIPTION_FILTER_H_
#define FANOUT_SERVER_FANOUT_SUBSCRIPTION_FILTER_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fanout {

class SubscriptionFilter {
 public:
  // Builds the filter for `patterns`; an empty list matches every type.
  // Returns InvalidArgument naming the first malformed pattern. A pattern is
  // "*"; a domain (one segment, see server/convert/event_type.h) followed by
  // ".*"; or an exact event type.
  static absl::StatusOr<SubscriptionFilter> Create(
      const std::vector<std::string>& patterns);

  // A filter that matches every type.
  SubscriptionFilter() : match_all_(true) {}

  // Returns true if `event_type` matches any pattern of the filter.
  bool Matches(absl::string_view event_type) const;

  bool matches_all() const { return match_all_; }
  // The exact types, and the domains of "domain.*" patterns, it matches.
  const std::vector<std::string>& exact_types() const { return exact_types_; }
  const std::vector<std::string>& domains() const { return domains_; }

 private:
  bool match_all_ = false;
  std::vector<std::string> exact_types_;
  std::vector<std::string> domains_;  // "ticket" for "ticket.*"
};

// Returns the pattern that matches exactly the event types that both `a`
// and `b` match, or nullopt when no type matches both: "*" and p give p;
// "ticket.*" and "ticket.created" give "ticket.created"; "ticket.*" and
// "call.*" give nullopt. REQUIRES: both are valid patterns.
std::optional<std::string> IntersectPatterns(absl::string_view a,
                                             absl::string_view b);

// Narrows `requested`, the patterns of a Subscribe request (empty means
// "*"), to the types that `granted` allows: each requested pattern is
// replaced by its intersections with the granted ones, so "*" becomes the
// whole grant and "ticket.*" under a grant of "ticket.created" becomes
// "ticket.created". Returns the narrowed patterns, without repeats, in
// order of first appearance; or PermissionDenied naming the first
// requested pattern of which the grant allows no type at all. REQUIRES:
// every pattern is valid, and `granted` is not empty.
absl::StatusOr<std::vector<std::string>> NarrowToGrant(
    const std::vector<std::string>& requested,
    const std::vector<std::string>& granted);

}  // namespace fanout

#endif  // FANOUT_SERVER_FANOUT_SUBSCRIPTION_FILTER_H_
