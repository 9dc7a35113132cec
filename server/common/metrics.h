// Counters and latency histograms of the data path, rendered in the
// Prometheus text format for GET /metrics.
//
// Components record into one Metrics object; values that live elsewhere
// (subscriber lag, log counters) are added at render time by the caller.

#ifndef FANOUT_SERVER_COMMON_METRICS_H_
#define FANOUT_SERVER_COMMON_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace fanout {

// A cumulative histogram of durations with fixed buckets (0.5 ms to 10 s).
class LatencyHistogram {
 public:
  static constexpr std::array<double, 12> kBucketSeconds = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
      0.05,   0.1,   0.25,   0.5,   1.0,  10.0};

  // Thread-safe, lock-free.
  void Observe(absl::Duration duration);

  // Appends the _bucket, _sum and _count lines of metric `name`.
  void Render(absl::string_view name, std::string* out) const;

 private:
  std::array<std::atomic<uint64_t>, kBucketSeconds.size() + 1> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_micros_{0};
};

class Metrics {
 public:
  // Outcomes of a delivery, the `outcome` label.
  static constexpr const char* kAccepted = "accepted";
  static constexpr const char* kDuplicate = "duplicate";
  static constexpr const char* kInvalid = "invalid";
  static constexpr const char* kUnauthenticated = "unauthenticated";
  static constexpr const char* kUnavailable = "unavailable";

  // Distinct event types counted by name; more are counted as "other", so
  // that a sender cannot grow the metrics without bound.
  static constexpr size_t kMaxEventTypes = 256;

  // Counts one delivery. `event_type` is "" when it is not known (refused
  // before parsing). Thread-safe.
  void CountDelivery(absl::string_view event_type, absl::string_view outcome);
  void CountConversionProblems(uint64_t problems) {
    conversion_problems_.fetch_add(problems);
  }

  // Counts one Subscribe call refused for its access token: without a
  // known one (unauthenticated), or asking for types outside its grant
  // (permission denied). Thread-safe.
  void CountSubscribeUnauthenticated() {
    subscribe_unauthenticated_.fetch_add(1);
  }
  void CountSubscribePermissionDenied() {
    subscribe_permission_denied_.fetch_add(1);
  }

  // From receipt of the request to the commit of its event.
  LatencyHistogram& receipt_to_commit() { return receipt_to_commit_; }
  // From the commit of an event to its write on a live stream.
  LatencyHistogram& commit_to_send() { return commit_to_send_; }

  // Appends this object's metrics in the Prometheus text format.
  void Render(std::string* out) const;

 private:
  mutable absl::Mutex mu_;
  // (event type, outcome) -> count.
  std::map<std::pair<std::string, std::string>, uint64_t> deliveries_
      ABSL_GUARDED_BY(mu_);
  size_t event_types_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> conversion_problems_{0};
  std::atomic<uint64_t> subscribe_unauthenticated_{0};
  std::atomic<uint64_t> subscribe_permission_denied_{0};
  LatencyHistogram receipt_to_commit_;
  LatencyHistogram commit_to_send_;
};

// Escapes a Prometheus label value.
std::string EscapeLabel(absl::string_view value);

}  // namespace fanout

#endif  // FANOUT_SERVER_COMMON_METRICS_H_
