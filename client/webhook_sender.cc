#include "client/webhook_sender.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace fanout {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

absl::StatusOr<HttpUrl> ParseHttpUrl(const std::string& url) {
  constexpr absl::string_view kScheme = "http://";
  if (!absl::StartsWith(url, kScheme)) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected an http:// URL, got \"", url, "\""));
  }
  const std::string rest = url.substr(kScheme.size());
  const size_t slash = rest.find('/');
  const std::string authority = rest.substr(0, slash);
  HttpUrl parsed;
  parsed.target = slash == std::string::npos ? "/" : rest.substr(slash);
  const size_t colon = authority.rfind(':');
  if (colon == std::string::npos) {
    parsed.host = authority;
    parsed.port = "80";
  } else {
    parsed.host = authority.substr(0, colon);
    parsed.port = authority.substr(colon + 1);
  }
  if (parsed.host.empty() || parsed.port.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no host or port in \"", url, "\""));
  }
  return parsed;
}

class WebhookSender::Connection {
 public:
  Connection() : stream_(io_context_) {}

  asio::io_context io_context_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
};

WebhookSender::WebhookSender(HttpUrl url, absl::Duration timeout)
    : url_(std::move(url)), timeout_(timeout) {}

WebhookSender::~WebhookSender() = default;

absl::StatusOr<HttpAnswer> WebhookSender::PostJson(const std::string& body) {
  return Send("POST", body,
              {{"Content-Type", "application/json"},
               {"User-Agent", "fanout-send/1.0"}});
}

absl::StatusOr<HttpAnswer> WebhookSender::Send(
    const std::string& method, const std::string& body,
    const std::map<std::string, std::string>& headers) {
  http::request<http::string_body> request(http::string_to_verb(method),
                                           url_.target, 11);
  request.set(http::field::host, url_.host);
  for (const auto& [name, value] : headers) request.set(name, value);
  request.body() = body;
  request.prepare_payload();

  // A kept-alive connection may have been closed by the server while idle;
  // that failure says nothing about the request, so it is sent once more on
  // a new connection.
  const bool reused = connection_ != nullptr;
  absl::StatusOr<HttpAnswer> answer = SendOnce(request);
  if (!answer.ok() && reused &&
      answer.status().code() == absl::StatusCode::kUnavailable) {
    answer = SendOnce(request);
  }
  return answer;
}

absl::StatusOr<HttpAnswer> WebhookSender::SendOnce(
    const http::request<http::string_body>& request) {
  // Asynchronous operations run to completion on a private io_context, so
  // that the stream's timer bounds every step; blocking socket calls would
  // ignore it.
  const auto timeout = absl::ToChronoNanoseconds(timeout_);
  beast::error_code ec;
  if (connection_ == nullptr) {
    auto connection = std::make_unique<Connection>();
    tcp::resolver resolver(connection->io_context_);
    auto endpoints = resolver.resolve(url_.host, url_.port, ec);
    if (!ec) {
      connection->stream_.expires_after(timeout);
      connection->stream_.async_connect(
          endpoints,
          [&ec](beast::error_code e, const tcp::endpoint&) { ec = e; });
      connection->io_context_.run();
      connection->io_context_.restart();
    }
    if (ec) {
      return absl::UnavailableError(absl::StrCat(
          "cannot connect to ", url_.host, ":", url_.port, ": ", ec.message()));
    }
    connection_ = std::move(connection);
  }

  http::response_parser<http::string_body> parser;
  parser.body_limit(64 << 20);
  beast::tcp_stream& stream = connection_->stream_;
  stream.expires_after(timeout);
  http::async_write(stream, request, [&](beast::error_code e, size_t) {
    ec = e;
    if (ec) return;
    stream.expires_after(timeout);
    http::async_read(stream, connection_->buffer_, parser,
                     [&ec](beast::error_code e, size_t) { ec = e; });
  });
  connection_->io_context_.run();
  connection_->io_context_.restart();

  if (ec) {
    connection_.reset();
    if (ec == beast::error::timeout) {
      return absl::DeadlineExceededError("no answer in time");
    }
    return absl::UnavailableError(
        absl::StrCat("HTTP exchange failed: ", ec.message()));
  }

  http::response<http::string_body> response = parser.release();
  HttpAnswer answer;
  answer.status = response.result_int();
  answer.content_type = std::string(response[http::field::content_type]);
  answer.body = std::move(response.body());
  if (!response.keep_alive()) connection_.reset();
  return answer;
}

}  // namespace fanout
