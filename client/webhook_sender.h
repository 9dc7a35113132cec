// A small blocking HTTP/1.1 client that POSTs webhook deliveries to the
// ingest endpoint over one keep-alive connection. Used by fanout-send and by
// the end-to-end tests.

#ifndef FANOUT_CLIENT_WEBHOOK_SENDER_H_
#define FANOUT_CLIENT_WEBHOOK_SENDER_H_

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace fanout {

// An HTTP answer.
struct HttpAnswer {
  int status = 0;
  std::string content_type;
  std::string body;
};

// A parsed http://host:port/path URL.
struct HttpUrl {
  std::string host;
  std::string port;
  std::string target;  // path and query, at least "/"
};

// Parses an http:// URL; https is not supported. Returns InvalidArgument.
absl::StatusOr<HttpUrl> ParseHttpUrl(const std::string& url);

class WebhookSender {
 public:
  // `timeout` bounds connecting and each read and write.
  explicit WebhookSender(HttpUrl url,
                         absl::Duration timeout = absl::Seconds(10));
  ~WebhookSender();

  WebhookSender(const WebhookSender&) = delete;
  WebhookSender& operator=(const WebhookSender&) = delete;

  // Sends one request and waits for its answer, connecting (again) when
  // needed. `headers` are added as given. Returns Unavailable when the
  // server cannot be reached and DeadlineExceeded on timeout; any HTTP
  // status is a successful call. Not thread-safe.
  absl::StatusOr<HttpAnswer> Send(
      const std::string& method, const std::string& body,
      const std::map<std::string, std::string>& headers);

  // Send("POST", body, {Content-Type: application/json, User-Agent}).
  absl::StatusOr<HttpAnswer> PostJson(const std::string& body);

 private:
  class Connection;

  absl::StatusOr<HttpAnswer> SendOnce(
      const boost::beast::http::request<boost::beast::http::string_body>&
          request);

  const HttpUrl url_;
  const absl::Duration timeout_;
  std::unique_ptr<Connection> connection_;
};

}  // namespace fanout

#endif  // FANOUT_CLIENT_WEBHOOK_SENDER_H_
