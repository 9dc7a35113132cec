// libFuzzer target for the HTTP half of the ingest path: arbitrary bytes as
// what a client sends on one connection, parsed with Beast's
// request_parser under the server's limits, and each complete request (up
// to four, pipelined, while the client keeps the connection alive) answered
// by WebhookHandler with a real EventConverter, SignatureVerifier and
// embedded event store (SQLite in a temporary directory): the whole path a
// delivery takes, minus the socket.
//
// Signatures: a request that carries no signature header is signed by the
// harness, with the fixed secret, over the timestamp header it carries (if
// any), so fuzzed bodies get past the verifier to the converter and the
// log; a request that carries one is left as the fuzzer wrote it.
//
// Each answer must come exactly once, with a status the handler documents,
// a Content-Length that matches, and (except for the operator's plain-text
// endpoints) a JSON body of the documented shape. A 200 must be for a body
// the converter accepts, with its id and type. Broken invariants abort with
// their name; ASan and UBSan catch the rest.
//
// The log keeps state across inputs (a delivery id seen before is answered
// "duplicate"), so a crash found late in a run may need the log's history;
// re-running the crashing input alone starts from an empty log.

#include <stdlib.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/auth/signature_verifier.h"
#include "server/convert/event_converter.h"
#include "server/convert/event_type.h"
#include "server/http/http_server.h"
#include "server/http/webhook_handler.h"
#include "server/ingest/ingestor.h"
#include "server/fanout/event_hub.h"
#include "server/log/event_log.h"
#include "server/store/embedded_store.h"
#include "spdlog/spdlog.h"

namespace fanout {
namespace {

namespace http = boost::beast::http;

// The verifier's clock: 2026-03-01T12:00:00Z. Seeds carry this timestamp.
constexpr int64_t kNowSeconds = 1772366400;
constexpr char kSecret[] = "fuzz-webhook-secret";
// Requests answered per input at most, as on one keep-alive connection.
constexpr int kMaxRequestsPerInput = 4;
// Far longer than a commit takes; reaching it means no answer came.
constexpr std::chrono::seconds kAnswerTimeout{20};

// Aborts, naming `invariant`, unless `holds`.
void Check(bool holds, const char* invariant) {
  if (holds) return;
  std::fprintf(stderr, "fuzz_http: invariant broken: %s\n", invariant);
  std::abort();
}

// What the handler's Respond callback received. Shared with the callback,
// which may run on the log's writer thread.
struct ResponseSlot {
  std::mutex mu;
  std::condition_variable answered;
  int calls = 0;
  std::optional<HttpResponse> response;
};

// What the checks need of a request after it was handed over.
struct RequestFacts {
  http::verb method;
  std::string path;
  std::string body;
};

// The header value the handler reads: `name`, or else `alternative`.
std::optional<std::string> Header(const HttpRequest& request,
                                  absl::string_view name,
                                  absl::string_view alternative) {
  for (absl::string_view candidate : {name, alternative}) {
    const auto found = request.find(
        boost::beast::string_view(candidate.data(), candidate.size()));
    if (found != request.end()) return std::string(found->value());
  }
  return std::nullopt;
}

class Harness {
 public:
  Harness();
  ~Harness();

  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  // Parses and answers the requests in `input`, checking every answer.
  void Run(absl::string_view input);

 private:
  // Parses one request from the front of `*input`, consuming its bytes.
  // Returns nullopt when the bytes do not make a complete request (the
  // server would answer 4xx or keep waiting; either way the handler is not
  // involved).
  std::optional<HttpRequest> Parse(absl::string_view* input);

  // Signs `request` with kSecret unless it carries a signature header.
  static void SignIfUnsigned(HttpRequest* request);

  // Hands `request` to the handler and returns its one answer.
  HttpResponse Handle(HttpRequest request);

  void CheckResponse(const RequestFacts& request, const HttpResponse& response);

  const HttpServerOptions server_options_;
  // FANOUT_FUZZ_VERBOSE=1 prints each request and its answer, for reading
  // what a crashing input does.
  const bool verbose_ = std::getenv("FANOUT_FUZZ_VERBOSE") != nullptr;
  std::string dir_;
  EventConverter converter_;
  // Keeps the newest events in a bounded window, read by nobody.
  EventHub hub_;
  std::unique_ptr<EmbeddedStore> store_;
  std::unique_ptr<Ingestor> ingestor_;
  std::unique_ptr<SignatureVerifier> verifier_;
  std::unique_ptr<WebhookHandler> handler_;
  // The answer to the previous request, kept to catch a second call of its
  // Respond callback.
  std::shared_ptr<ResponseSlot> previous_;
  // Answers by status, printed at exit: how deep the inputs got.
  std::map<unsigned, uint64_t> statuses_;
  // The event type each accepted delivery id was stored with; a duplicate
  // is answered with it, whatever the retry's body says.
  std::map<std::string, std::string> stored_types_;
};

Harness::Harness() {
  // Every refused delivery logs a warning; at thousands of inputs a second
  // that is all the fuzzer would do.
  spdlog::set_level(spdlog::level::off);

  const char* base = std::getenv("TMPDIR");
  std::string pattern =
      std::string(base != nullptr && *base != '\0' ? base : "/tmp") +
      "/fanout-fuzz-http-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    std::perror("fuzz_http: mkdtemp");
    std::abort();
  }
  dir_ = pattern;

  EventLogOptions log_options;
  log_options.data_dir = dir_;
  // Bounds the database over a long run; retention runs now and then.
  log_options.retention_bytes = 16 << 20;
  absl::StatusOr<std::unique_ptr<EmbeddedStore>> store =
      EmbeddedStore::Open(log_options, &hub_);
  if (!store.ok()) {
    std::fprintf(stderr, "fuzz_http: cannot open the event log: %s\n",
                 store.status().ToString().c_str());
    std::abort();
  }
  store_ = *std::move(store);
  ingestor_ = std::make_unique<Ingestor>(&converter_, store_.get());

  SignatureVerifierOptions verifier_options;
  verifier_options.secrets = {kSecret};
  verifier_options.clock = [] { return absl::FromUnixSeconds(kNowSeconds); };
  verifier_ = std::make_unique<SignatureVerifier>(verifier_options);
  handler_ = std::make_unique<WebhookHandler>(ingestor_.get(), verifier_.get());
}

Harness::~Harness() {
  std::string counts;
  for (const auto& [status, count] : statuses_) {
    absl::StrAppend(&counts, " ", status, ":", count);
  }
  std::fprintf(stderr, "fuzz_http: answers by status:%s\n", counts.c_str());

  if (previous_ != nullptr) {
    std::lock_guard<std::mutex> lock(previous_->mu);
    Check(previous_->calls == 1, "the handler answers exactly once");
  }
  handler_.reset();
  ingestor_.reset();
  store_.reset();  // Finishes pending appends and closes the database.
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::optional<HttpRequest> Harness::Parse(absl::string_view* input) {
  http::request_parser<http::string_body> parser;
  parser.body_limit(server_options_.max_body_bytes);
  parser.header_limit(static_cast<uint32_t>(server_options_.max_header_bytes));
  parser.eager(true);

  // As Beast's read does: end of input before a byte of the message is
  // the end of the connection; after one, put_eof finishes the message or
  // says it is truncated.
  boost::beast::error_code ec;
  while (!parser.is_done()) {
    size_t used = 0;
    if (!input->empty()) {
      used = parser.put(boost::asio::buffer(input->data(), input->size()), ec);
      input->remove_prefix(used);
      if (ec == http::error::need_more) {
        ec = {};
        if (used > 0) continue;
        // Wants more than the input has left: the client stopped sending.
      } else if (ec) {
        break;
      } else {
        continue;
      }
    }
    if (!parser.got_some()) return std::nullopt;
    parser.put_eof(ec);
    break;
  }
  if (ec || !parser.is_done()) return std::nullopt;
  return parser.release();
}

void Harness::SignIfUnsigned(HttpRequest* request) {
  if (Header(*request, "X-Webhook-Signature", "X-Staffify-Signature")) return;
  const std::optional<std::string> timestamp =
      Header(*request, "X-Webhook-Timestamp", "X-Staffify-Timestamp");
  // Without a timestamp the verifier refuses the request whatever it is
  // signed with.
  if (!timestamp) return;
  request->set("X-Webhook-Signature",
               SignWebhook(kSecret, *timestamp, request->body()));
}

HttpResponse Harness::Handle(HttpRequest request) {
  auto answer = std::make_shared<ResponseSlot>();
  handler_->Handle(std::move(request), [answer](HttpResponse response) {
    std::lock_guard<std::mutex> lock(answer->mu);
    if (++answer->calls == 1) answer->response = std::move(response);
    answer->answered.notify_all();
  });

  std::unique_lock<std::mutex> lock(answer->mu);
  Check(answer->answered.wait_for(lock, kAnswerTimeout,
                                  [&] { return answer->calls > 0; }),
        "the handler answers");
  Check(answer->calls == 1, "the handler answers exactly once");
  HttpResponse response = std::move(*answer->response);
  lock.unlock();

  if (previous_ != nullptr) {
    std::lock_guard<std::mutex> previous_lock(previous_->mu);
    Check(previous_->calls == 1, "the handler answers exactly once");
  }
  previous_ = std::move(answer);
  return response;
}

void Harness::CheckResponse(const RequestFacts& request,
                            const HttpResponse& response) {
  const unsigned status = response.result_int();
  ++statuses_[status];
  if (verbose_) {
    std::fprintf(stderr, "fuzz_http: %s %s -> %u %s",
                 std::string(http::to_string(request.method)).c_str(),
                 request.path.c_str(), status, response.body().c_str());
  }
  Check(status == 200 || status == 400 || status == 401 || status == 404 ||
            status == 405 || status == 415 || status == 503,
        "the status is one the handler documents");

  const auto length = response.find(http::field::content_length);
  Check(length != response.end() &&
            length->value() == std::to_string(response.body().size()),
        "Content-Length matches the body");
  if (status == 405) {
    Check(response[http::field::allow] == "POST", "a 405 says Allow: POST");
  }

  const std::string content_type(response[http::field::content_type]);
  if (content_type != "application/json") {
    // The operator's endpoints (health, readiness, metrics) answer GETs
    // beside the webhook path in plain text.
    Check(request.method == http::verb::get &&
              request.path != WebhookHandler::kWebhookPath &&
              (status == 200 || status == 503),
          "only operator endpoints answer other than JSON");
    return;
  }

  boost::json::error_code ec;
  const boost::json::value body = boost::json::parse(response.body(), ec);
  Check(!ec && body.is_object(), "the answer is a JSON object");
  const boost::json::object& object = body.get_object();
  auto string_member = [&](const char* key) -> const boost::json::string* {
    const boost::json::value* value = object.if_contains(key);
    return value != nullptr && value->is_string() ? &value->get_string()
                                                  : nullptr;
  };

  if (status != 200) {
    Check(string_member("error") != nullptr && string_member("message"),
          "an error answer has \"error\" and \"message\" strings");
    return;
  }

  const boost::json::string* outcome = string_member("status");
  Check(
      outcome != nullptr && (*outcome == "accepted" || *outcome == "duplicate"),
      "a 200 is \"accepted\" or \"duplicate\"");
  const boost::json::value* sequence = object.if_contains("sequence");
  Check(sequence != nullptr &&
            ((sequence->is_uint64() && sequence->get_uint64() > 0) ||
             (sequence->is_int64() && sequence->get_int64() > 0)),
        "a 200 carries a positive sequence");
  const boost::json::string* id = string_member("id");
  const boost::json::string* event = string_member("event");
  Check(id != nullptr && event != nullptr && IsEventType(std::string(*event)),
        "a 200 names the delivery id and a valid event type");

  // Only bodies the converter accepts are accepted, as what it read; a
  // duplicate describes the event stored first under its id.
  const absl::StatusOr<staffify::fanout::v1::Event> converted =
      converter_.Convert(request.body);
  Check(converted.ok() && converted->id() == *id,
        "a 200 answers a body the converter accepts, with its id");
  const std::string id_text(*id);
  if (*outcome == "accepted") {
    Check(converted->event_type() == *event,
          "an accepted delivery is answered with its own event type");
    Check(stored_types_.emplace(id_text, std::string(*event)).second,
          "an id is accepted once");
  } else {
    const auto stored = stored_types_.find(id_text);
    Check(stored != stored_types_.end() && stored->second == *event,
          "a duplicate is answered with the stored event's type");
  }
}

void Harness::Run(absl::string_view input) {
  for (int i = 0; i < kMaxRequestsPerInput; ++i) {
    std::optional<HttpRequest> request = Parse(&input);
    if (!request) return;
    SignIfUnsigned(&*request);

    const bool keep_alive = request->keep_alive();
    const absl::string_view target(request->target().data(),
                                   request->target().size());
    RequestFacts facts{request->method(),
                       std::string(target.substr(0, target.find('?'))),
                       request->body()};
    const HttpResponse response = Handle(*std::move(request));
    CheckResponse(facts, response);
    if (!keep_alive) return;
  }
}

Harness* harness = nullptr;

void DestroyHarness() {
  delete harness;
  harness = nullptr;
}

}  // namespace
}  // namespace fanout

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  fanout::harness = new fanout::Harness;
  std::atexit(fanout::DestroyHarness);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fanout::harness->Run(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
