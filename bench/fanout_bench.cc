// fanout-bench: the load tool behind bench/run.sh. It runs one bounded
// measurement against a fanout-server that the caller started (on loopback),
// prints the figures, and exits; it never talks to any other address than
// --http_url and --grpc_target.
//
// Modes (--mode):
//   ingest       --connections keep-alive HTTP connections post ~550-byte
//                ticket.created deliveries for --duration; deliveries/s and
//                the p50/p99 of the time until the 200 answer.
//   fanout       --subscribers live streams (new events only), then
//                --events deliveries posted as fast as --connections allow;
//                events delivered per second, summed over subscribers, from
//                the first post to the last receipt.
//   latency      --subscribers live streams; deliveries posted open-loop at
//                --rate per second for --duration, each carrying the time it
//                was due; p50/p99/p99.9 of due-to-receipt over every
//                (event, subscriber) pair.
//   idle-memory  the server's VmRSS (--server_pid) before and after
//                --subscribers idle streams attach; bytes per idle stream.
//   stalled-memory
//                one stream that reads its first event and then nothing
//                more; the server's VmRSS (--server_pid) before and after
//                --events deliveries posted on --connections.
//   requests     talks to no server: writes --requests signed deliveries as
//                whole HTTP requests for the path of --http_url into
//                --slices files named --out.0, --out.1, ... for wrk
//                (bench/wrk_deliveries.lua) to send.
//
// fanout and latency take several --grpc_target servers, replicas that
// share one event store: their streams are spread over them, round robin,
// while every delivery goes to --http_url.
//
// Deliveries are signed with the secret in the environment variable
// FANOUT_WEBHOOK_SECRET when it is set (never taken from the command line),
// and carry a signature-shaped placeholder otherwise.
//
// Each mode ends with one line "result key=value ..." for run.sh to parse,
// and exits non-zero when a delivery failed or an event did not arrive.
// requests mode signs with the timestamp of the moment it runs: the files
// must be sent within the server's --signature_tolerance (5 min).

#include <grpcpp/channel.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/client_callback.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/webhook_sender.h"
#include "staffify/fanout/v1/fanout.grpc.pb.h"

ABSL_FLAG(std::string, mode, "",
          "What to measure: ingest, fanout, latency, idle-memory or "
          "stalled-memory; or requests, to write signed requests for wrk.");
ABSL_FLAG(std::string, http_url, "http://127.0.0.1:8080/webhooks",
          "The server's ingest endpoint.");
ABSL_FLAG(std::string, grpc_target, "127.0.0.1:50051",
          "host:port of the server's gRPC Subscribe service; fanout and "
          "latency take a comma-separated list, to spread their streams "
          "over servers that share one event store.");
ABSL_FLAG(int, connections, 1, "HTTP keep-alive connections posting.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(5),
          "How long ingest and latency post for.");
ABSL_FLAG(int, subscribers, 1,
          "Subscribe streams (fanout, latency, idle-memory).");
ABSL_FLAG(int, channels, 0,
          "gRPC connections the streams share, round robin (0: one per "
          "stream, as separate subscriber services would have).");
ABSL_FLAG(int64_t, events, 10000, "Deliveries fanout posts.");
ABSL_FLAG(double, rate, 1000, "Deliveries per second latency posts.");
ABSL_FLAG(int, server_pid, 0,
          "The server's pid: required by idle-memory; elsewhere, adds the "
          "server's CPU use to the figures.");
ABSL_FLAG(uint64_t, body_bytes, 550, "Size of each delivery's body.");
ABSL_FLAG(absl::Duration, attach_timeout, absl::Seconds(20),
          "Time every stream gets to attach before the run is abandoned.");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(60),
          "Time streams get to receive every posted event after the last "
          "post before the run counts as failed.");
ABSL_FLAG(int64_t, requests, 100000, "Deliveries requests mode writes.");
ABSL_FLAG(int, slices, 2,
          "Files requests mode spreads its deliveries over, round robin.");
ABSL_FLAG(std::string, out, "",
          "requests mode: path prefix of the files it writes.");

namespace fanout {
namespace bench {
namespace {

using staffify::fanout::v1::Event;
using staffify::fanout::v1::Fanout;
using staffify::fanout::v1::SubscribeRequest;
using staffify::fanout::v1::SubscribeResponse;

constexpr char kTicketType[] = "ticket.created";
constexpr char kPingType[] = "test.ping";
// Latency deliveries start data.issue with this, then the steady-clock
// nanosecond at which the delivery was due, then ';'.
constexpr char kDueMark[] = "due_ns=";

int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void SleepUntilNanos(int64_t when) {
  std::this_thread::sleep_until(
      std::chrono::steady_clock::time_point(std::chrono::nanoseconds(when)));
}

// Latency samples in nanoseconds, and the figures printed from them.
class LatencySamples {
 public:
  void Merge(const std::vector<int64_t>& more) {
    samples_.insert(samples_.end(), more.begin(), more.end());
  }
  size_t size() const { return samples_.size(); }

  // The q-quantile (0 < q <= 1) by nearest rank, in milliseconds; 0 when
  // there is no sample.
  double QuantileMs(double q) {
    if (samples_.empty()) return 0;
    if (!sorted_) {
      std::sort(samples_.begin(), samples_.end());
      sorted_ = true;
    }
    const double rank = std::ceil(q * static_cast<double>(samples_.size()));
    const size_t index = static_cast<size_t>(std::max(rank, 1.0)) - 1;
    return static_cast<double>(samples_[index]) / 1e6;
  }

 private:
  std::vector<int64_t> samples_;
  bool sorted_ = false;
};

// Builds the bench's deliveries: Staffify's ticket.created example with a
// unique id, data.issue padded so that every body has the same size, and
// test.ping deliveries used as attach barriers.
class DeliveryMaker {
 public:
  explicit DeliveryMaker(size_t body_bytes)
      : body_bytes_(body_bytes),
        run_tag_(absl::StrFormat(
            "%x%x", static_cast<unsigned>(getpid()),
            static_cast<uint64_t>(absl::GetCurrentTimeNanos()) & 0xffffffu)),
        timestamp_(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                    absl::UTCTimeZone())) {}

  // A delivery id no other run of this tool uses, for delivery `n` of
  // posting thread `worker`.
  std::string NewId(int worker, int64_t n) const {
    return absl::StrCat("wh_bench-", run_tag_, "-", worker, "-", n);
  }

  // A fresh id for a test.ping. Thread-safe.
  std::string NewPingId() const {
    return absl::StrCat("wh_bench-", run_tag_, "-ping-", pings_++);
  }

  // A ticket.created delivery whose data.issue starts with `issue_prefix`.
  // The body is body_bytes long unless id and prefix alone make it longer.
  std::string Ticket(const std::string& id,
                     const std::string& issue_prefix) const {
    const std::string head =
        absl::StrCat(R"({"id":")", id, R"(","event":")", kTicketType,
                     R"(","timestamp":")", timestamp_,
                     R"(","data":{"ticketId":42,"ticketNumber":"TKT-001234",)"
                     R"("customerName":"Jane Smith",)"
                     R"("customerEmail":"jane.smith@example.com",)"
                     R"("customerPhone":"+1234567890","issue":")",
                     issue_prefix);
    const std::string tail = R"(","priority":"medium","source":"call"}})";
    std::string body = head;
    const size_t fixed = head.size() + tail.size();
    if (fixed < body_bytes_) body += Filler(body_bytes_ - fixed);
    body += tail;
    return body;
  }

  std::string Ping(const std::string& id) const {
    return absl::StrCat(R"({"id":")", id, R"(","event":")", kPingType,
                        R"(","timestamp":")", timestamp_,
                        R"(","data":{"message":"fanout-bench barrier"}})");
  }

 private:
  // Plain words with no character that JSON would escape.
  static std::string Filler(size_t n) {
    static constexpr char kText[] =
        "Unable to access my account after password reset, the dashboard "
        "export times out and the mobile app logs me out every few minutes. ";
    std::string filler;
    while (filler.size() < n) filler += kText;
    filler.resize(n);
    return filler;
  }

  const size_t body_bytes_;
  const std::string run_tag_;
  const std::string timestamp_;
  mutable std::atomic<int64_t> pings_{0};
};

// Where deliveries go, and the secret that signs them (empty: none).
struct IngestEndpoint {
  HttpUrl url;
  std::string secret;
};

// The value of X-Webhook-Signature for `body` sent at `timestamp` (unix
// seconds): "sha256=" and the hex HMAC-SHA256 of "<timestamp>.<body>" under
// `secret`. Without a secret, a placeholder of the same size, for a server
// that verifies none, so that requests keep a real request's size.
std::string SignatureHeader(const std::string& secret,
                            const std::string& timestamp,
                            const std::string& body) {
  std::string signature = "sha256=";
  if (secret.empty()) {
    signature.append(64, '0');
    return signature;
  }
  const std::string signed_text = absl::StrCat(timestamp, ".", body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_size = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(signed_text.data()),
       signed_text.size(), mac, &mac_size);
  for (unsigned int i = 0; i < mac_size; ++i) {
    absl::StrAppendFormat(&signature, "%02x", mac[i]);
  }
  return signature;
}

// One keep-alive HTTP connection posting deliveries the way Staffify does:
// with delivery headers and a signature, HMAC-SHA256 over
// "<unix seconds>.<body>" sent as "X-Webhook-Signature: sha256=<hex>" beside
// "X-Webhook-Timestamp" (see SignatureHeader).
class DeliveryPoster {
 public:
  // `endpoint` must outlive the poster.
  explicit DeliveryPoster(const IngestEndpoint& endpoint)
      : sender_(endpoint.url), secret_(endpoint.secret) {}

  // Posts one delivery. OK only for a 200 answer whose status is
  // "accepted"; a duplicate or any other answer is Internal, a transport
  // failure is what WebhookSender returned.
  absl::Status Post(const std::string& id, const std::string& event_type,
                    const std::string& body) {
    const std::string timestamp =
        absl::StrCat(absl::ToUnixSeconds(absl::Now()));
    const std::map<std::string, std::string> headers = {
        {"Content-Type", "application/json"},
        {"User-Agent", "Staffify-Webhooks/1.0 (fanout-bench)"},
        {"X-Staffify-Delivery", id},
        {"X-Staffify-Event", event_type},
        {"X-Webhook-Timestamp", timestamp},
        {"X-Webhook-Signature", SignatureHeader(secret_, timestamp, body)},
    };
    absl::StatusOr<HttpAnswer> answer = sender_.Send("POST", body, headers);
    if (!answer.ok()) return answer.status();
    if (answer->status != 200 ||
        !absl::StrContains(answer->body, R"("status":"accepted")")) {
      return absl::InternalError(absl::StrCat(
          "delivery ", id, " answered ", answer->status, ": ", answer->body));
    }
    return absl::OkStatus();
  }

 private:
  WebhookSender sender_;
  const std::string& secret_;
};

// What one posting thread saw.
struct PosterTally {
  int64_t accepted = 0;
  int64_t failed = 0;
  absl::Status first_failure;
  std::vector<int64_t> latencies;  // ns, ingest only
  int64_t finished_ns = 0;
  int64_t late_sends = 0;  // latency only: sent > 1 ms after due
  int64_t max_lag_ns = 0;  // latency only

  void Fail(absl::Status status) {
    ++failed;
    if (first_failure.ok()) first_failure = std::move(status);
  }
};

struct PosterTotals {
  int64_t accepted = 0;
  int64_t failed = 0;
  absl::Status first_failure;
  int64_t finished_ns = 0;  // when the last thread finished
  int64_t late_sends = 0;
  int64_t max_lag_ns = 0;
};

PosterTotals Sum(const std::vector<PosterTally>& tallies) {
  PosterTotals totals;
  for (const PosterTally& tally : tallies) {
    totals.accepted += tally.accepted;
    totals.failed += tally.failed;
    if (totals.first_failure.ok()) totals.first_failure = tally.first_failure;
    totals.finished_ns = std::max(totals.finished_ns, tally.finished_ns);
    totals.late_sends += tally.late_sends;
    totals.max_lag_ns = std::max(totals.max_lag_ns, tally.max_lag_ns);
  }
  return totals;
}

// Runs `work(worker, start_ns, poster, tally)` on `connections` threads,
// each with its own connection. Each thread first posts one warm-up ping
// (connecting, and not counted); `work` then starts on every thread at once,
// at start_ns, which is also returned. Joins the threads before returning.
using PosterWork = std::function<void(
    int worker, int64_t start_ns, DeliveryPoster& poster, PosterTally& tally)>;

int64_t RunPosters(const IngestEndpoint& ingest, const DeliveryMaker& maker,
                   int connections, const PosterWork& work,
                   std::vector<PosterTally>* tallies) {
  tallies->assign(connections, PosterTally());
  absl::BlockingCounter ready(connections);
  absl::Notification go;
  int64_t start_ns = 0;  // written before `go`, read after it
  std::vector<std::thread> threads;
  for (int worker = 0; worker < connections; ++worker) {
    threads.emplace_back([&, worker] {
      PosterTally& tally = (*tallies)[worker];
      DeliveryPoster poster(ingest);
      const std::string id = maker.NewPingId();
      absl::Status warm = poster.Post(id, kPingType, maker.Ping(id));
      if (!warm.ok()) tally.Fail(warm);
      ready.DecrementCount();
      go.WaitForNotification();
      if (warm.ok()) work(worker, start_ns, poster, tally);
      tally.finished_ns = NowNanos();
    });
  }
  ready.Wait();
  start_ns = NowNanos();
  go.Notify();
  for (std::thread& thread : threads) thread.join();
  return start_ns;
}

// The Subscribe streams of one run, on the gRPC callback API, and what they
// received. A stream counts the ticket.created events it receives, is
// "attached" once it received a test.ping (it then sees every later event),
// and "complete" once it counted the expected number of tickets. A stalled
// stream stops reading once attached, as a subscriber that hangs would.
class StreamSet {
 public:
  // `channels` gRPC connections (0: one per stream), spread over
  // `targets` round robin, as are the streams over the connections.
  StreamSet(const std::vector<std::string>& targets, int streams, int channels,
            bool record_latency, bool stall_after_attach = false);
  ~StreamSet();

  // Opens every stream, new events only.
  void Start();

  // Posts test.ping deliveries through `poster` until every stream has
  // received one. DeadlineExceeded when some stream did not in `timeout`.
  absl::Status AwaitAttached(DeliveryPoster& poster, const DeliveryMaker& maker,
                             absl::Duration timeout);

  // Sets the tickets each stream must count to be complete. May be called
  // while events arrive.
  void ExpectTickets(int64_t tickets);

  // Waits until every stream is complete. DeadlineExceeded, naming how many
  // are not, after `timeout` or as soon as a stream ends.
  absl::Status AwaitComplete(absl::Duration timeout);

  // When the last stream became complete (steady ns).
  int64_t last_completion_ns();

  // Tickets counted over all streams.
  int64_t tickets() const;

  // Due-to-receipt latencies of every stream. Call after AwaitComplete.
  void CollectLatencies(LatencySamples* samples) const;

  // Cancels every stream and waits for them to end (at most 10 s).
  void Stop();

 private:
  class Stream;

  void StreamAttached();
  void StreamComplete(int64_t when_ns);
  void StreamDone(const grpc::Status& status);
  bool AllAttached() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return attached_ == static_cast<int>(streams_.size());
  }
  bool AllComplete() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return complete_ == static_cast<int>(streams_.size());
  }
  bool AllCompleteOrOneEnded() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return AllComplete() || done_ > 0;
  }
  bool AllDone() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return done_ == started_;
  }

  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<Fanout::Stub>> stubs_;
  std::vector<std::unique_ptr<Stream>> streams_;
  const bool record_latency_;
  const bool stall_after_attach_;
  std::atomic<int64_t> expected_{INT64_MAX};

  mutable absl::Mutex mu_;
  int started_ ABSL_GUARDED_BY(mu_) = 0;
  int attached_ ABSL_GUARDED_BY(mu_) = 0;
  int complete_ ABSL_GUARDED_BY(mu_) = 0;
  int done_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t last_completion_ns_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::Status first_error_ ABSL_GUARDED_BY(mu_);
};

// One stream. gRPC runs its callbacks one at a time, on its own threads;
// counters read by other threads are atomic.
class StreamSet::Stream : public grpc::ClientReadReactor<SubscribeResponse> {
 public:
  Stream(StreamSet* set, Fanout::Stub* stub) : set_(set), stub_(stub) {
    request_.add_event_types(kTicketType);
    request_.add_event_types(kPingType);
    request_.mutable_start()->set_new_only(true);
  }

  void Start() {
    stub_->async()->Subscribe(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  void Cancel() { context_.TryCancel(); }

  // Marks the stream complete once if it has counted `expected` tickets.
  void CheckComplete(int64_t expected, int64_t now_ns) {
    if (tickets_.load() >= expected && !complete_.exchange(true)) {
      set_->StreamComplete(now_ns);
    }
  }

  int64_t tickets() const { return tickets_.load(); }
  const std::vector<int64_t>& latencies() const { return latencies_; }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended; OnDone follows
    if (response_.has_event()) Count(response_.event());
    // A stalled stream leaves what follows to pile up in gRPC's flow
    // control window and in the server.
    if (attached_ && set_->stall_after_attach_) return;
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override { set_->StreamDone(status); }

 private:
  void Count(const Event& event) {
    const int64_t now_ns = NowNanos();
    if (event.event_type() == kPingType) {
      if (!attached_) {
        attached_ = true;
        set_->StreamAttached();
      }
      return;
    }
    if (event.event_type() != kTicketType) return;
    if (set_->record_latency_) {
      const std::string& issue = event.ticket_created().issue();
      int64_t due_ns = 0;
      const size_t end = issue.find(';');
      if (absl::StartsWith(issue, kDueMark) && end != std::string::npos &&
          absl::SimpleAtoi(
              absl::string_view(issue).substr(sizeof(kDueMark) - 1,
                                              end - (sizeof(kDueMark) - 1)),
              &due_ns)) {
        latencies_.push_back(now_ns - due_ns);
      }
    }
    ++tickets_;
    CheckComplete(set_->expected_.load(), now_ns);
  }

  StreamSet* const set_;
  Fanout::Stub* const stub_;
  grpc::ClientContext context_;
  SubscribeRequest request_;
  SubscribeResponse response_;
  bool attached_ = false;
  std::atomic<int64_t> tickets_{0};
  std::atomic<bool> complete_{false};
  std::vector<int64_t> latencies_;
};

StreamSet::StreamSet(const std::vector<std::string>& targets, int streams,
                     int channels, bool record_latency, bool stall_after_attach)
    : record_latency_(record_latency), stall_after_attach_(stall_after_attach) {
  if (channels <= 0 || channels > streams) channels = streams;
  // Every target gets a connection, as far as there are streams for them.
  channels =
      std::max(channels, std::min(streams, static_cast<int>(targets.size())));
  for (int i = 0; i < channels; ++i) {
    grpc::ChannelArguments args;
    // Without a pool of its own each channel would share one connection.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxReceiveMessageSize(64 << 20);
    channels_.push_back(grpc::CreateCustomChannel(
        targets[i % targets.size()], grpc::InsecureChannelCredentials(), args));
    stubs_.push_back(Fanout::NewStub(channels_.back()));
  }
  for (int i = 0; i < streams; ++i) {
    streams_.push_back(
        std::make_unique<Stream>(this, stubs_[i % stubs_.size()].get()));
  }
}

StreamSet::~StreamSet() { Stop(); }

void StreamSet::Start() {
  for (auto& stream : streams_) {
    {
      absl::MutexLock lock(&mu_);
      ++started_;
    }
    stream->Start();
  }
}

absl::Status StreamSet::AwaitAttached(DeliveryPoster& poster,
                                      const DeliveryMaker& maker,
                                      absl::Duration timeout) {
  // A stream attached after a ping misses it, so pings go on until every
  // stream has seen one.
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    const std::string id = maker.NewPingId();
    absl::Status posted = poster.Post(id, kPingType, maker.Ping(id));
    if (!posted.ok()) return posted;
    absl::MutexLock lock(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(this, &StreamSet::AllAttached),
                             absl::Milliseconds(50))) {
      return absl::OkStatus();
    }
    if (!first_error_.ok()) {
      return absl::UnavailableError(
          absl::StrCat("a stream ended: ", first_error_.error_message()));
    }
  }
  absl::MutexLock lock(&mu_);
  return absl::DeadlineExceededError(absl::StrCat(
      attached_, " of ", streams_.size(), " streams attached in time"));
}

void StreamSet::ExpectTickets(int64_t tickets) {
  expected_ = tickets;
  // A stream that passed the number before it was set is complete now.
  const int64_t now_ns = NowNanos();
  for (auto& stream : streams_) stream->CheckComplete(tickets, now_ns);
}

absl::Status StreamSet::AwaitComplete(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(this, &StreamSet::AllCompleteOrOneEnded),
                       timeout);
  if (AllComplete()) return absl::OkStatus();
  return absl::DeadlineExceededError(absl::StrCat(
      streams_.size() - complete_, " of ", streams_.size(),
      " streams missed events; ", done_, " ended early, the first with: ",
      first_error_.ok() ? "OK" : first_error_.error_message()));
}

int64_t StreamSet::last_completion_ns() {
  absl::MutexLock lock(&mu_);
  return last_completion_ns_;
}

int64_t StreamSet::tickets() const {
  int64_t total = 0;
  for (const auto& stream : streams_) total += stream->tickets();
  return total;
}

void StreamSet::CollectLatencies(LatencySamples* samples) const {
  for (const auto& stream : streams_) samples->Merge(stream->latencies());
}

void StreamSet::Stop() {
  for (auto& stream : streams_) stream->Cancel();
  absl::MutexLock lock(&mu_);
  if (!mu_.AwaitWithTimeout(absl::Condition(this, &StreamSet::AllDone),
                            absl::Seconds(10))) {
    // Destroying a stream gRPC still calls would be a use after free.
    std::fprintf(stderr, "fanout-bench: streams did not end; exiting\n");
    std::fflush(stdout);
    std::_Exit(EXIT_FAILURE);
  }
}

void StreamSet::StreamAttached() {
  absl::MutexLock lock(&mu_);
  ++attached_;
}

void StreamSet::StreamComplete(int64_t when_ns) {
  absl::MutexLock lock(&mu_);
  ++complete_;
  last_completion_ns_ = std::max(last_completion_ns_, when_ns);
}

void StreamSet::StreamDone(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  ++done_;
  if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED &&
      first_error_.ok()) {
    first_error_ = status;
  }
}

// Reads a size in bytes from /proc/<pid>/status: `field` is "VmRSS" (the
// resident set) or "VmHWM" (its peak). NotFound when it cannot.
absl::StatusOr<int64_t> ReadStatusBytes(int pid,
                                        absl::string_view field = "VmRSS") {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  const std::string prefix = absl::StrCat(field, ":");
  std::string line;
  while (std::getline(status, line)) {
    if (!absl::StartsWith(line, prefix)) continue;
    int64_t kib = 0;
    const std::string value =
        line.substr(prefix.size(), line.find("kB") - prefix.size());
    if (absl::SimpleAtoi(value, &kib)) return kib * 1024;
  }
  return absl::NotFoundError(absl::StrCat("no ", field, " for pid ", pid));
}

// CPU used by the server (when its pid is known) and by this tool over a
// measured window, in cores (CPU seconds per wall second): on a small
// machine the load tool's share is taken from the server.
class CpuMeter {
 public:
  // `server_pid` 0: the server's share is not measured.
  explicit CpuMeter(int server_pid)
      : server_pid_(server_pid),
        start_ns_(NowNanos()),
        server_start_(ServerSeconds()),
        self_start_(SelfSeconds()) {}

  // " server_cores=1.52 bench_cores=0.40" for the time since construction.
  std::string Figures() const {
    const double wall = (NowNanos() - start_ns_) / 1e9;
    std::string figures;
    if (server_pid_ > 0) {
      absl::StrAppendFormat(&figures, " server_cores=%.2f",
                            (ServerSeconds() - server_start_) / wall);
    }
    absl::StrAppendFormat(&figures, " bench_cores=%.2f",
                          (SelfSeconds() - self_start_) / wall);
    return figures;
  }

 private:
  // utime + stime from /proc/<pid>/stat; 0 when it cannot be read.
  double ServerSeconds() const {
    if (server_pid_ <= 0) return 0;
    std::ifstream stat_file(absl::StrCat("/proc/", server_pid_, "/stat"));
    std::string stat((std::istreambuf_iterator<char>(stat_file)),
                     std::istreambuf_iterator<char>());
    // The command name may hold spaces; the fields after it do not.
    const size_t name_end = stat.rfind(')');
    if (name_end == std::string::npos) return 0;
    std::vector<std::string> fields =
        absl::StrSplit(stat.substr(name_end + 2), ' ');
    int64_t utime = 0, stime = 0;
    if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
        !absl::SimpleAtoi(fields[12], &stime)) {
      return 0;
    }
    return static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK);
  }

  static double SelfSeconds() {
    timespec cpu{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
    return cpu.tv_sec + cpu.tv_nsec / 1e9;
  }

  const int server_pid_;
  const int64_t start_ns_;
  const double server_start_;
  const double self_start_;
};

double PerSecond(int64_t count, int64_t nanos) {
  return nanos > 0 ? static_cast<double>(count) * 1e9 / nanos : 0;
}

// The servers of --grpc_target, in the order given.
std::vector<std::string> GrpcTargets() {
  return absl::StrSplit(absl::GetFlag(FLAGS_grpc_target), ',',
                        absl::SkipWhitespace());
}

// Prints a failure and returns the exit code for it.
int Failed(const std::string& what, const absl::Status& status) {
  std::printf("FAILED: %s: %s\n", what.c_str(), status.ToString().c_str());
  return EXIT_FAILURE;
}

int RunIngest(const IngestEndpoint& ingest, const DeliveryMaker& maker) {
  const int connections = absl::GetFlag(FLAGS_connections);
  const int64_t duration_ns =
      absl::ToInt64Nanoseconds(absl::GetFlag(FLAGS_duration));

  std::vector<PosterTally> tallies;
  PosterWork work = [&](int worker, int64_t start_ns, DeliveryPoster& poster,
                        PosterTally& tally) {
    tally.latencies.reserve(1 << 16);
    const int64_t deadline_ns = start_ns + duration_ns;
    for (int64_t n = 0; NowNanos() < deadline_ns; ++n) {
      const std::string id = maker.NewId(worker, n);
      const std::string body = maker.Ticket(id, "");
      const int64_t sent_ns = NowNanos();
      absl::Status posted = poster.Post(id, kTicketType, body);
      if (!posted.ok()) {
        tally.Fail(posted);
        continue;
      }
      tally.latencies.push_back(NowNanos() - sent_ns);
      ++tally.accepted;
    }
  };
  const CpuMeter cpu(absl::GetFlag(FLAGS_server_pid));
  const int64_t start_ns =
      RunPosters(ingest, maker, connections, work, &tallies);
  const std::string cpu_figures = cpu.Figures();

  const PosterTotals totals = Sum(tallies);
  LatencySamples latencies;
  for (const PosterTally& tally : tallies) latencies.Merge(tally.latencies);
  const int64_t elapsed_ns = totals.finished_ns - start_ns;
  const double rate = PerSecond(totals.accepted, elapsed_ns);
  std::printf(
      "ingest: %d connections, %.2f s, %" PRId64 " accepted, %" PRId64
      " failed, %zu-byte bodies\n"
      "  %.0f deliveries/s; until 200: p50 %.3f ms, p99 %.3f ms, max %.3f "
      "ms\n",
      connections, elapsed_ns / 1e9, totals.accepted, totals.failed,
      maker.Ticket(maker.NewId(0, 0), "").size(), rate,
      latencies.QuantileMs(0.5), latencies.QuantileMs(0.99),
      latencies.QuantileMs(1.0));
  if (totals.failed > 0) {
    return Failed("deliveries were not accepted", totals.first_failure);
  }
  std::printf("result deliveries_per_s=%.1f p50_ms=%.4f p99_ms=%.4f%s\n", rate,
              latencies.QuantileMs(0.5), latencies.QuantileMs(0.99),
              cpu_figures.c_str());
  return EXIT_SUCCESS;
}

int RunFanout(const IngestEndpoint& ingest, const DeliveryMaker& maker) {
  const int subscribers = absl::GetFlag(FLAGS_subscribers);
  const int connections = absl::GetFlag(FLAGS_connections);
  const int64_t events = absl::GetFlag(FLAGS_events);

  StreamSet streams(GrpcTargets(), subscribers, absl::GetFlag(FLAGS_channels),
                    /*record_latency=*/false);
  streams.ExpectTickets(events);
  streams.Start();
  {
    DeliveryPoster barrier_poster(ingest);
    absl::Status attached = streams.AwaitAttached(
        barrier_poster, maker, absl::GetFlag(FLAGS_attach_timeout));
    if (!attached.ok()) return Failed("attaching subscribers", attached);
  }

  std::atomic<int64_t> next{0};
  std::vector<PosterTally> tallies;
  PosterWork work = [&](int worker, int64_t start_ns, DeliveryPoster& poster,
                        PosterTally& tally) {
    for (int64_t n = next++; n < events; n = next++) {
      const std::string id = maker.NewId(worker, n);
      absl::Status posted = poster.Post(id, kTicketType, maker.Ticket(id, ""));
      if (posted.ok()) {
        ++tally.accepted;
      } else {
        tally.Fail(posted);
      }
    }
  };
  const CpuMeter cpu(absl::GetFlag(FLAGS_server_pid));
  const int64_t start_ns =
      RunPosters(ingest, maker, connections, work, &tallies);
  const PosterTotals totals = Sum(tallies);
  if (totals.failed > 0) {
    return Failed("deliveries were not accepted", totals.first_failure);
  }

  absl::Status complete =
      streams.AwaitComplete(absl::GetFlag(FLAGS_drain_timeout));
  if (!complete.ok()) return Failed("receiving every event", complete);
  const std::string cpu_figures = cpu.Figures();
  const int64_t elapsed_ns = streams.last_completion_ns() - start_ns;
  const int64_t delivered = streams.tickets();
  const double rate = PerSecond(delivered, elapsed_ns);
  std::printf("fanout: %d subscribers, %" PRId64
              " events posted on %d "
              "connections in %.2f s (%.0f/s)\n"
              "  %" PRId64
              " deliveries to subscribers in %.2f s: %.0f "
              "events/s summed over subscribers\n",
              subscribers, events, connections,
              (totals.finished_ns - start_ns) / 1e9,
              PerSecond(events, totals.finished_ns - start_ns), delivered,
              elapsed_ns / 1e9, rate);
  std::printf("result delivered_per_s=%.1f ingest_per_s=%.1f%s\n", rate,
              PerSecond(events, totals.finished_ns - start_ns),
              cpu_figures.c_str());
  return EXIT_SUCCESS;
}

int RunLatency(const IngestEndpoint& ingest, const DeliveryMaker& maker) {
  const int subscribers = absl::GetFlag(FLAGS_subscribers);
  const int connections = absl::GetFlag(FLAGS_connections);
  const double rate = absl::GetFlag(FLAGS_rate);
  const int64_t total = static_cast<int64_t>(
      rate * absl::ToDoubleSeconds(absl::GetFlag(FLAGS_duration)));
  const double period_ns = 1e9 / rate;

  StreamSet streams(GrpcTargets(), subscribers, absl::GetFlag(FLAGS_channels),
                    /*record_latency=*/true);
  streams.Start();
  {
    DeliveryPoster barrier_poster(ingest);
    absl::Status attached = streams.AwaitAttached(
        barrier_poster, maker, absl::GetFlag(FLAGS_attach_timeout));
    if (!attached.ok()) return Failed("attaching subscribers", attached);
  }

  // Open loop: delivery n is due at start + n * period whatever happened to
  // the ones before it, and carries its due time, so a stall shows up in
  // the latency of every delivery it delayed rather than pausing the clock.
  std::atomic<int64_t> next{0};
  std::vector<PosterTally> tallies;
  PosterWork work = [&](int worker, int64_t start_ns, DeliveryPoster& poster,
                        PosterTally& tally) {
    for (int64_t n = next++; n < total; n = next++) {
      const int64_t due_ns = start_ns + static_cast<int64_t>(n * period_ns);
      const std::string id = maker.NewId(worker, n);
      const std::string body =
          maker.Ticket(id, absl::StrCat(kDueMark, due_ns, ";"));
      SleepUntilNanos(due_ns);
      const int64_t lag_ns = NowNanos() - due_ns;
      if (lag_ns > 1000000) ++tally.late_sends;
      tally.max_lag_ns = std::max(tally.max_lag_ns, lag_ns);
      absl::Status posted = poster.Post(id, kTicketType, body);
      if (posted.ok()) {
        ++tally.accepted;
      } else {
        tally.Fail(posted);
      }
    }
  };
  const CpuMeter cpu(absl::GetFlag(FLAGS_server_pid));
  const int64_t start_ns =
      RunPosters(ingest, maker, connections, work, &tallies);
  const PosterTotals totals = Sum(tallies);
  if (totals.failed > 0) {
    return Failed("deliveries were not accepted", totals.first_failure);
  }
  streams.ExpectTickets(totals.accepted);
  absl::Status complete =
      streams.AwaitComplete(absl::GetFlag(FLAGS_drain_timeout));
  if (!complete.ok()) return Failed("receiving every event", complete);
  const std::string cpu_figures = cpu.Figures();

  LatencySamples latencies;
  streams.CollectLatencies(&latencies);
  std::printf("latency: %d subscribers, %" PRId64
              " events at %.0f/s on %d "
              "connections in %.2f s; %" PRId64
              " sent > 1 ms late (max lag "
              "%.3f ms)\n"
              "  due-to-receipt over %zu receipts: p50 %.3f ms, p99 %.3f ms, "
              "p99.9 %.3f ms, max %.3f ms\n",
              subscribers, totals.accepted, rate, connections,
              (totals.finished_ns - start_ns) / 1e9, totals.late_sends,
              totals.max_lag_ns / 1e6, latencies.size(),
              latencies.QuantileMs(0.5), latencies.QuantileMs(0.99),
              latencies.QuantileMs(0.999), latencies.QuantileMs(1.0));
  std::printf(
      "result p50_ms=%.4f p99_ms=%.4f p999_ms=%.4f late_sends=%" PRId64 "%s\n",
      latencies.QuantileMs(0.5), latencies.QuantileMs(0.99),
      latencies.QuantileMs(0.999), totals.late_sends, cpu_figures.c_str());
  return EXIT_SUCCESS;
}

int RunIdleMemory(const IngestEndpoint& ingest, const DeliveryMaker& maker) {
  const int pid = absl::GetFlag(FLAGS_server_pid);
  const int subscribers = absl::GetFlag(FLAGS_subscribers);
  const absl::Duration attach_timeout = absl::GetFlag(FLAGS_attach_timeout);
  if (pid <= 0) {
    return Failed("idle-memory",
                  absl::InvalidArgumentError("--server_pid is required"));
  }
  const std::vector<std::string> targets = GrpcTargets();
  DeliveryPoster poster(ingest);

  // The server as started: nothing ingested, nobody subscribed.
  absl::StatusOr<int64_t> idle = ReadStatusBytes(pid);
  if (!idle.ok()) return Failed("reading VmRSS", idle.status());

  // One stream first, so that what gRPC allocates once (threads, pools) is
  // not charged to the streams measured.
  StreamSet first(targets, 1, 0, /*record_latency=*/false);
  first.Start();
  absl::Status attached = first.AwaitAttached(poster, maker, attach_timeout);
  if (!attached.ok()) return Failed("attaching a subscriber", attached);
  absl::SleepFor(absl::Milliseconds(300));
  absl::StatusOr<int64_t> before = ReadStatusBytes(pid);
  if (!before.ok()) return Failed("reading VmRSS", before.status());

  StreamSet streams(targets, subscribers, absl::GetFlag(FLAGS_channels),
                    /*record_latency=*/false);
  streams.Start();
  attached = streams.AwaitAttached(poster, maker, attach_timeout);
  if (!attached.ok()) return Failed("attaching subscribers", attached);
  absl::SleepFor(absl::Milliseconds(500));
  absl::StatusOr<int64_t> after = ReadStatusBytes(pid);
  if (!after.ok()) return Failed("reading VmRSS", after.status());

  const double per_stream = static_cast<double>(*after - *before) / subscribers;
  std::printf(
      "idle-memory: server VmRSS %.1f MiB idle, %.1f MiB with 1 stream, "
      "%.1f MiB with %d more idle streams\n"
      "  %.0f bytes (%.1f KiB) per idle stream\n",
      *idle / 1048576.0, *before / 1048576.0, *after / 1048576.0, subscribers,
      per_stream, per_stream / 1024);
  std::printf("result idle_rss_mib=%.2f bytes_per_subscriber=%.0f\n",
              *idle / 1048576.0, per_stream);
  return EXIT_SUCCESS;
}

int RunStalledMemory(const IngestEndpoint& ingest, const DeliveryMaker& maker) {
  const int pid = absl::GetFlag(FLAGS_server_pid);
  const int connections = absl::GetFlag(FLAGS_connections);
  const int64_t events = absl::GetFlag(FLAGS_events);
  if (pid <= 0) {
    return Failed("stalled-memory",
                  absl::InvalidArgumentError("--server_pid is required"));
  }

  StreamSet stalled(GrpcTargets(), 1, 0,
                    /*record_latency=*/false, /*stall_after_attach=*/true);
  stalled.Start();
  {
    DeliveryPoster barrier_poster(ingest);
    absl::Status attached = stalled.AwaitAttached(
        barrier_poster, maker, absl::GetFlag(FLAGS_attach_timeout));
    if (!attached.ok()) return Failed("attaching the subscriber", attached);
  }
  absl::SleepFor(absl::Milliseconds(300));
  absl::StatusOr<int64_t> before = ReadStatusBytes(pid);
  if (!before.ok()) return Failed("reading VmRSS", before.status());

  std::atomic<int64_t> next{0};
  std::vector<PosterTally> tallies;
  PosterWork work = [&](int worker, int64_t start_ns, DeliveryPoster& poster,
                        PosterTally& tally) {
    for (int64_t n = next++; n < events; n = next++) {
      const std::string id = maker.NewId(worker, n);
      absl::Status posted = poster.Post(id, kTicketType, maker.Ticket(id, ""));
      if (posted.ok()) {
        ++tally.accepted;
      } else {
        tally.Fail(posted);
      }
    }
  };
  const int64_t start_ns =
      RunPosters(ingest, maker, connections, work, &tallies);
  const PosterTotals totals = Sum(tallies);
  if (totals.failed > 0) {
    return Failed("deliveries were not accepted", totals.first_failure);
  }
  // Whatever the server does once the posts are answered (queueing for
  // the stalled stream, freeing) settles before the second look.
  absl::SleepFor(absl::Milliseconds(500));
  absl::StatusOr<int64_t> after = ReadStatusBytes(pid);
  absl::StatusOr<int64_t> peak = ReadStatusBytes(pid, "VmHWM");
  if (!after.ok()) return Failed("reading VmRSS", after.status());
  if (!peak.ok()) return Failed("reading VmHWM", peak.status());

  const double growth_mib = (*after - *before) / 1048576.0;
  const double peak_growth_mib = (*peak - *before) / 1048576.0;
  std::printf(
      "stalled-memory: %" PRId64
      " events posted on %d connections in %.2f s "
      "past one stalled stream (it received %" PRId64
      " tickets)\n"
      "  server VmRSS %.1f MiB before, %.1f MiB after: growth %.1f MiB; "
      "VmHWM %.1f MiB (peak growth %.1f MiB)\n",
      totals.accepted, connections, (totals.finished_ns - start_ns) / 1e9,
      stalled.tickets(), *before / 1048576.0, *after / 1048576.0, growth_mib,
      *peak / 1048576.0, peak_growth_mib);
  std::printf("result growth_mib=%.2f peak_growth_mib=%.2f events=%" PRId64
              "\n",
              growth_mib, peak_growth_mib, totals.accepted);
  return EXIT_SUCCESS;
}

// Writes the deliveries wrk sends, each a whole HTTP/1.1 request with the
// headers DeliveryPoster sends, preceded by its size in bytes and a
// newline. Delivery n goes to file n % slices, so that each wrk thread can
// read files of its own and no two threads send the same delivery.
int WriteRequests(const IngestEndpoint& ingest, const DeliveryMaker& maker) {
  const std::string out = absl::GetFlag(FLAGS_out);
  const int slices = absl::GetFlag(FLAGS_slices);
  const int64_t requests = absl::GetFlag(FLAGS_requests);
  if (out.empty() || slices < 1 || requests < 1) {
    return Failed("requests", absl::InvalidArgumentError(
                                  "--out, --slices and --requests are "
                                  "required"));
  }

  std::vector<std::ofstream> files;
  for (int slice = 0; slice < slices; ++slice) {
    files.emplace_back(absl::StrCat(out, ".", slice),
                       std::ios::binary | std::ios::trunc);
    if (!files.back()) {
      return Failed("requests", absl::UnavailableError(absl::StrCat(
                                    "cannot write ", out, ".", slice)));
    }
  }
  const std::string timestamp = absl::StrCat(absl::ToUnixSeconds(absl::Now()));
  size_t body_bytes = 0;
  for (int64_t n = 0; n < requests; ++n) {
    const int slice = static_cast<int>(n % slices);
    const std::string id = maker.NewId(slice, n / slices);
    const std::string body = maker.Ticket(id, "");
    body_bytes = std::max(body_bytes, body.size());
    // Both servers ignore Host (nginx has one server block), so it need
    // not name the port of the server the file is sent to.
    const std::string request = absl::StrCat(
        "POST ", ingest.url.target, " HTTP/1.1\r\n", "Host: 127.0.0.1\r\n",
        "Content-Type: application/json\r\n",
        "User-Agent: Staffify-Webhooks/1.0 (fanout-bench)\r\n",
        "X-Staffify-Delivery: ", id, "\r\n", "X-Staffify-Event: ", kTicketType,
        "\r\n", "X-Webhook-Timestamp: ", timestamp, "\r\n",
        "X-Webhook-Signature: ",
        SignatureHeader(ingest.secret, timestamp, body), "\r\n",
        "Content-Length: ", body.size(), "\r\n\r\n", body);
    files[slice] << request.size() << '\n' << request;
  }
  for (std::ofstream& file : files) {
    file.close();
    if (!file) {
      return Failed("requests", absl::UnavailableError(absl::StrCat(
                                    "writing under ", out, " failed")));
    }
  }
  std::printf("result requests=%" PRId64 " slices=%d body_bytes=%zu\n",
              requests, slices, body_bytes);
  return EXIT_SUCCESS;
}

}  // namespace
}  // namespace bench
}  // namespace fanout

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Load tool for fanout-server benchmarks: --mode=ingest|fanout|latency|"
      "idle-memory|stalled-memory against --http_url and --grpc_target, or "
      "--mode=requests to write signed requests for wrk; see bench/run.sh.");
  const std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() > 1) {
    std::fprintf(stderr, "fanout-bench: unexpected argument \"%s\"\n", args[1]);
    return EXIT_FAILURE;
  }
  if (absl::GetFlag(FLAGS_connections) < 1 ||
      absl::GetFlag(FLAGS_subscribers) < 1 || absl::GetFlag(FLAGS_events) < 1 ||
      absl::GetFlag(FLAGS_rate) <= 0) {
    std::fprintf(stderr,
                 "fanout-bench: --connections, --subscribers, --events and "
                 "--rate must be positive\n");
    return EXIT_FAILURE;
  }
  absl::StatusOr<fanout::HttpUrl> url =
      fanout::ParseHttpUrl(absl::GetFlag(FLAGS_http_url));
  if (!url.ok()) {
    std::fprintf(stderr, "fanout-bench: %s\n", url.status().ToString().c_str());
    return EXIT_FAILURE;
  }
  fanout::bench::IngestEndpoint ingest{*url, ""};
  if (const char* secret = std::getenv("FANOUT_WEBHOOK_SECRET")) {
    ingest.secret = secret;
  }
  const fanout::bench::DeliveryMaker maker(absl::GetFlag(FLAGS_body_bytes));

  const std::string mode = absl::GetFlag(FLAGS_mode);
  const size_t targets = fanout::bench::GrpcTargets().size();
  if (targets == 0 || (targets > 1 && mode != "fanout" && mode != "latency")) {
    std::fprintf(stderr,
                 "fanout-bench: --grpc_target must name a server; only "
                 "fanout and latency take several\n");
    return EXIT_FAILURE;
  }
  int code = EXIT_FAILURE;
  if (mode == "ingest") {
    code = fanout::bench::RunIngest(ingest, maker);
  } else if (mode == "fanout") {
    code = fanout::bench::RunFanout(ingest, maker);
  } else if (mode == "latency") {
    code = fanout::bench::RunLatency(ingest, maker);
  } else if (mode == "idle-memory") {
    code = fanout::bench::RunIdleMemory(ingest, maker);
  } else if (mode == "stalled-memory") {
    code = fanout::bench::RunStalledMemory(ingest, maker);
  } else if (mode == "requests") {
    code = fanout::bench::WriteRequests(ingest, maker);
  } else {
    std::fprintf(stderr,
                 "fanout-bench: --mode must be ingest, fanout, latency, "
                 "idle-memory, stalled-memory or requests, not \"%s\"\n",
                 mode.c_str());
  }
  std::fflush(stdout);
  return code;
}
