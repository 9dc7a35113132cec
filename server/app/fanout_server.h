// The whole service in one object: HTTP ingest, conversion, the event
// store (embedded or NATS JetStream), the fan-out hub and the gRPC
// Subscribe service, started and stopped together.
//
// main() and the end-to-end tests both run the service through this class.

#ifndef FANOUT_SERVER_APP_FANOUT_SERVER_H_
#define FANOUT_SERVER_APP_FANOUT_SERVER_H_

#include <grpcpp/server.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/auth/signature_verifier.h"
#include "server/common/metrics.h"
#include "server/convert/event_converter.h"
#include "server/fanout/event_hub.h"
#include "server/grpc/access_tokens.h"
#include "server/grpc/fanout_service.h"
#include "server/grpc/server_credentials.h"
#include "server/http/http_server.h"
#include "server/http/webhook_handler.h"
#include "server/ingest/ingestor.h"
#include "server/log/event_log.h"
#include "server/nats/jetstream_store.h"
#include "server/store/event_store.h"

namespace fanout {

// How the gRPC server treats the connections under Subscribe streams,
// which stay open for days. Durations become gRPC channel arguments in
// milliseconds.
struct GrpcConnectionOptions {
  // The server pings a connection after this long without activity, and
  // closes it when the ping is not answered within keepalive_timeout, so
  // that streams of vanished subscribers end.
  absl::Duration keepalive_time = absl::Seconds(60);
  absl::Duration keepalive_timeout = absl::Seconds(20);
  // Clients may ping this often, also with no call open; a ping sooner than
  // this after the previous one is a strike, and a connection with more
  // than max_ping_strikes strikes (0: no limit) is closed with GOAWAY
  // "too_many_pings".
  absl::Duration min_client_ping_interval = absl::Seconds(10);
  int max_ping_strikes = 2;
  // A connection with no call open for this long is closed (0: never).
  absl::Duration max_connection_idle = absl::ZeroDuration();
  // A connection older than this is sent GOAWAY, so that its client
  // reconnects, e.g. to another server behind a balancer (0: never). Its
  // open streams get max_connection_age_grace more (0: no limit) before
  // they are cancelled.
  absl::Duration max_connection_age = absl::ZeroDuration();
  absl::Duration max_connection_age_grace = absl::Seconds(30);
};

struct FanoutServerOptions {
  HttpServerOptions http;
  // Threads running HTTP sessions.
  int http_threads = 2;
  // host:port for gRPC; port 0 picks a free one.
  std::string grpc_address = "127.0.0.1:50051";
  GrpcConnectionOptions grpc_connections;
  // TLS, or mutual TLS, for gRPC; plaintext by default.
  GrpcTlsOptions grpc_tls;
  // The file of access tokens subscribers must present (see
  // server/grpc/access_tokens.h). Empty: every subscriber reads every
  // event, with a warning at start-up unless gRPC listens on loopback only.
  std::string access_tokens_file;
  // Secrets that may sign deliveries (several while rotating). Without any,
  // the server refuses to start unless allow_unsigned is set.
  std::vector<std::string> webhook_secrets;
  bool allow_unsigned = false;
  // How far a signature's timestamp may be from our clock.
  absl::Duration signature_tolerance = absl::Minutes(5);
  EventConverterOptions converter;
  // Where events are kept: "embedded" (the event log, in log.data_dir) or
  // a comma-separated list of NATS server URLs, for a JetStream stream
  // that any number of servers share.
  std::string bus = "embedded";
  // The embedded event log's settings; retention_age and retention_bytes
  // apply to every backend.
  EventLogOptions log;
  // The JetStream stream's settings, when bus names NATS servers; servers,
  // max_age and max_bytes are taken from bus and log.
  JetStreamOptions nats;
  EventHubOptions hub;
  FanoutServiceOptions service;
  // Time Shutdown gives open streams before cancelling them.
  absl::Duration shutdown_grace = absl::Seconds(5);
};

// Returns InvalidArgument naming the first option that makes no sense (a
// zero size limit, a non-positive timeout, limits that contradict each
// other, half a TLS set-up).
absl::Status ValidateOptions(const FanoutServerOptions& options);

// Whether options.bus selects the embedded log.
bool IsEmbeddedBus(absl::string_view bus);

// The JetStream settings `options` give: options.nats with the servers of
// options.bus and the retention limits of options.log.
JetStreamOptions JetStreamOptionsFor(const FanoutServerOptions& options);

// The largest Subscribe request the gRPC port accepts: room for
// max_patterns patterns of max_pattern_bytes each.
size_t MaxSubscribeRequestBytes(const FanoutServiceOptions& options);

// Returns true if `host_port` ("127.0.0.1:50051", "[::1]:0",
// "localhost:9000") names a loopback address, reachable from this machine
// only.
bool IsLoopbackAddress(absl::string_view host_port);

class FanoutServer {
 public:
  // Starts every component. Returns ValidateOptions' error, or the first
  // component's (e.g. Unavailable when a port is taken, or the error of
  // reading a TLS or access tokens file, naming it); nothing keeps running
  // then.
  static absl::StatusOr<std::unique_ptr<FanoutServer>> Start(
      FanoutServerOptions options);

  // Calls Shutdown.
  ~FanoutServer();

  FanoutServer(const FanoutServer&) = delete;
  FanoutServer& operator=(const FanoutServer&) = delete;

  // Stops accepting HTTP connections, ends every Subscribe stream with
  // UNAVAILABLE, commits the appends in flight and stops all threads.
  // Idempotent; not thread-safe.
  void Shutdown();

  // The Prometheus text of GET /metrics.
  std::string RenderMetrics() const;
  // Whether the store is open and can take deliveries (with NATS: is
  // connected), and both listeners are up (GET /readyz).
  bool Ready() const { return ready_.load() && store_->Connected(); }

  uint16_t http_port() const { return http_->port(); }
  int grpc_port() const { return grpc_port_; }
  EventHub* hub() { return &hub_; }
  EventStore* store() { return store_.get(); }

 private:
  explicit FanoutServer(FanoutServerOptions options);

  // Wakes the hub's streams so that idle ones send heartbeats on time.
  void TickLoop();

  const FanoutServerOptions options_;
  EventConverter converter_;
  Metrics metrics_;
  EventHub hub_;
  std::unique_ptr<EventStore> store_;
  std::unique_ptr<SignatureVerifier> verifier_;  // Null when unsigned.
  std::unique_ptr<Ingestor> ingestor_;
  std::unique_ptr<WebhookHandler> handler_;
  std::unique_ptr<AccessTokens> access_tokens_;  // Null when open.
  // Declared after the hub, the store and the tokens: its replay threads
  // use the first two, its calls the tokens.
  std::unique_ptr<FanoutService> service_;

  absl::Mutex tick_mu_;
  bool ticking_ ABSL_GUARDED_BY(tick_mu_) = true;
  std::thread ticker_;

  boost::asio::io_context io_context_;
  std::unique_ptr<HttpServer> http_;
  std::vector<std::thread> http_threads_;

  std::unique_ptr<grpc::Server> grpc_;
  int grpc_port_ = 0;
  bool stopped_ = false;
  std::atomic<bool> ready_{false};
};

}  // namespace fanout

#endif  // FANOUT_SERVER_APP_FANOUT_SERVER_H_
