// Event type patterns, as subscribers write them, and the set of them that
// decides whether one subscriber receives one event.
//
//   "ticket.created"  that type exactly;
//   "ticket.*"        every type whose domain (text before the first '.')
//                     is "ticket";
//   "*"               every type.

#ifndef FANOUT_SERVER_FANOUT_SUBSCRIPTION_FILTER_H_
#define FANOUT_SERVER_FANOUT_SUBSCRIPTION_FILTER_H_

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

 private:
  bool match_all_ = false;
  std::vector<std::string> exact_types_;
  std::vector<std::string> domains_;  // "ticket" for "ticket.*"
};

}  // namespace fanout

#endif  // FANOUT_SERVER_FANOUT_SUBSCRIPTION_FILTER_H_
