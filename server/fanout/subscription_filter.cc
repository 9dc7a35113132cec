#include "server/fanout/subscription_filter.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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

std::optional<std::string> IntersectPatterns(absl::string_view a,
                                             absl::string_view b) {
  if (a == "*") return std::string(b);
  if (b == "*") return std::string(a);
  const bool a_is_domain = absl::EndsWith(a, ".*");
  const bool b_is_domain = absl::EndsWith(b, ".*");
  if (a_is_domain == b_is_domain) {
    if (a == b) return std::string(a);
    return std::nullopt;
  }
  // One domain pattern and one exact type: the type, if it is of the
  // domain (its first segment, as Matches reads it).
  const absl::string_view domain = a_is_domain ? a : b;
  const absl::string_view type = a_is_domain ? b : a;
  const absl::string_view name = domain.substr(0, domain.size() - 2);
  const size_t dot = type.find('.');
  if (dot != absl::string_view::npos && type.substr(0, dot) == name) {
    return std::string(type);
  }
  return std::nullopt;
}

absl::StatusOr<std::vector<std::string>> NarrowToGrant(
    const std::vector<std::string>& requested,
    const std::vector<std::string>& granted) {
  static const std::vector<std::string>* const kEverything =
      new std::vector<std::string>{"*"};
  std::vector<std::string> narrowed;
  for (const std::string& pattern :
       requested.empty() ? *kEverything : requested) {
    bool any = false;
    for (const std::string& grant : granted) {
      std::optional<std::string> both = IntersectPatterns(pattern, grant);
      if (!both.has_value()) continue;
      any = true;
      if (std::find(narrowed.begin(), narrowed.end(), *both) ==
          narrowed.end()) {
        narrowed.push_back(*std::move(both));
      }
    }
    if (!any) {
      return absl::PermissionDeniedError(absl::StrCat(
          "not permitted to read \"", pattern,
          "\": the access token grants only ", absl::StrJoin(granted, ", ")));
    }
  }
  return narrowed;
}

}  // namespace fanout
