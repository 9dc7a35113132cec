// nats-bench: the NATS side of bench/run.sh. It measures core NATS (no
// JetStream) the way fanout-bench measures fanout-server, so that the two
// figures can stand side by side: one bounded run against a nats-server the
// caller started on loopback, one "result key=value ..." line, exit status
// non-zero when a message did not arrive. It talks to --url only.
//
// Modes (--mode):
//   fanout       --subscribers subscriptions, each on its own connection;
//                one publisher connection publishes --messages messages of
//                --message_bytes as fast as the client library takes them.
//                Messages received per second, summed over subscribers,
//                from the first publish to the last receipt.
//   latency      --subscribers subscriptions; messages published open-loop
//                at --rate per second for --duration, each carrying the
//                time it was due; p50/p99/p99.9 of due-to-receipt over every
//                (message, subscriber) pair.
//   idle-memory  the server's VmRSS (--server_pid) before and after
//                --subscribers idle connections, each with one subscription;
//                bytes per idle subscriber.
//
// Every receipt is counted by the subscription's callback; cnats runs the
// callbacks of one subscription one at a time.

#include <nats/nats.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

ABSL_FLAG(std::string, mode, "",
          "What to measure: fanout, latency or idle-memory.");
ABSL_FLAG(std::string, url, "nats://127.0.0.1:4222", "The nats-server.");
ABSL_FLAG(int, subscribers, 1, "Subscriptions, one connection each.");
ABSL_FLAG(int64_t, messages, 10000, "Messages fanout publishes.");
ABSL_FLAG(int, message_bytes, 550, "Size of each message.");
ABSL_FLAG(double, rate, 1000, "Messages per second latency publishes.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(5),
          "How long latency publishes for.");
ABSL_FLAG(int, delivery_threads, 0,
          "Threads that run the subscriptions' callbacks, shared by all "
          "(0: one thread per subscription, cnats' default).");
ABSL_FLAG(int, server_pid, 0, "The server's pid; required by idle-memory.");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(60),
          "Time subscribers get to receive every message after the last "
          "publish before the run counts as failed.");

namespace fanout {
namespace bench {
namespace {

constexpr char kSubject[] = "bench.ticket.created";
// Latency messages start with this, the steady-clock nanosecond at which
// the message was due, and ';'.
constexpr char kDueMark[] = "due_ns=";

int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

absl::Status NatsError(absl::string_view what, natsStatus status) {
  return absl::UnavailableError(
      absl::StrCat(what, ": ", natsStatus_GetText(status)));
}

// The q-quantile (0 < q <= 1) of sorted nanosecond samples by nearest
// rank, in milliseconds; 0 when there is none.
double QuantileMs(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double rank = std::ceil(q * static_cast<double>(sorted.size()));
  const size_t index = static_cast<size_t>(std::max(rank, 1.0)) - 1;
  return static_cast<double>(sorted[index]) / 1e6;
}

// A message body of `bytes`, starting with `prefix`: plain text, as the
// fanout-server runs send ~550-byte JSON deliveries.
std::string MessageBody(const std::string& prefix, size_t bytes) {
  std::string body = prefix;
  static constexpr char kText[] =
      "Unable to access my account after password reset, the dashboard "
      "export times out and the mobile app logs me out every few minutes. ";
  while (body.size() < bytes) body += kText;
  body.resize(std::max(bytes, prefix.size()));
  return body;
}

// One connection to the server, with the options every mode uses.
class Connection {
 public:
  Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() {
    if (connection_ != nullptr) natsConnection_Destroy(connection_);
  }

  // Connects to `url`. `send_asap`: every publish is written at once
  // rather than when the library's buffer fills or its flusher runs (what
  // a latency-sensitive publisher sets).
  absl::Status Connect(const std::string& url, bool send_asap) {
    natsOptions* options = nullptr;
    natsStatus status = natsOptions_Create(&options);
    if (status == NATS_OK) status = natsOptions_SetURL(options, url.c_str());
    if (status == NATS_OK)
      status = natsOptions_SetAllowReconnect(options, false);
    if (status == NATS_OK && send_asap) {
      status = natsOptions_SetSendAsap(options, true);
    }
    if (status == NATS_OK && absl::GetFlag(FLAGS_delivery_threads) > 0) {
      status = natsOptions_UseGlobalMessageDelivery(options, true);
    }
    if (status == NATS_OK)
      status = natsConnection_Connect(&connection_, options);
    natsOptions_Destroy(options);
    if (status != NATS_OK) return NatsError("connecting", status);
    return absl::OkStatus();
  }

  natsConnection* get() { return connection_; }

 private:
  natsConnection* connection_ = nullptr;
};

// A subscriber: its own connection and one subscription to kSubject that
// counts what it receives and, when asked, records due-to-receipt times.
class Subscriber {
 public:
  Subscriber(bool record_latency, int64_t expected)
      : record_latency_(record_latency), expected_(expected) {}
  Subscriber(const Subscriber&) = delete;
  Subscriber& operator=(const Subscriber&) = delete;
  ~Subscriber() {
    if (subscription_ != nullptr) {
      natsSubscription_Unsubscribe(subscription_);
      natsSubscription_Destroy(subscription_);
    }
  }

  // Connects and subscribes; returns once the server has the subscription
  // (a flush round trip on this connection), so a message published after
  // this returns reaches it.
  absl::Status Start(const std::string& url) {
    absl::Status connected = connection_.Connect(url, /*send_asap=*/false);
    if (!connected.ok()) return connected;
    natsStatus status =
        natsConnection_Subscribe(&subscription_, connection_.get(), kSubject,
                                 &Subscriber::OnMessage, this);
    // No message is dropped for want of room on the client's side: the
    // figure is what the server delivers.
    if (status == NATS_OK) {
      status = natsSubscription_SetPendingLimits(subscription_, -1, -1);
    }
    if (status == NATS_OK) {
      status = natsConnection_FlushTimeout(connection_.get(), 10000);
    }
    if (status != NATS_OK) return NatsError("subscribing", status);
    return absl::OkStatus();
  }

  int64_t received() const { return received_.load(); }
  bool complete() const { return received_.load() >= expected_; }
  // When the expected-th message arrived (steady ns), 0 before.
  int64_t completed_ns() const { return completed_ns_.load(); }
  // Call only once complete.
  const std::vector<int64_t>& latencies() const { return latencies_; }

  int64_t dropped() {
    int64_t dropped = 0;
    if (subscription_ != nullptr) {
      natsSubscription_GetDropped(subscription_, &dropped);
    }
    return dropped;
  }

 private:
  static void OnMessage(natsConnection*, natsSubscription*, natsMsg* message,
                        void* closure) {
    static_cast<Subscriber*>(closure)->Count(message);
    natsMsg_Destroy(message);
  }

  void Count(natsMsg* message) {
    const int64_t now_ns = NowNanos();
    if (record_latency_) {
      const absl::string_view data(natsMsg_GetData(message),
                                   natsMsg_GetDataLength(message));
      const size_t end = data.find(';');
      int64_t due_ns = 0;
      if (absl::StartsWith(data, kDueMark) && end != absl::string_view::npos &&
          absl::SimpleAtoi(
              data.substr(sizeof(kDueMark) - 1, end - (sizeof(kDueMark) - 1)),
              &due_ns)) {
        latencies_.push_back(now_ns - due_ns);
      }
    }
    // After the latency is recorded: a reader that sees the count complete
    // sees every latency.
    if (received_.fetch_add(1) + 1 == expected_) {
      completed_ns_ = now_ns;
    }
  }

  const bool record_latency_;
  const int64_t expected_;
  Connection connection_;
  natsSubscription* subscription_ = nullptr;
  std::atomic<int64_t> received_{0};
  std::atomic<int64_t> completed_ns_{0};
  std::vector<int64_t> latencies_;  // written by the callback only
};

using Subscribers = std::vector<std::unique_ptr<Subscriber>>;

absl::Status StartSubscribers(int count, bool record_latency, int64_t expected,
                              Subscribers* subscribers) {
  const std::string url = absl::GetFlag(FLAGS_url);
  for (int i = 0; i < count; ++i) {
    subscribers->push_back(
        std::make_unique<Subscriber>(record_latency, expected));
    absl::Status started = subscribers->back()->Start(url);
    if (!started.ok()) return started;
  }
  return absl::OkStatus();
}

// Waits until every subscriber is complete; DeadlineExceeded, with how
// many messages are missing and how many the library dropped, otherwise.
absl::Status AwaitComplete(Subscribers& subscribers, int64_t expected,
                           absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  auto all_complete = [&] {
    for (const auto& subscriber : subscribers) {
      if (!subscriber->complete()) return false;
    }
    return true;
  };
  while (!all_complete()) {
    if (absl::Now() > deadline) {
      int64_t missing = 0, dropped = 0;
      for (auto& subscriber : subscribers) {
        missing += std::max<int64_t>(0, expected - subscriber->received());
        dropped += subscriber->dropped();
      }
      return absl::DeadlineExceededError(
          absl::StrCat(missing, " messages did not arrive (", dropped,
                       " dropped by the client library)"));
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  return absl::OkStatus();
}

int Failed(const std::string& what, const absl::Status& status) {
  std::printf("FAILED: %s: %s\n", what.c_str(), status.ToString().c_str());
  return EXIT_FAILURE;
}

double PerSecond(int64_t count, int64_t nanos) {
  return nanos > 0 ? static_cast<double>(count) * 1e9 / nanos : 0;
}

int RunFanout() {
  const int subscriber_count = absl::GetFlag(FLAGS_subscribers);
  const int64_t messages = absl::GetFlag(FLAGS_messages);
  const std::string body =
      MessageBody("", static_cast<size_t>(absl::GetFlag(FLAGS_message_bytes)));

  Subscribers subscribers;
  absl::Status started = StartSubscribers(
      subscriber_count, /*record_latency=*/false, messages, &subscribers);
  if (!started.ok()) return Failed("starting subscribers", started);
  Connection publisher;
  absl::Status connected =
      publisher.Connect(absl::GetFlag(FLAGS_url), /*send_asap=*/false);
  if (!connected.ok()) return Failed("connecting the publisher", connected);

  const int64_t start_ns = NowNanos();
  for (int64_t n = 0; n < messages; ++n) {
    const natsStatus status = natsConnection_Publish(
        publisher.get(), kSubject, body.data(), static_cast<int>(body.size()));
    if (status != NATS_OK) return Failed("publishing", NatsError("", status));
  }
  const natsStatus flushed =
      natsConnection_FlushTimeout(publisher.get(), 60000);
  if (flushed != NATS_OK) return Failed("flushing", NatsError("", flushed));
  const int64_t published_ns = NowNanos();

  absl::Status complete =
      AwaitComplete(subscribers, messages, absl::GetFlag(FLAGS_drain_timeout));
  if (!complete.ok()) return Failed("receiving every message", complete);
  int64_t last_ns = 0, delivered = 0;
  for (const auto& subscriber : subscribers) {
    last_ns = std::max(last_ns, subscriber->completed_ns());
    delivered += subscriber->received();
  }
  const double rate = PerSecond(delivered, last_ns - start_ns);
  std::printf("fanout: %d subscribers, %" PRId64
              " messages of %zu bytes published in %.3f s (%.0f/s)\n"
              "  %" PRId64
              " deliveries to subscribers in %.3f s: %.0f messages/s summed "
              "over subscribers\n",
              subscriber_count, messages, body.size(),
              (published_ns - start_ns) / 1e9,
              PerSecond(messages, published_ns - start_ns), delivered,
              (last_ns - start_ns) / 1e9, rate);
  std::printf("result delivered_per_s=%.1f published_per_s=%.1f\n", rate,
              PerSecond(messages, published_ns - start_ns));
  return EXIT_SUCCESS;
}

int RunLatency() {
  const int subscriber_count = absl::GetFlag(FLAGS_subscribers);
  const double rate = absl::GetFlag(FLAGS_rate);
  const int64_t total = static_cast<int64_t>(
      rate * absl::ToDoubleSeconds(absl::GetFlag(FLAGS_duration)));
  const double period_ns = 1e9 / rate;
  const size_t message_bytes =
      static_cast<size_t>(absl::GetFlag(FLAGS_message_bytes));

  Subscribers subscribers;
  absl::Status started = StartSubscribers(
      subscriber_count, /*record_latency=*/true, total, &subscribers);
  if (!started.ok()) return Failed("starting subscribers", started);
  Connection publisher;
  absl::Status connected =
      publisher.Connect(absl::GetFlag(FLAGS_url), /*send_asap=*/true);
  if (!connected.ok()) return Failed("connecting the publisher", connected);

  // Open loop, as fanout-bench's latency mode: message n is due at start +
  // n * period and carries its due time, so a stall counts against every
  // message it delays.
  const int64_t start_ns = NowNanos();
  int64_t late_sends = 0, max_lag_ns = 0;
  for (int64_t n = 0; n < total; ++n) {
    const int64_t due_ns = start_ns + static_cast<int64_t>(n * period_ns);
    const std::string body =
        MessageBody(absl::StrCat(kDueMark, due_ns, ";"), message_bytes);
    std::this_thread::sleep_until(std::chrono::steady_clock::time_point(
        std::chrono::nanoseconds(due_ns)));
    const int64_t lag_ns = NowNanos() - due_ns;
    if (lag_ns > 1000000) ++late_sends;
    max_lag_ns = std::max(max_lag_ns, lag_ns);
    const natsStatus status = natsConnection_Publish(
        publisher.get(), kSubject, body.data(), static_cast<int>(body.size()));
    if (status != NATS_OK) return Failed("publishing", NatsError("", status));
  }
  const natsStatus flushed =
      natsConnection_FlushTimeout(publisher.get(), 60000);
  if (flushed != NATS_OK) return Failed("flushing", NatsError("", flushed));

  absl::Status complete =
      AwaitComplete(subscribers, total, absl::GetFlag(FLAGS_drain_timeout));
  if (!complete.ok()) return Failed("receiving every message", complete);
  std::vector<int64_t> latencies;
  for (const auto& subscriber : subscribers) {
    latencies.insert(latencies.end(), subscriber->latencies().begin(),
                     subscriber->latencies().end());
  }
  std::sort(latencies.begin(), latencies.end());
  std::printf(
      "latency: %d subscribers, %" PRId64 " messages at %.0f/s; %" PRId64
      " sent > 1 ms late (max lag %.3f ms)\n"
      "  due-to-receipt over %zu receipts: p50 %.3f ms, p99 %.3f ms, "
      "p99.9 %.3f ms, max %.3f ms\n",
      subscriber_count, total, rate, late_sends, max_lag_ns / 1e6,
      latencies.size(), QuantileMs(latencies, 0.5), QuantileMs(latencies, 0.99),
      QuantileMs(latencies, 0.999), QuantileMs(latencies, 1.0));
  std::printf("result p50_ms=%.4f p99_ms=%.4f p999_ms=%.4f late_sends=%" PRId64
              "\n",
              QuantileMs(latencies, 0.5), QuantileMs(latencies, 0.99),
              QuantileMs(latencies, 0.999), late_sends);
  return EXIT_SUCCESS;
}

// VmRSS of `pid` in bytes; NotFound when /proc does not say.
absl::StatusOr<int64_t> ReadRssBytes(int pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (!absl::StartsWith(line, "VmRSS:")) continue;
    int64_t kib = 0;
    const std::string value = line.substr(6, line.find("kB") - 6);
    if (absl::SimpleAtoi(value, &kib)) return kib * 1024;
  }
  return absl::NotFoundError(absl::StrCat("no VmRSS for pid ", pid));
}

int RunIdleMemory() {
  const int pid = absl::GetFlag(FLAGS_server_pid);
  const int subscriber_count = absl::GetFlag(FLAGS_subscribers);
  if (pid <= 0) {
    return Failed("idle-memory",
                  absl::InvalidArgumentError("--server_pid is required"));
  }
  absl::StatusOr<int64_t> idle = ReadRssBytes(pid);
  if (!idle.ok()) return Failed("reading VmRSS", idle.status());

  // One subscriber first, as fanout-bench does, so that what the server
  // allocates once is not charged to the subscribers measured.
  Subscribers first;
  absl::Status started =
      StartSubscribers(1, /*record_latency=*/false, 1, &first);
  if (!started.ok()) return Failed("starting a subscriber", started);
  absl::SleepFor(absl::Milliseconds(300));
  absl::StatusOr<int64_t> before = ReadRssBytes(pid);
  if (!before.ok()) return Failed("reading VmRSS", before.status());

  Subscribers subscribers;
  started = StartSubscribers(subscriber_count, /*record_latency=*/false, 1,
                             &subscribers);
  if (!started.ok()) return Failed("starting subscribers", started);
  absl::SleepFor(absl::Milliseconds(500));
  absl::StatusOr<int64_t> after = ReadRssBytes(pid);
  if (!after.ok()) return Failed("reading VmRSS", after.status());

  const double per_subscriber =
      static_cast<double>(*after - *before) / subscriber_count;
  std::printf(
      "idle-memory: server VmRSS %.1f MiB idle, %.1f MiB with 1 subscriber, "
      "%.1f MiB with %d more\n"
      "  %.0f bytes (%.1f KiB) per idle subscriber\n",
      *idle / 1048576.0, *before / 1048576.0, *after / 1048576.0,
      subscriber_count, per_subscriber, per_subscriber / 1024);
  std::printf("result idle_rss_mib=%.2f bytes_per_subscriber=%.0f\n",
              *idle / 1048576.0, per_subscriber);
  return EXIT_SUCCESS;
}

}  // namespace
}  // namespace bench
}  // namespace fanout

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Load tool for core NATS beside fanout-server's benchmarks: "
      "--mode=fanout|latency|idle-memory against --url; see bench/run.sh.");
  const std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() > 1) {
    std::fprintf(stderr, "nats-bench: unexpected argument \"%s\"\n", args[1]);
    return EXIT_FAILURE;
  }
  if (absl::GetFlag(FLAGS_subscribers) < 1 ||
      absl::GetFlag(FLAGS_messages) < 1 || absl::GetFlag(FLAGS_rate) <= 0 ||
      absl::GetFlag(FLAGS_message_bytes) < 1) {
    std::fprintf(stderr,
                 "nats-bench: --subscribers, --messages, --rate and "
                 "--message_bytes must be positive\n");
    return EXIT_FAILURE;
  }
  // -1: the library's default spin count for its locks.
  natsStatus opened = nats_Open(-1);
  const int delivery_threads = absl::GetFlag(FLAGS_delivery_threads);
  if (opened == NATS_OK && delivery_threads > 0) {
    opened = nats_SetMessageDeliveryPoolSize(delivery_threads);
  }
  if (opened != NATS_OK) {
    std::fprintf(stderr, "nats-bench: %s\n", natsStatus_GetText(opened));
    return EXIT_FAILURE;
  }

  const std::string mode = absl::GetFlag(FLAGS_mode);
  int code = EXIT_FAILURE;
  if (mode == "fanout") {
    code = fanout::bench::RunFanout();
  } else if (mode == "latency") {
    code = fanout::bench::RunLatency();
  } else if (mode == "idle-memory") {
    code = fanout::bench::RunIdleMemory();
  } else {
    std::fprintf(stderr,
                 "nats-bench: --mode must be fanout, latency or idle-memory, "
                 "not \"%s\"\n",
                 mode.c_str());
  }
  std::fflush(stdout);
  // Subscribers and connections are gone by now; release the library's
  // threads before exit.
  nats_CloseAndWait(5000);
  return code;
}
