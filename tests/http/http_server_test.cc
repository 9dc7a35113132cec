// Tests for HttpServer over real loopback connections: keep-alive and
// pipelining, the size limits, malformed requests, the request timeout, the
// connection cap and Stop. Well-behaved clients use WebhookSender; tests
// that need control over the bytes on the wire use RawConnection.

#include "server/http/http_server.h"

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/webhook_sender.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/convert/event_converter.h"
#include "server/fanout/event_hub.h"
#include "server/http/webhook_handler.h"
#include "server/ingest/ingestor.h"
#include "tests/util/examples.h"
#include "tests/util/hub_log.h"

namespace fanout {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using HttpClientResponse = http::response<http::string_body>;

// Bounds every client operation, so that a server that never answers fails
// the test instead of hanging it.
constexpr std::chrono::seconds kClientTimeout{5};

// A delivery of type test.ping with the given id.
std::string Ping(const std::string& id) {
  return absl::StrCat(R"({"id": ")", id, R"(", "event": "test.ping", )",
                      R"("timestamp": "2026-03-01T12:00:00.000Z", )",
                      R"("data": {"message": "hello"}})");
}

// The bytes of a complete POST /webhooks request carrying `body`.
std::string PostRequest(const std::string& body) {
  return absl::StrCat(
      "POST /webhooks HTTP/1.1\r\n"
      "Host: 127.0.0.1\r\n"
      "Content-Type: application/json\r\n"
      "Content-Length: ",
      body.size(), "\r\n\r\n", body);
}

// Parses `text` as JSON; records a failure and returns null when it is not.
boost::json::value ParseJson(const std::string& text) {
  boost::json::error_code ec;
  boost::json::value value = boost::json::parse(text, ec);
  if (ec) {
    ADD_FAILURE() << "not JSON (" << ec.message() << "): " << text;
    return nullptr;
  }
  return value;
}

// The string member `key` of the JSON object in `text`, or "".
std::string StringMember(const std::string& text, const std::string& key) {
  const boost::json::value value = ParseJson(text);
  if (!value.is_object()) return "";
  const boost::json::value* member = value.get_object().if_contains(key);
  if (member == nullptr || !member->is_string()) return "";
  return std::string(member->get_string());
}

// The "sequence" member of the JSON object in `text`, or 0.
uint64_t SequenceOf(const std::string& text) {
  const boost::json::value value = ParseJson(text);
  if (!value.is_object()) return 0;
  const boost::json::value* member = value.get_object().if_contains("sequence");
  if (member == nullptr) return 0;
  boost::json::error_code ec;
  const uint64_t sequence = member->to_number<uint64_t>(ec);
  return ec ? 0 : sequence;
}

int64_t MillisecondsSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() -
                                                               start)
      .count();
}

// Passes for a client operation that succeeded; otherwise says how it
// failed.
::testing::AssertionResult Succeeded(beast::error_code ec) {
  if (!ec) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << ec.message();
}

// True for the ways a peer's close shows up on a read: a FIN, or a reset
// when the server closed with request bytes it had not read.
bool IsClosed(beast::error_code ec) {
  return ec == asio::error::eof || ec == asio::error::connection_reset;
}

// One client connection with control over every byte sent. Each call runs
// the connection's own io_context until the operation completes or
// kClientTimeout passes (which reports beast::error::timeout).
class RawConnection {
 public:
  RawConnection() : stream_(io_context_) {}

  beast::error_code Connect(uint16_t port) {
    beast::error_code result;
    stream_.expires_after(kClientTimeout);
    stream_.async_connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
        [&result](beast::error_code ec) { result = ec; });
    Run();
    return result;
  }

  beast::error_code Write(const std::string& bytes) {
    beast::error_code result;
    stream_.expires_after(kClientTimeout);
    asio::async_write(stream_, asio::buffer(bytes),
                      [&result](beast::error_code ec, size_t) { result = ec; });
    Run();
    return result;
  }

  // Reads one response. Bytes after it stay buffered for the next Read.
  beast::error_code Read(HttpClientResponse* response) {
    beast::error_code result;
    stream_.expires_after(kClientTimeout);
    http::async_read(stream_, buffer_, *response,
                     [&result](beast::error_code ec, size_t) { result = ec; });
    Run();
    return result;
  }

  // Waits for the server to close the connection and returns how the read
  // ended: eof or connection_reset when it closed, timeout when it did not,
  // success when it sent more bytes instead.
  beast::error_code WaitForClose() {
    if (buffer_.size() > 0) return {};
    beast::error_code result;
    stream_.expires_after(kClientTimeout);
    stream_.async_read_some(
        buffer_.prepare(4096),
        [&result](beast::error_code ec, size_t) { result = ec; });
    Run();
    return result;
  }

  // True if the server has neither closed the connection nor sent anything
  // on it; does not wait.
  bool IsOpenAndQuiet() {
    if (buffer_.size() > 0) return false;
    tcp::socket& socket = stream_.socket();
    beast::error_code ec;
    socket.non_blocking(true, ec);
    char byte;
    socket.receive(asio::buffer(&byte, 1), tcp::socket::message_peek, ec);
    beast::error_code ignored;
    socket.non_blocking(false, ignored);
    return ec == asio::error::would_block;
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

 private:
  void Run() {
    io_context_.restart();
    io_context_.run();
  }

  asio::io_context io_context_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
};

class HttpServerTest : public ::testing::Test {
 protected:
  static constexpr size_t kMaxBodyBytes = 1024;
  static constexpr size_t kMaxHeaderBytes = 2048;

  void SetUp() override {
    for (int i = 0; i < 2; ++i) {
      threads_.emplace_back([this] { io_context_.run(); });
    }
    HttpServerOptions options;
    options.port = 0;
    options.max_body_bytes = kMaxBodyBytes;
    options.max_header_bytes = kMaxHeaderBytes;
    ASSERT_NO_FATAL_FAILURE(StartServer(options, &server_));
  }

  void TearDown() override {
    for (const auto& server : servers_) server->Stop();
    work_.reset();
    io_context_.stop();
    for (std::thread& thread : threads_) thread.join();
  }

  // Starts another server on the fixture's io_context with `options`
  // (on port 0) and stores it in *server.
  void StartServer(HttpServerOptions options, HttpServer** server) {
    options.address = "127.0.0.1";
    options.port = 0;
    servers_.push_back(
        std::make_unique<HttpServer>(&io_context_, &handler_, options));
    const absl::Status started = servers_.back()->Start();
    ASSERT_TRUE(started.ok()) << started;
    ASSERT_NE(servers_.back()->port(), 0);
    *server = servers_.back().get();
  }

  static std::unique_ptr<WebhookSender> SenderFor(const HttpServer& server) {
    return std::make_unique<WebhookSender>(
        HttpUrl{"127.0.0.1", std::to_string(server.port()), "/webhooks"},
        absl::Seconds(5));
  }

  // Opens a raw connection to `server`.
  static void Connect(const HttpServer& server, RawConnection* connection) {
    ASSERT_TRUE(Succeeded(connection->Connect(server.port())));
  }

  // Sends Ping(id) on `connection` and expects a 200 answer with `sequence`
  // that keeps the connection open.
  static void PostPing(RawConnection* connection, const std::string& id,
                       uint64_t sequence) {
    ASSERT_TRUE(Succeeded(connection->Write(PostRequest(Ping(id)))));
    HttpClientResponse response;
    ASSERT_TRUE(Succeeded(connection->Read(&response)));
    EXPECT_EQ(response.result(), http::status::ok) << response.body();
    EXPECT_TRUE(response.keep_alive());
    EXPECT_EQ(StringMember(response.body(), "id"), id);
    EXPECT_EQ(SequenceOf(response.body()), sequence);
  }

  // Expects `response` to be `status` with a JSON error body named `name`,
  // and the server to close the connection after it.
  static void ExpectErrorThenClose(RawConnection* connection,
                                   const HttpClientResponse& response,
                                   http::status status,
                                   const std::string& name) {
    EXPECT_EQ(response.result(), status) << response.body();
    EXPECT_EQ(response[http::field::content_type], "application/json");
    EXPECT_EQ(StringMember(response.body(), "error"), name);
    EXPECT_FALSE(StringMember(response.body(), "message").empty());
    EXPECT_FALSE(response.keep_alive());
    const beast::error_code closed = connection->WaitForClose();
    EXPECT_TRUE(IsClosed(closed)) << closed.message();
  }

  // Destroyed last: the event log's writer thread answers deliveries by
  // posting to the io_context until hub_log_ is destroyed.
  asio::io_context io_context_;

  EventConverter converter_;
  testing::HubLog hub_log_;
  EventHub& hub_ = *hub_log_.hub();
  Ingestor ingestor_{&converter_, hub_log_.store()};
  WebhookHandler handler_{&ingestor_, /*verifier=*/nullptr};

  std::optional<asio::executor_work_guard<asio::io_context::executor_type>>
      work_{io_context_.get_executor()};
  std::vector<std::thread> threads_;
  // Servers are destroyed after the io_context threads have stopped.
  std::vector<std::unique_ptr<HttpServer>> servers_;
  HttpServer* server_ = nullptr;
};

TEST_F(HttpServerTest, AcceptsDeliveryFromWebhookSender) {
  absl::StatusOr<std::string> example = testing::ReadExample("ticket.created");
  ASSERT_TRUE(example.ok()) << example.status();

  const absl::StatusOr<HttpAnswer> answer =
      SenderFor(*server_)->PostJson(*example);

  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 200) << answer->body;
  EXPECT_EQ(answer->content_type, "application/json");
  EXPECT_EQ(StringMember(answer->body, "status"), "accepted");
  EXPECT_EQ(StringMember(answer->body, "event"), "ticket.created");
  EXPECT_EQ(SequenceOf(answer->body), 1u);
  EXPECT_EQ(hub_.last_sequence(), 1u);
}

TEST_F(HttpServerTest, HandlerErrorsReachTheClient) {
  std::unique_ptr<WebhookSender> sender = SenderFor(*server_);

  const absl::StatusOr<HttpAnswer> not_allowed = sender->Send("GET", "", {});
  ASSERT_TRUE(not_allowed.ok()) << not_allowed.status();
  EXPECT_EQ(not_allowed->status, 405);
  EXPECT_EQ(StringMember(not_allowed->body, "error"), "method_not_allowed");

  const absl::StatusOr<HttpAnswer> bad = sender->PostJson("[1, 2, 3]");
  ASSERT_TRUE(bad.ok()) << bad.status();
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(StringMember(bad->body, "error"), "invalid_argument");
  EXPECT_EQ(hub_.last_sequence(), 0u);
}

TEST_F(HttpServerTest, KeepAliveAnswersSeveralRequestsOnOneConnection) {
  RawConnection connection;
  ASSERT_NO_FATAL_FAILURE(Connect(*server_, &connection));

  for (uint64_t i = 1; i <= 3; ++i) {
    SCOPED_TRACE(i);
    ASSERT_NO_FATAL_FAILURE(
        PostPing(&connection, absl::StrCat("wh_keepalive-", i), i));
  }

  EXPECT_TRUE(connection.IsOpenAndQuiet());
  EXPECT_EQ(server_->open_connections(), 1u);
  EXPECT_EQ(hub_.last_sequence(), 3u);
}

TEST_F(HttpServerTest, ExpectContinueIsAnsweredBeforeTheBody) {
  RawConnection connection;
  ASSERT_NO_FATAL_FAILURE(Connect(*server_, &connection));
  const std::string body = Ping("wh_continue-1");
  ASSERT_TRUE(Succeeded(connection.Write(
      absl::StrCat("POST /webhooks HTTP/1.1\r\nHost: x\r\n"
                   "Content-Type: application/json\r\nExpect: 100-continue\r\n"
                   "Content-Length: ",
                   body.size(), "\r\n\r\n"))));

  HttpClientResponse interim;
  ASSERT_TRUE(Succeeded(connection.Read(&interim)));
  EXPECT_EQ(interim.result(), http::status::continue_);

  ASSERT_TRUE(Succeeded(connection.Write(body)));
  HttpClientResponse response;
  ASSERT_TRUE(Succeeded(connection.Read(&response)));
  EXPECT_EQ(response.result(), http::status::ok) << response.body();
  EXPECT_EQ(SequenceOf(response.body()), 1u);
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  RawConnection connection;
  ASSERT_NO_FATAL_FAILURE(Connect(*server_, &connection));

  ASSERT_TRUE(Succeeded(connection.Write(absl::StrCat(
      PostRequest(Ping("wh_pipe-1")), PostRequest(Ping("wh_pipe-2")),
      PostRequest(Ping("wh_pipe-3"))))));

  for (uint64_t i = 1; i <= 3; ++i) {
    SCOPED_TRACE(i);
    HttpClientResponse response;
    ASSERT_TRUE(Succeeded(connection.Read(&response)));
    EXPECT_EQ(response.result(), http::status::ok) << response.body();
    EXPECT_TRUE(response.keep_alive());
    EXPECT_EQ(StringMember(response.body(), "id"), absl::StrCat("wh_pipe-", i));
    EXPECT_EQ(SequenceOf(response.body()), i);
  }
  EXPECT_TRUE(connection.IsOpenAndQuiet());
}

TEST_F(HttpServerTest, ConnectionCloseRequestIsAnsweredThenClosed) {
  RawConnection connection;
  ASSERT_NO_FATAL_FAILURE(Connect(*server_, &connection));
  const std::string body = Ping("wh_close-1");

  ASSERT_TRUE(Succeeded(connection.Write(
      absl::StrCat("POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Connection: close\r\nContent-Type: application/json\r\n"
                   "Content-Length: ",
                   body.size(), "\r\n\r\n", body))));

  HttpClientResponse response;
  ASSERT_TRUE(Succeeded(connection.Read(&response)));
  EXPECT_EQ(response.result(), http::status::ok) << response.body();
  EXPECT_FALSE(response.keep_alive());
  EXPECT_EQ(connection.WaitForClose(), asio::error::eof);
}

TEST_F(HttpServerTest, DeclaredBodyOverLimitIsPayloadTooLarge) {
  RawConnection connection;
  ASSERT_NO_FATAL_FAILURE(Connect(*server_, &connection));

  // Only the header is sent: the server must answer from Content-Length
  // alone, without waiting for a body it will not accept.
  ASSERT_TRUE(Succeeded(connection.Write(
      absl::StrCat("POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Content-Type: application/json\r\nContent-Length: ",
                   kMaxBodyBytes + 1, "\r\n\r\n"))));

  HttpClientResponse response;
  ASSERT_TRUE(Succeeded(connection.Read(&response)));
  ExpectErrorThenClose(&connection, response, http::status::payload_too_large,
                       "payload_too_large");
  EXPECT_EQ(hub_.last_sequence(), 0u);
}

TEST_F(HttpServerTest, BodyAtLimitIsAccepted) {
  std::string body = Ping("wh_limit-1");
  ASSERT_LT(body.size(), kMaxBodyBytes);
  // Trailing whitespace is still valid JSON.
  body.append(kMaxBodyBytes - body.size(), ' ');

  const absl::StatusOr<HttpAnswer> answer = SenderFor(*server_)->PostJson(body);

  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 200) << answer->body;
  EXPECT_EQ(SequenceOf(answer->body), 1u);
}

TEST_F(HttpServerTest, ChunkedBodyWithinLimitIsAccepted) {
  RawConnection connection;
  ASSERT_NO_FATAL_FAILURE(Connect(*server_, &connection));
  const std::string body = Ping("wh_chunked-1");
  const size_t half = body.size() / 2;

  ASSERT_TRUE(Succeeded(connection.Write(absl::StrCat(
      "POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
      absl::Hex(half), "\r\n", body.substr(0, half), "\r\n",
      absl::Hex(body.size() - half), "\r\n", body.substr(half), "\r\n",
      "0\r\n\r\n"))));

  HttpClientResponse response;
  ASSERT_TRUE(Succeeded(connection.Read(&response)));
  EXPECT_EQ(response.result(), http::status::ok) << response.body();
  EXPECT_EQ(StringMember(response.body(), "id"), "wh_chunked-1");
  EXPECT_EQ(hub_.last_sequence(), 1u);
}

TEST_F(HttpServerTest, ChunkedBodyGrowingPastLimitIsPayloadTooLarge) {
  RawConnection connection;
  ASSERT_NO_FATAL_FAILURE(Connect(*server_, &connection));

  // A first chunk within the limit, then the size line of a chunk that
  // would take the body past it. Its data is not sent: the size alone
  // must be enough for the server to refuse.
  const size_t first = kMaxBodyBytes - 24;
  ASSERT_TRUE(Succeeded(connection.Write(absl::StrCat(
      "POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
      absl::Hex(first), "\r\n", std::string(first, ' '), "\r\n", absl::Hex(100),
      "\r\n"))));

  HttpClientResponse response;
  ASSERT_TRUE(Succeeded(connection.Read(&response)));
  ExpectErrorThenClose(&connection, response, http::status::payload_too_large,
                       "payload_too_large");
  EXPECT_EQ(hub_.last_sequence(), 0u);
}

TEST_F(HttpServerTest, ContentLengthWithTransferEncodingIsBadRequest) {
  // A front proxy that honours the other header would see another request
  // boundary than this server (request smuggling): refuse either order.
  const std::string body = Ping("wh_smuggle-1");
  const std::string chunked =
      absl::StrCat(absl::Hex(body.size()), "\r\n", body, "\r\n0\r\n\r\n");
  for (const std::string& headers :
       {absl::StrCat("Content-Length: ", chunked.size(),
                     "\r\nTransfer-Encoding: chunked\r\n"),
        absl::StrCat("Transfer-Encoding: chunked\r\nContent-Length: ",
                     chunked.size(), "\r\n")}) {
    SCOPED_TRACE(headers);
    RawConnection connection;
    ASSERT_NO_FATAL_FAILURE(Connect(*server_, &connection));
    ASSERT_TRUE(Succeeded(connection.Write(
        absl::StrCat("POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/json\r\n",
                     headers, "\r\n", chunked))));

    HttpClientResponse response;
    ASSERT_TRUE(Succeeded(connection.Read(&response)));
    ExpectErrorThenClose(&connection, response, http::status::bad_request,
                         "bad_request");
  }
  EXPECT_EQ(hub_.last_sequence(), 0u);
}

TEST_F(HttpServerTest, TransferEncodingOtherThanChunkedIsBadRequest) {
  // Beast would read these as a request with no body, or ignore the codings
  // before "chunked", and the bytes after the headers would then be taken
  // for a request of their own: one a proxy in front never saw.
  const std::string smuggled =
      absl::StrCat("POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Content-Type: application/json\r\nContent-Length: ",
                   Ping("wh_te-smuggled").size(), "\r\n\r\n",
                   Ping("wh_te-smuggled"));
  const std::string chunked = absl::StrCat(absl::Hex(smuggled.size()), "\r\n",
                                           smuggled, "\r\n0\r\n\r\n");
  for (const std::string& headers :
       {std::string("Transfer-Encoding: identity\r\n"),
        std::string("Transfer-Encoding: xchunked\r\n"),
        std::string("Transfer-Encoding: chunked, identity\r\n"),
        std::string("Transfer-Encoding: gzip, chunked\r\n"),
        std::string("Transfer-Encoding: chunked\r\n"
                    "Transfer-Encoding: chunked\r\n")}) {
    SCOPED_TRACE(headers);
    for (const std::string* body : {&smuggled, &chunked}) {
      RawConnection connection;
      ASSERT_NO_FATAL_FAILURE(Connect(*server_, &connection));
      ASSERT_TRUE(Succeeded(connection.Write(
          absl::StrCat("POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       "Content-Type: application/json\r\n",
                       headers, "\r\n", *body))));

      HttpClientResponse response;
      ASSERT_TRUE(Succeeded(connection.Read(&response)));
      ExpectErrorThenClose(&connection, response, http::status::bad_request,
                           "bad_request");
    }
  }
  EXPECT_EQ(hub_.last_sequence(), 0u);
}

TEST_F(HttpServerTest, ConflictingContentLengthsAreBadRequest) {
  const std::string body = Ping("wh_two-lengths-1");
  RawConnection connection;
  ASSERT_NO_FATAL_FAILURE(Connect(*server_, &connection));
  ASSERT_TRUE(Succeeded(connection.Write(
      absl::StrCat("POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Content-Type: application/json\r\nContent-Length: ",
                   body.size(), "\r\nContent-Length: ", body.size() - 1,
                   "\r\n\r\n", body))));

  HttpClientResponse response;
  ASSERT_TRUE(Succeeded(connection.Read(&response)));
  ExpectErrorThenClose(&connection, response, http::status::bad_request,
                       "bad_request");
  EXPECT_EQ(hub_.last_sequence(), 0u);
}

TEST_F(HttpServerTest, ChunkSizeOverTheLimitIsRefusedBeforeItsData) {
  RawConnection connection;
  ASSERT_NO_FATAL_FAILURE(Connect(*server_, &connection));

  // One chunk announced at a gigabyte: the size line alone must do.
  ASSERT_TRUE(Succeeded(connection.Write(
      "POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
      "40000000\r\n{\"id\": ")));

  HttpClientResponse response;
  ASSERT_TRUE(Succeeded(connection.Read(&response)));
  ExpectErrorThenClose(&connection, response, http::status::payload_too_large,
                       "payload_too_large");
  EXPECT_EQ(hub_.last_sequence(), 0u);
}

TEST_F(HttpServerTest, HostileJsonIsRefusedBeforeAnythingIsStored) {
  std::unique_ptr<WebhookSender> sender = SenderFor(*server_);
  const std::string envelope_start =
      R"({"id": "wh_hostile-1", "event": "test.ping", )"
      R"("timestamp": "2026-03-01T12:00:00Z", )";
  const std::pair<std::string, std::string> cases[] = {
      {absl::StrCat(envelope_start, "\"data\": {\"message\": \"caf\xe9\"}}"),
       "not valid JSON"},
      {absl::StrCat(envelope_start,
                    R"("data": {"message": "a", "message": "b"}})"),
       "duplicate key \"data.message\""},
      {absl::StrCat(envelope_start, R"("data": {"a": )", std::string(40, '['),
                    std::string(40, ']'), "}}"),
       "too deep"},
  };
  for (const auto& [body, reason] : cases) {
    SCOPED_TRACE(reason);
    const absl::StatusOr<HttpAnswer> answer = sender->PostJson(body);
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_EQ(answer->status, 400) << answer->body;
    EXPECT_EQ(StringMember(answer->body, "error"), "invalid_argument");
    EXPECT_THAT(StringMember(answer->body, "message"),
                ::testing::HasSubstr(reason));
  }
  EXPECT_EQ(hub_.last_sequence(), 0u);
  EXPECT_EQ(hub_log_.log()->range().last, 0u);
}

TEST_F(HttpServerTest, OversizedHeadersAreRejected) {
  RawConnection connection;
  ASSERT_NO_FATAL_FAILURE(Connect(*server_, &connection));
  const std::string body = Ping("wh_header-1");

  ASSERT_TRUE(Succeeded(connection.Write(absl::StrCat(
      "POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      "X-Padding: ",
      std::string(2 * kMaxHeaderBytes, 'a'),
      "\r\nContent-Type: application/json\r\nContent-Length: ", body.size(),
      "\r\n\r\n", body))));

  HttpClientResponse response;
  ASSERT_TRUE(Succeeded(connection.Read(&response)));
  ExpectErrorThenClose(&connection, response,
                       http::status::request_header_fields_too_large,
                       "header_too_large");
  EXPECT_EQ(hub_.last_sequence(), 0u);
}

TEST_F(HttpServerTest, MalformedRequestIsBadRequestAndClosed) {
  RawConnection connection;
  ASSERT_NO_FATAL_FAILURE(Connect(*server_, &connection));

  // The start of a TLS ClientHello, as sent by a client that expected
  // HTTPS, followed by an empty line so that the whole "header" is there.
  static constexpr char kGarbage[] =
      "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls?\r\n\r\n";
  ASSERT_TRUE(
      Succeeded(connection.Write(std::string(kGarbage, sizeof(kGarbage) - 1))));

  HttpClientResponse response;
  ASSERT_TRUE(Succeeded(connection.Read(&response)));
  ExpectErrorThenClose(&connection, response, http::status::bad_request,
                       "bad_request");
  EXPECT_THAT(StringMember(response.body(), "message"),
              ::testing::HasSubstr("malformed HTTP request"));
}

TEST_F(HttpServerTest, BadVersionIsBadRequestAndClosed) {
  RawConnection connection;
  ASSERT_NO_FATAL_FAILURE(Connect(*server_, &connection));

  ASSERT_TRUE(Succeeded(connection.Write("POST /webhooks HTTP/9.Z\r\n\r\n")));

  HttpClientResponse response;
  ASSERT_TRUE(Succeeded(connection.Read(&response)));
  ExpectErrorThenClose(&connection, response, http::status::bad_request,
                       "bad_request");
}

TEST_F(HttpServerTest, StalledClientsAreClosedAfterTheirPhaseTimeout) {
  HttpServerOptions options;
  options.header_timeout = absl::Milliseconds(300);
  options.body_timeout = absl::Milliseconds(300);
  HttpServer* server = nullptr;
  ASSERT_NO_FATAL_FAILURE(StartServer(options, &server));
  const std::string request = PostRequest(Ping("wh_slow-1"));

  // One client stalls mid-header, another mid-body.
  const Clock::time_point start = Clock::now();
  RawConnection stalled_in_header;
  ASSERT_NO_FATAL_FAILURE(Connect(*server, &stalled_in_header));
  ASSERT_TRUE(Succeeded(stalled_in_header.Write(request.substr(0, 40))));
  RawConnection stalled_in_body;
  ASSERT_NO_FATAL_FAILURE(Connect(*server, &stalled_in_body));
  ASSERT_TRUE(
      Succeeded(stalled_in_body.Write(request.substr(0, request.size() - 10))));

  // Meanwhile a well-behaved client is answered at once.
  const absl::StatusOr<HttpAnswer> answer =
      SenderFor(*server)->PostJson(Ping("wh_prompt-1"));
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 200) << answer->body;
  EXPECT_EQ(SequenceOf(answer->body), 1u);
  EXPECT_TRUE(stalled_in_header.IsOpenAndQuiet());
  EXPECT_TRUE(stalled_in_body.IsOpenAndQuiet());

  // The stalled ones are closed without an answer once the timeout passes.
  EXPECT_EQ(stalled_in_header.WaitForClose(), asio::error::eof);
  EXPECT_EQ(stalled_in_body.WaitForClose(), asio::error::eof);
  EXPECT_GE(MillisecondsSince(start), 300);
  EXPECT_EQ(hub_.last_sequence(), 1u);
}

// Sends `bytes` on `connection` one byte every `pause`, until all are sent
// or the server closes the connection. Returns the time from the start
// until the close was seen, or nullopt if every byte went out first.
std::optional<int64_t> Drip(RawConnection* connection, const std::string& bytes,
                            std::chrono::milliseconds pause) {
  const Clock::time_point start = Clock::now();
  for (char byte : bytes) {
    if (!connection->IsOpenAndQuiet() ||
        connection->Write(std::string(1, byte))) {
      return MillisecondsSince(start);
    }
    std::this_thread::sleep_for(pause);
  }
  return std::nullopt;
}

TEST_F(HttpServerTest, DrippingClientsAreCutOffWhileOthersAreServedPromptly) {
  HttpServerOptions options;
  options.header_timeout = absl::Milliseconds(600);
  options.body_timeout = absl::Milliseconds(1200);
  HttpServer* server = nullptr;
  ASSERT_NO_FATAL_FAILURE(StartServer(options, &server));
  const std::string request = PostRequest(Ping("wh_drip-1"));
  const size_t header_end = request.find("\r\n\r\n") + 4;
  // One byte every 30 ms: each side takes over 2.5 s to send in full, far
  // beyond its timeout, though no single read waits long.
  constexpr std::chrono::milliseconds kPause{30};
  ASSERT_GT(header_end * kPause.count(), 2500u);
  ASSERT_GT((request.size() - header_end) * kPause.count(), 2500u);

  // One client drips its headers; the other sends its headers at once and
  // drips its body, which thus gets the body timeout, not the header one.
  std::optional<int64_t> header_closed_after;
  std::optional<int64_t> body_closed_after;
  std::thread header_dripper([&] {
    RawConnection connection;
    if (!Succeeded(connection.Connect(server->port()))) return;
    header_closed_after =
        Drip(&connection, request.substr(0, header_end), kPause);
  });
  std::thread body_dripper([&] {
    RawConnection connection;
    if (!Succeeded(connection.Connect(server->port())) ||
        !Succeeded(connection.Write(request.substr(0, header_end)))) {
      return;
    }
    body_closed_after = Drip(&connection, request.substr(header_end), kPause);
  });

  // Meanwhile well-behaved deliveries, one after another, are answered at
  // once.
  std::unique_ptr<WebhookSender> sender = SenderFor(*server);
  const Clock::time_point start = Clock::now();
  int64_t slowest_ms = 0;
  uint64_t answered = 0;
  while (MillisecondsSince(start) < 2000) {
    const Clock::time_point sent = Clock::now();
    const absl::StatusOr<HttpAnswer> answer =
        sender->PostJson(Ping(absl::StrCat("wh_prompt-", answered + 1)));
    ASSERT_TRUE(answer.ok()) << answer.status();
    ASSERT_EQ(answer->status, 200) << answer->body;
    slowest_ms = std::max(slowest_ms, MillisecondsSince(sent));
    ++answered;
  }
  header_dripper.join();
  body_dripper.join();

  EXPECT_GE(answered, 10u);
  EXPECT_LT(slowest_ms, 500);
  ASSERT_TRUE(header_closed_after.has_value()) << "headers were all sent";
  EXPECT_GE(*header_closed_after, 600);
  EXPECT_LT(*header_closed_after, 1200);
  ASSERT_TRUE(body_closed_after.has_value()) << "body was all sent";
  EXPECT_GE(*body_closed_after, 1200);
  EXPECT_LT(*body_closed_after, 2400);
  // Nothing of the dripped delivery was kept.
  EXPECT_EQ(hub_.last_sequence(), answered);
}

TEST_F(HttpServerTest, BodySlowerThanHeaderTimeoutIsAcceptedWithinBodyTimeout) {
  HttpServerOptions options;
  options.header_timeout = absl::Milliseconds(200);
  options.body_timeout = absl::Seconds(5);
  HttpServer* server = nullptr;
  ASSERT_NO_FATAL_FAILURE(StartServer(options, &server));
  RawConnection connection;
  ASSERT_NO_FATAL_FAILURE(Connect(*server, &connection));
  const std::string request = PostRequest(Ping("wh_slow-body-1"));
  const size_t header_end = request.find("\r\n\r\n") + 4;

  // The body comes in three parts over about 600 ms, three times the
  // header timeout.
  ASSERT_TRUE(Succeeded(connection.Write(request.substr(0, header_end))));
  const size_t third = (request.size() - header_end) / 3;
  for (size_t part = 0; part < 3; ++part) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const size_t from = header_end + part * third;
    ASSERT_TRUE(Succeeded(connection.Write(
        part == 2 ? request.substr(from) : request.substr(from, third))));
  }

  HttpClientResponse response;
  ASSERT_TRUE(Succeeded(connection.Read(&response)));
  EXPECT_EQ(response.result(), http::status::ok) << response.body();
  EXPECT_EQ(SequenceOf(response.body()), 1u);
}

TEST_F(HttpServerTest, SlowSecondRequestOnKeptAliveConnectionIsClosed) {
  HttpServerOptions options;
  options.header_timeout = absl::Milliseconds(300);
  options.idle_timeout = absl::Seconds(60);
  HttpServer* server = nullptr;
  ASSERT_NO_FATAL_FAILURE(StartServer(options, &server));
  RawConnection connection;
  ASSERT_NO_FATAL_FAILURE(Connect(*server, &connection));
  ASSERT_NO_FATAL_FAILURE(PostPing(&connection, "wh_first-1", 1));

  // Once the next request has begun, the idle allowance no longer applies:
  // its headers must arrive within the header timeout.
  const Clock::time_point start = Clock::now();
  ASSERT_TRUE(Succeeded(
      connection.Write(PostRequest(Ping("wh_second-1")).substr(0, 40))));

  EXPECT_EQ(connection.WaitForClose(), asio::error::eof);
  EXPECT_GE(MillisecondsSince(start), 300);
  EXPECT_EQ(hub_.last_sequence(), 1u);
}

TEST_F(HttpServerTest, IdleKeptAliveConnectionIsClosedAfterIdleTimeout) {
  HttpServerOptions options;
  options.header_timeout = absl::Seconds(60);
  options.body_timeout = absl::Seconds(60);
  options.idle_timeout = absl::Milliseconds(300);
  HttpServer* server = nullptr;
  ASSERT_NO_FATAL_FAILURE(StartServer(options, &server));
  RawConnection connection;
  ASSERT_NO_FATAL_FAILURE(Connect(*server, &connection));
  // Taken before the request: the server starts the idle timer as soon as
  // its answer is written, before the client has read it.
  const Clock::time_point start = Clock::now();
  ASSERT_NO_FATAL_FAILURE(PostPing(&connection, "wh_idle-1", 1));

  EXPECT_EQ(connection.WaitForClose(), asio::error::eof);
  EXPECT_GE(MillisecondsSince(start), 300);
}

TEST_F(HttpServerTest, ConnectionsOverTheCapAreRefused) {
  HttpServerOptions options;
  options.max_connections = 2;
  HttpServer* server = nullptr;
  ASSERT_NO_FATAL_FAILURE(StartServer(options, &server));

  // A request answered on each proves both connections were accepted.
  RawConnection first;
  ASSERT_NO_FATAL_FAILURE(Connect(*server, &first));
  ASSERT_NO_FATAL_FAILURE(PostPing(&first, "wh_first-1", 1));
  RawConnection second;
  ASSERT_NO_FATAL_FAILURE(Connect(*server, &second));
  ASSERT_NO_FATAL_FAILURE(PostPing(&second, "wh_second-1", 2));

  const absl::StatusOr<HttpAnswer> third =
      SenderFor(*server)->PostJson(Ping("wh_third-1"));
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->status, 503) << third->body;
  EXPECT_EQ(third->content_type, "application/json");
  EXPECT_EQ(StringMember(third->body, "error"), "unavailable");
  EXPECT_EQ(hub_.last_sequence(), 2u);

  // The connections within the cap are unaffected.
  ASSERT_NO_FATAL_FAILURE(PostPing(&first, "wh_first-2", 3));
}

TEST_F(HttpServerTest, ClosedConnectionFreesItsSlot) {
  HttpServerOptions options;
  options.max_connections = 1;
  HttpServer* server = nullptr;
  ASSERT_NO_FATAL_FAILURE(StartServer(options, &server));
  RawConnection first;
  ASSERT_NO_FATAL_FAILURE(Connect(*server, &first));
  ASSERT_NO_FATAL_FAILURE(PostPing(&first, "wh_first-1", 1));

  first.Close();
  // The server learns of the close asynchronously; wait for the count it
  // publishes rather than for a guessed time.
  const Clock::time_point deadline = Clock::now() + kClientTimeout;
  while (server->open_connections() != 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(server->open_connections(), 0u);

  const absl::StatusOr<HttpAnswer> answer =
      SenderFor(*server)->PostJson(Ping("wh_next-1"));
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 200) << answer->body;
  EXPECT_EQ(SequenceOf(answer->body), 2u);
}

TEST_F(HttpServerTest, StoppedServerRefusesNewConnections) {
  const absl::StatusOr<HttpAnswer> before =
      SenderFor(*server_)->PostJson(Ping("wh_before-1"));
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_EQ(before->status, 200) << before->body;

  server_->Stop();

  const absl::StatusOr<HttpAnswer> after =
      SenderFor(*server_)->PostJson(Ping("wh_after-1"));
  EXPECT_EQ(after.status().code(), absl::StatusCode::kUnavailable)
      << after.status();
  RawConnection connection;
  EXPECT_EQ(connection.Connect(server_->port()),
            asio::error::connection_refused);
  EXPECT_EQ(hub_.last_sequence(), 1u);
}

TEST_F(HttpServerTest, StartFailsWhenPortIsTaken) {
  HttpServerOptions options;
  options.port = server_->port();
  HttpServer second(&io_context_, &handler_, options);

  EXPECT_EQ(second.Start().code(), absl::StatusCode::kUnavailable);
}

TEST_F(HttpServerTest, StartFailsForBadAddress) {
  HttpServerOptions options;
  options.address = "not-an-address";
  options.port = 0;
  HttpServer server(&io_context_, &handler_, options);

  EXPECT_EQ(server.Start().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fanout
