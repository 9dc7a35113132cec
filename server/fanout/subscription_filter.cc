#include "server/fanout/subscription_filter.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/convert/event_type.h"

namespace fanout {

absl::StatusOr<SubscriptionFilter> SubscriptionFilter::Create(
    const std::vector<std::string>& patterns) {
  SubscriptionFilter filter;
  filter.match_all_ = patterns.empty();
  for (const std::string& pattern : patterns) {
    if (pattern == "*") {
      filter.match_all_ = true;
    } else if (absl::EndsWith(pattern, ".*")) {
      absl::string_view domain(pattern.data(), pattern.size() - 2);
      if (!IsEventTypeSegment(domain)) {
        return absl::InvalidArgumentError(
            absl::StrCat("malformed event type pattern \"", pattern,
                         "\": a wildcard pattern is \"<domain>.*\""));
      }
      filter.domains_.emplace_back(domain);
    } else if (IsEventType(pattern)) {
      filter.exact_types_.push_back(pattern);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "malformed event type pattern \"", pattern,
          "\": expected \"*\", \"<domain>.*\" or an event type such as "
          "\"ticket.created\""));
    }
  }
  return filter;
}

bool SubscriptionFilter::Matches(absl::string_view event_type) const {
  if (match_all_) return true;
  for (const std::string& type : exact_types_) {
    if (event_type == type) return true;
  }
  const size_t dot = event_type.find('.');
  if (dot == absl::string_view::npos) return false;
  const absl::string_view domain = event_type.substr(0, dot);
  for (const std::string& candidate : domains_) {
    if (domain == candidate) return true;
  }
  return false;
}

}  // namespace fanout
