// The HTTP/1.1 front end: accepts connections, reads requests with
// Boost.Beast (keep-alive, pipelining answered in order, a deadline on every
// read and write, a cap on header and body sizes and on open connections),
// and hands each complete request to the WebhookHandler.
//
// Deadlines are whole-phase, not per read: a client that sends one byte at
// a time gains nothing by it. A request's line and headers must arrive within
// header_timeout of its first byte (of the connection, for the first
// request), its body within body_timeout of the end of the headers.

#ifndef FANOUT_SERVER_HTTP_HTTP_SERVER_H_
#define FANOUT_SERVER_HTTP_HTTP_SERVER_H_

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/http/webhook_handler.h"

namespace fanout {

struct HttpServerOptions {
  std::string address = "127.0.0.1";
  // 0 picks a free port; see HttpServer::port().
  uint16_t port = 8080;
  // Largest request body accepted; larger ones are answered 413.
  size_t max_body_bytes = 1 << 20;
  // Largest request line plus headers accepted; larger ones get 431.
  size_t max_header_bytes = 16 << 10;
  // Time allowed to read a request's line and headers, from its first byte
  // (for a connection's first request, from the accept).
  absl::Duration header_timeout = absl::Seconds(10);
  // Time allowed to read a request's body, from the end of its headers.
  absl::Duration body_timeout = absl::Seconds(30);
  // Time allowed to write one response.
  absl::Duration write_timeout = absl::Seconds(30);
  // Time an idle keep-alive connection stays open.
  absl::Duration idle_timeout = absl::Seconds(60);
  // Connections open at once; more are answered 503 and closed.
  size_t max_connections = 1024;
};

class HttpServer {
 public:
  // `io_context` and `handler` must outlive the server.
  HttpServer(boost::asio::io_context* io_context, WebhookHandler* handler,
             HttpServerOptions options);
  ~HttpServer();

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts accepting on the io_context's threads. Returns
  // InvalidArgument for a bad address, Unavailable when the port is taken.
  absl::Status Start();

  // Stops accepting new connections. Connections already open finish their
  // current request. Thread-safe.
  void Stop();

  // The bound port (useful with port 0). Valid after Start succeeded.
  uint16_t port() const { return port_; }

  size_t open_connections() const { return open_connections_->load(); }

 private:
  void Accept();

  boost::asio::io_context* const io_context_;
  WebhookHandler* const handler_;
  // Shared with sessions, which may outlive the server object briefly.
  const std::shared_ptr<const HttpServerOptions> options_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer accept_retry_;
  uint16_t port_ = 0;
  std::shared_ptr<std::atomic<size_t>> open_connections_;
};

}  // namespace fanout

#endif  // FANOUT_SERVER_HTTP_HTTP_SERVER_H_
