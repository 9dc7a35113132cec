#include "server/http/webhook_handler.h"

#include <boost/beast/http/field.hpp>
#include <boost/json.hpp>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "server/common/status_mapping.h"
#include "server/convert/json_message.h"
#include "spdlog/spdlog.h"

namespace fanout {
namespace {

namespace http = boost::beast::http;

HttpResponse JsonResponse(http::status status,
                          const boost::json::object& body) {
  HttpResponse response(status, 11);
  response.set(http::field::content_type, "application/json");
  response.body() = boost::json::serialize(body);
  response.body().push_back('\n');
  response.prepare_payload();
  return response;
}

// True if `text` goes into a JSON string as it is: no quote, backslash or
// control character to escape.
bool JsonPlain(absl::string_view text) {
  for (const char c : text) {
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
      return false;
    }
  }
  return true;
}

HttpResponse TextResponse(http::status status, std::string body,
                          absl::string_view content_type) {
  HttpResponse response(status, 11);
  response.set(
      http::field::content_type,
      boost::beast::string_view(content_type.data(), content_type.size()));
  response.body() = std::move(body);
  response.prepare_payload();
  return response;
}

// Marks the end of one delivery's handling when it goes out of scope.
class InFlightRelease {
 public:
  explicit InFlightRelease(std::atomic<int>* in_flight)
      : in_flight_(in_flight) {}
  ~InFlightRelease() { in_flight_->fetch_sub(1); }

 private:
  std::atomic<int>* const in_flight_;
};

// The value of header `name`, or else of `alternative`, or "".
absl::string_view HeaderValue(const HttpRequest& request,
                              absl::string_view name,
                              absl::string_view alternative) {
  for (absl::string_view candidate : {name, alternative}) {
    const auto found = request.find(
        boost::beast::string_view(candidate.data(), candidate.size()));
    if (found != request.end()) {
      return absl::string_view(found->value().data(), found->value().size());
    }
  }
  return absl::string_view();
}

absl::string_view PathOf(absl::string_view target) {
  const size_t query = target.find('?');
  return query == absl::string_view::npos ? target : target.substr(0, query);
}

}  // namespace

HttpResponse JsonErrorResponse(http::status status, const std::string& name,
                               const std::string& message) {
  boost::json::object body;
  body["error"] = name;
  body["message"] = message;
  return JsonResponse(status, body);
}

HttpResponse JsonErrorResponse(const absl::Status& status) {
  return JsonErrorResponse(
      static_cast<http::status>(HttpStatusFor(status.code())),
      ErrorNameFor(status.code()), std::string(status.message()));
}

bool IsJsonContentType(const std::string& content_type) {
  absl::string_view media_type = content_type;
  const size_t semicolon = media_type.find(';');
  if (semicolon != absl::string_view::npos) {
    media_type = media_type.substr(0, semicolon);
  }
  return absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(media_type),
                                "application/json");
}

WebhookHandler::WebhookHandler(Ingestor* ingestor, SignatureVerifier* verifier,
                               Metrics* metrics,
                               OperatorEndpoints operator_endpoints)
    : ingestor_(ingestor),
      verifier_(verifier),
      metrics_(metrics),
      operator_endpoints_(std::move(operator_endpoints)) {}

void WebhookHandler::Handle(HttpRequest request, Respond respond) {
  const absl::string_view target(request.target().data(),
                                 request.target().size());
  const absl::string_view path = PathOf(target);
  if (request.method() == http::verb::get) {
    if (path == "/healthz") {
      respond(TextResponse(http::status::ok, "ok\n", "text/plain"));
      return;
    }
    if (path == "/readyz") {
      const bool ready =
          !operator_endpoints_.ready || operator_endpoints_.ready();
      respond(TextResponse(
          ready ? http::status::ok : http::status::service_unavailable,
          ready ? "ready\n" : "not ready\n", "text/plain"));
      return;
    }
    if (path == "/metrics" && operator_endpoints_.metrics) {
      respond(TextResponse(http::status::ok, operator_endpoints_.metrics(),
                           "text/plain; version=0.0.4"));
      return;
    }
  }
  if (path != kWebhookPath) {
    respond(JsonErrorResponse(http::status::not_found, "not_found",
                              absl::StrCat("no such path; deliveries go to ",
                                           "POST ", kWebhookPath)));
    return;
  }
  if (request.method() != http::verb::post) {
    HttpResponse response = JsonErrorResponse(
        http::status::method_not_allowed, "method_not_allowed",
        absl::StrCat(kWebhookPath, " accepts POST only"));
    response.set(http::field::allow, "POST");
    respond(std::move(response));
    return;
  }
  if (verifier_ != nullptr) {
    SignatureFailure failure;
    absl::Status verified = verifier_->Verify(
        HeaderValue(request, "X-Webhook-Signature", "X-Staffify-Signature"),
        HeaderValue(request, "X-Webhook-Timestamp", "X-Staffify-Timestamp"),
        request.body(), &failure);
    if (!verified.ok()) {
      // Neither the body nor anything the sender chose goes into the log.
      // TODO: name the sender's address, which needs the connection
      // (HttpServer's session) to hand it to Handle.
      spdlog::warn("delivery refused for its signature reason={}",
                   SignatureFailureName(failure));
      if (metrics_ != nullptr) {
        metrics_->CountDelivery("", Metrics::kUnauthenticated);
      }
      respond(JsonErrorResponse(verified));
      return;
    }
  }

  const auto content_type = request.find(http::field::content_type);
  if (content_type == request.end() ||
      !IsJsonContentType(std::string(content_type->value()))) {
    respond(JsonErrorResponse(
        http::status::unsupported_media_type, "unsupported_media_type",
        "deliveries must have Content-Type: application/json"));
    return;
  }

  // The signature (and the log) cover the bytes as sent; a compressed body
  // would need decoding first, which this endpoint does not offer.
  const auto encoding = request.find(http::field::content_encoding);
  if (encoding != request.end() &&
      !absl::EqualsIgnoreCase(
          absl::StripAsciiWhitespace(absl::string_view(
              encoding->value().data(), encoding->value().size())),
          "identity")) {
    respond(JsonErrorResponse(http::status::unsupported_media_type,
                              "unsupported_media_type",
                              "Content-Encoding is not supported; send the "
                              "body uncompressed"));
    return;
  }

  in_flight_.fetch_add(1);
  ingestor_->Ingest(
      std::move(request.body()), [this, respond = std::move(respond)](
                                     absl::StatusOr<IngestResult> result) {
        InFlightRelease release(&in_flight_);
        if (!result.ok()) {
          respond(JsonErrorResponse(result.status()));
          return;
        }
        if (result->conversion_problems.empty() && JsonPlain(result->id) &&
            JsonPlain(result->event_type)) {
          // The common answer, written directly: the same bytes as the
          // general path below, in a fraction of its time.
          respond(TextResponse(
              http::status::ok,
              absl::StrCat(R"({"status":")",
                           result->duplicate ? "duplicate" : "accepted",
                           R"(","sequence":)", result->sequence, R"(,"id":")",
                           result->id, R"(","event":")", result->event_type,
                           "\"}\n"),
              "application/json"));
          return;
        }
        boost::json::object body;
        body["status"] = result->duplicate ? "duplicate" : "accepted";
        body["sequence"] = result->sequence;
        body["id"] = result->id;
        body["event"] = result->event_type;
        if (!result->conversion_problems.empty()) {
          boost::json::array problems;
          for (const auto& problem : result->conversion_problems) {
            problems.push_back(MessageToJsonObject(problem));
          }
          body["conversionProblems"] = std::move(problems);
        }
        respond(JsonResponse(http::status::ok, body));
      });
}

}  // namespace fanout
