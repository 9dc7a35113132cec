#include "server/http/http_server.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "spdlog/spdlog.h"

namespace fanout {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

// One connection: read a request, let the handler answer it, write the
// answer, and loop while the client keeps the connection alive. Every step
// runs on the connection's strand; the handler's answer may come from any
// thread and is posted back onto it.
class Session : public std::enable_shared_from_this<Session> {
 public:
  // Read size while waiting for the next request on an idle connection.
  static constexpr size_t kIdleReadBytes = 1024;

  Session(tcp::socket socket, WebhookHandler* handler,
          std::shared_ptr<const HttpServerOptions> options, uint64_t id,
          std::shared_ptr<std::atomic<size_t>> open_connections)
      : stream_(std::move(socket)),
        handler_(handler),
        options_(std::move(options)),
        id_(id),
        open_connections_(std::move(open_connections)) {}

  ~Session() { open_connections_->fetch_sub(1); }

  void Start() {
    asio::dispatch(stream_.get_executor(),
                   [self = shared_from_this()] { self->Read(); });
  }

  // Answers 503 and closes; used when over the connection cap.
  void Refuse() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      self->Write(
          JsonErrorResponse(http::status::service_unavailable, "unavailable",
                            "too many connections; retry later"),
          /*keep_alive=*/false);
    });
  }

 private:
  void Read() {
    parser_.emplace();
    parser_->body_limit(options_->max_body_bytes);
    parser_->header_limit(static_cast<uint32_t>(options_->max_header_bytes));
    // The first byte of a keep-alive request may be long in coming; after
    // that the headers must arrive within the header timeout. So an idle
    // connection waits for one byte under the idle timeout before the
    // header read starts (unless pipelining already buffered the request).
    if (requests_served_ > 0 && buffer_.size() == 0) {
      stream_.expires_after(ToChrono(options_->idle_timeout));
      stream_.async_read_some(
          buffer_.prepare(kIdleReadBytes),
          [self = shared_from_this()](beast::error_code ec, size_t n) {
            self->buffer_.commit(n);
            if (ec == beast::error::timeout) {
              spdlog::debug("http idle connection closed conn={}", self->id_);
              return self->Close();
            }
            if (ec) return self->OnReadError(ec);
            self->ReadHeader();
          });
      return;
    }
    ReadHeader();
  }

  // Whether the request's Transfer-Encoding is one header saying "chunked"
  // and nothing else.
  static bool IsPlainChunked(const http::request_header<>& header) {
    if (header.count(http::field::transfer_encoding) != 1) return false;
    absl::string_view value(header[http::field::transfer_encoding].data(),
                            header[http::field::transfer_encoding].size());
    return absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(value),
                                  "chunked");
  }

  void ReadHeader() {
    stream_.expires_after(ToChrono(options_->header_timeout));
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) {
          self->OnReadHeader(ec);
        });
  }

  void OnReadHeader(beast::error_code ec) {
    if (ec) return OnReadError(ec);
    const auto& header = parser_->get();
    if (header.count(http::field::transfer_encoding) > 0 &&
        !IsPlainChunked(header)) {
      // Beast reads a body whose last coding is not chunked as "none", and
      // ignores codings before chunked; a proxy in front may read either
      // otherwise (request smuggling). Only the one coding Staffify uses is
      // accepted, and the connection is not reused.
      return Write(JsonErrorResponse(
                       http::status::bad_request, "bad_request",
                       "Transfer-Encoding other than a single \"chunked\" "
                       "is not supported"),
                   /*keep_alive=*/false);
    }
    if (beast::iequals(header[http::field::expect], "100-continue") &&
        !parser_->is_done()) {
      // The client waits for this before sending the body.
      continue_ = std::make_shared<http::response<http::empty_body>>(
          http::status::continue_, header.version());
      stream_.expires_after(ToChrono(options_->write_timeout));
      http::async_write(
          stream_, *continue_,
          [self = shared_from_this()](beast::error_code ec, size_t) {
            self->continue_.reset();
            if (ec) return self->Close();
            self->ReadBody();
          });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    // One deadline for the whole body, however it trickles in.
    stream_.expires_after(ToChrono(options_->body_timeout));
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->OnRead(ec);
                     });
  }

  void OnReadError(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::error::connection_reset ||
        ec == asio::error::operation_aborted) {
      return Close();
    }
    if (ec == beast::error::timeout) {
      // Beast has closed the socket already: there is no answering.
      spdlog::debug("http read timed out conn={} phase={}", id_,
                    parser_->is_header_done() ? "body" : "headers");
      return Close();
    }
    if (ec == http::error::body_limit) {
      return Write(JsonErrorResponse(
                       http::status::payload_too_large, "payload_too_large",
                       absl::StrCat("body larger than ",
                                    options_->max_body_bytes, " bytes")),
                   /*keep_alive=*/false);
    }
    if (ec == http::error::header_limit) {
      return Write(
          JsonErrorResponse(
              http::status::request_header_fields_too_large, "header_too_large",
              absl::StrCat("request line and headers larger than ",
                           options_->max_header_bytes, " bytes")),
          /*keep_alive=*/false);
    }
    spdlog::debug("http bad request conn={} error={:?}", id_, ec.message());
    Write(JsonErrorResponse(
              http::status::bad_request, "bad_request",
              absl::StrCat("malformed HTTP request: ", ec.message())),
          /*keep_alive=*/false);
  }

  void OnRead(beast::error_code ec) {
    if (ec) return OnReadError(ec);
    ++requests_served_;
    stream_.expires_never();  // The handler has no deadline of its own yet.

    HttpRequest request = parser_->release();
    const bool keep_alive = request.keep_alive();
    const unsigned version = request.version();
    // The handler may destroy this callback well after calling it, on
    // another thread (the event log's writer), even after the io_context is
    // gone. So the call hands its reference to the session over to the
    // posted write: the session, its socket and its timer are released only
    // by the io_context's handlers, or with them when it is destroyed.
    handler_->Handle(
        std::move(request), [self = shared_from_this(), keep_alive,
                             version](HttpResponse response) mutable {
          response.version(version);
          const auto executor = self->stream_.get_executor();
          asio::post(executor, [self = std::move(self), keep_alive,
                                response = std::move(response)]() mutable {
            self->Write(std::move(response), keep_alive);
          });
        });
  }

  void Write(HttpResponse response, bool keep_alive) {
    response.keep_alive(keep_alive);
    response_ = std::make_shared<HttpResponse>(std::move(response));
    stream_.expires_after(ToChrono(options_->write_timeout));
    http::async_write(
        stream_, *response_,
        [self = shared_from_this(), keep_alive](beast::error_code ec, size_t) {
          self->OnWrite(ec, keep_alive);
        });
  }

  void OnWrite(beast::error_code ec, bool keep_alive) {
    response_.reset();
    if (ec) {
      spdlog::debug("http write failed conn={} error={:?}", id_, ec.message());
      return Close();
    }
    if (!keep_alive) return Close();
    Read();
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<HttpResponse> response_;
  std::shared_ptr<http::response<http::empty_body>> continue_;
  WebhookHandler* const handler_;
  const std::shared_ptr<const HttpServerOptions> options_;
  const uint64_t id_;
  uint64_t requests_served_ = 0;
  std::shared_ptr<std::atomic<size_t>> open_connections_;
};

}  // namespace

HttpServer::HttpServer(asio::io_context* io_context, WebhookHandler* handler,
                       HttpServerOptions options)
    : io_context_(io_context),
      handler_(handler),
      options_(std::make_shared<const HttpServerOptions>(std::move(options))),
      acceptor_(asio::make_strand(*io_context)),
      accept_retry_(acceptor_.get_executor()),
      open_connections_(std::make_shared<std::atomic<size_t>>(0)) {}

HttpServer::~HttpServer() = default;

absl::Status HttpServer::Start() {
  beast::error_code ec;
  tcp::resolver resolver(*io_context_);
  const auto resolved = resolver.resolve(
      options_->address, std::to_string(options_->port),
      tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || resolved.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad HTTP address \"", options_->address,
                     "\": ", ec ? ec.message() : "no address"));
  }
  const tcp::endpoint endpoint = *resolved.begin();
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for HTTP on ", options_->address, ":",
                     options_->port, ": ", ec.message()));
  }
  port_ = acceptor_.local_endpoint().port();
  Accept();
  return absl::OkStatus();
}

void HttpServer::Stop() {
  asio::dispatch(acceptor_.get_executor(), [this] {
    beast::error_code ignored;
    acceptor_.close(ignored);
    accept_retry_.cancel();
  });
}

void HttpServer::Accept() {
  acceptor_.async_accept(
      asio::make_strand(*io_context_),
      [this](beast::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || !acceptor_.is_open()) {
          return;
        }
        if (ec) {
          // Typically EMFILE: wait for descriptors to free up rather than
          // spinning on the error.
          spdlog::warn("http accept failed error={:?}", ec.message());
          accept_retry_.expires_after(std::chrono::milliseconds(50));
          accept_retry_.async_wait([this](beast::error_code ec) {
            if (!ec) Accept();
          });
          return;
        } else {
          static std::atomic<uint64_t> next_id{1};
          const size_t open = open_connections_->fetch_add(1) + 1;
          auto session =
              std::make_shared<Session>(std::move(socket), handler_, options_,
                                        next_id++, open_connections_);
          if (open > options_->max_connections) {
            session->Refuse();
          } else {
            session->Start();
          }
        }
        Accept();
      });
}

}  // namespace fanout
