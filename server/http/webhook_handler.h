// Turns one HTTP request into one HTTP response: routing, the checks a
// webhook endpoint owes its sender (method, content type), and the JSON
// answers. The delivery itself is handed to the Ingestor.
//
// Knows nothing of sockets; HttpServer feeds it parsed requests.

#ifndef FANOUT_SERVER_HTTP_WEBHOOK_HANDLER_H_
#define FANOUT_SERVER_HTTP_WEBHOOK_HANDLER_H_

#include <atomic>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "server/auth/signature_verifier.h"
#include "server/ingest/ingestor.h"

namespace fanout {

using HttpRequest =
    boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse =
    boost::beast::http::response<boost::beast::http::string_body>;

// Builds a response with a JSON body of the form
// {"error": "<name>", "message": "<message>"}.
HttpResponse JsonErrorResponse(boost::beast::http::status status,
                               const std::string& name,
                               const std::string& message);

// As above, with the HTTP status and name chosen by the status mapping.
HttpResponse JsonErrorResponse(const absl::Status& status);

// Returns true if `content_type` names JSON: "application/json" in any
// letter case, with or without parameters such as "; charset=utf-8".
bool IsJsonContentType(const std::string& content_type);

// The operator's endpoints, answered beside the webhook path:
//   GET /healthz  200 while the process runs;
//   GET /readyz   200 when `ready` says so, else 503;
//   GET /metrics  `metrics` in the Prometheus text format.
struct OperatorEndpoints {
  std::function<bool()> ready;
  std::function<std::string()> metrics;
};

class WebhookHandler {
 public:
  using Respond = std::function<void(HttpResponse)>;

  // The path deliveries are POSTed to.
  static constexpr const char* kWebhookPath = "/webhooks";

  // `ingestor` must outlive the handler.
  // `verifier` checks signatures; null accepts unsigned deliveries (for
  // development only). `metrics` may be null. All must outlive the handler.
  WebhookHandler(Ingestor* ingestor, SignatureVerifier* verifier,
                 Metrics* metrics = nullptr,
                 OperatorEndpoints operator_endpoints = {});

  // Answers `request` by calling `respond` exactly once, possibly before
  // Handle returns and on any thread:
  //   POST /webhooks with a JSON delivery  200 {"status":"accepted",...}
  //   ... whose id the log already holds   200 {"status":"duplicate",...}
  //   the log cannot store it              503
  //   a body that is not a usable delivery 400
  //   any other path                       404
  //   another method on /webhooks          405
  //   a missing, malformed, stale or wrong
  //   signature                            401
  //   a content type other than JSON, or
  //   a Content-Encoding other than identity 415
  // The response's version and keep-alive are the caller's to set.
  void Handle(HttpRequest request, Respond respond);

  // Deliveries handed to the ingestor and not yet answered.
  int in_flight() const { return in_flight_.load(); }

 private:
  std::atomic<int> in_flight_{0};
  Ingestor* const ingestor_;
  SignatureVerifier* const verifier_;
  Metrics* const metrics_;
  const OperatorEndpoints operator_endpoints_;
};

}  // namespace fanout

#endif  // FANOUT_SERVER_HTTP_WEBHOOK_HANDLER_H_
