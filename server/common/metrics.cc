#include "server/common/metrics.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace fanout {

void LatencyHistogram::Observe(absl::Duration duration) {
  const double seconds = absl::ToDoubleSeconds(duration);
  size_t bucket = 0;
  while (bucket < kBucketSeconds.size() && seconds > kBucketSeconds[bucket]) {
    ++bucket;
  }
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<uint64_t>(std::max<int64_t>(
                            0, absl::ToInt64Microseconds(duration))),
                        std::memory_order_relaxed);
}

void LatencyHistogram::Render(absl::string_view name, std::string* out) const {
  absl::StrAppend(out, "# TYPE ", name, " histogram\n");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kBucketSeconds.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    absl::StrAppend(out, name, "_bucket{le=\"", kBucketSeconds[i], "\"} ",
                    cumulative, "\n");
  }
  cumulative += buckets_.back().load(std::memory_order_relaxed);
  absl::StrAppend(out, name, "_bucket{le=\"+Inf\"} ", cumulative, "\n");
  absl::StrAppend(out, name, "_sum ",
                  sum_micros_.load(std::memory_order_relaxed) / 1e6, "\n");
  absl::StrAppend(out, name, "_count ", count_.load(std::memory_order_relaxed),
                  "\n");
}

std::string EscapeLabel(absl::string_view value) {
  std::string escaped;
  for (char c : value) {
    if (c == '\\' || c == '"') {
      escaped.push_back('\\');
      escaped.push_back(c);
    } else if (c == '\n') {
      escaped.append("\\n");
    } else {
      escaped.push_back(c);
    }
  }
  return escaped;
}

void Metrics::CountDelivery(absl::string_view event_type,
                            absl::string_view outcome) {
  absl::MutexLock lock(&mu_);
  std::pair<std::string, std::string> key(event_type, outcome);
  auto it = deliveries_.find(key);
  if (it == deliveries_.end()) {
    bool known_type = false;
    for (const auto& [existing, count] : deliveries_) {
      if (existing.first == key.first) {
        known_type = true;
        break;
      }
    }
    if (!known_type) {
      if (event_types_ >= kMaxEventTypes)
        key.first = "other";
      else
        ++event_types_;
    }
    it = deliveries_.emplace(std::move(key), 0).first;
  }
  ++it->second;
}

void Metrics::Render(std::string* out) const {
  absl::StrAppend(out,
                  "# HELP fanout_deliveries_total Webhook deliveries by "
                  "event type and outcome.\n"
                  "# TYPE fanout_deliveries_total counter\n");
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, count] : deliveries_) {
      absl::StrAppend(out, "fanout_deliveries_total{event_type=\"",
                      EscapeLabel(key.first), "\",outcome=\"", key.second,
                      "\"} ", count, "\n");
    }
  }
  absl::StrAppend(out,
                  "# HELP fanout_conversion_problems_total Fields of "
                  "accepted deliveries that did not convert.\n"
                  "# TYPE fanout_conversion_problems_total counter\n"
                  "fanout_conversion_problems_total ",
                  conversion_problems_.load(), "\n");
  absl::StrAppend(out,
                  "# HELP fanout_subscribe_refused_total Subscribe calls "
                  "refused for their access token, by reason.\n"
                  "# TYPE fanout_subscribe_refused_total counter\n"
                  "fanout_subscribe_refused_total{reason=\"unauthenticated\"} ",
                  subscribe_unauthenticated_.load(),
                  "\nfanout_subscribe_refused_total"
                  "{reason=\"permission_denied\"} ",
                  subscribe_permission_denied_.load(), "\n");
  absl::StrAppend(out,
                  "# HELP fanout_receipt_to_commit_seconds From a "
                  "delivery's receipt to the commit of its event.\n");
  receipt_to_commit_.Render("fanout_receipt_to_commit_seconds", out);
  absl::StrAppend(out,
                  "# HELP fanout_commit_to_send_seconds From an event's "
                  "commit to its write on a live stream.\n");
  commit_to_send_.Render("fanout_commit_to_send_seconds", out);
}

}  // namespace fanout
