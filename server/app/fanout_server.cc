#include "server/app/fanout_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <boost/asio/executor_work_guard.hpp>
#include <chrono>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "spdlog/spdlog.h"

namespace fanout {

FanoutServer::FanoutServer(FanoutServerOptions options)
    : options_(std::move(options)),
      converter_(options_.converter),
      hub_(options_.hub),
      io_context_(options_.http_threads) {}

absl::Status ValidateOptions(const FanoutServerOptions& options) {
  const auto invalid = [](absl::string_view what) {
    return absl::InvalidArgumentError(what);
  };
  if (options.webhook_secrets.empty() && !options.allow_unsigned) {
    return absl::FailedPreconditionError(
        "no webhook secret: give --secrets_file or FANOUT_WEBHOOK_SECRETS "
        "(or, for development only, --allow_unsigned)");
  }
  for (const std::string& secret : options.webhook_secrets) {
    if (secret.empty()) return invalid("a webhook secret is empty");
  }
  if (options.signature_tolerance <= absl::ZeroDuration()) {
    return invalid("signature_tolerance must be positive");
  }
  if (options.http.max_body_bytes == 0) return invalid("max_body_bytes is 0");
  if (options.http.max_body_bytes + (64 << 10) >
      options.converter.max_event_bytes) {
    return invalid(absl::StrCat(
        "max_body_bytes must be at least 64 KiB below max_event_bytes (",
        options.converter.max_event_bytes,
        "), so that every accepted delivery fits in an event"));
  }
  if (options.http.max_header_bytes == 0) {
    return invalid("max_header_bytes is 0");
  }
  if (options.http.request_timeout <= absl::ZeroDuration() ||
      options.http.idle_timeout <= absl::ZeroDuration()) {
    return invalid("HTTP timeouts must be positive");
  }
  if (options.http.max_connections == 0) {
    return invalid("http_max_connections is 0");
  }
  if (options.http_threads < 1) return invalid("http_threads must be >= 1");
  if (options.converter.max_json_depth < 2) {
    return invalid("max_json_depth must be at least 2 (envelope and data)");
  }
  if (options.service.heartbeat_interval <= absl::ZeroDuration()) {
    return invalid("heartbeat_interval must be positive");
  }
  if (options.log.retention_interval < absl::Milliseconds(100)) {
    return invalid("retention_interval must be at least 100ms");
  }
  if (options.log.checkpoint_bytes == 0) {
    return invalid("log_checkpoint_bytes must be positive");
  }
  if (options.log.wal_max_bytes < options.log.checkpoint_bytes) {
    return invalid("log_wal_max_bytes must be at least log_checkpoint_bytes");
  }
  if (options.log.retention_age < absl::ZeroDuration()) {
    return invalid("retention_age must not be negative (0 keeps all)");
  }
  if (options.converter.max_id_bytes == 0 ||
      options.converter.max_event_type_bytes == 0) {
    return invalid("max_id_bytes and max_event_type_bytes must be positive");
  }
  // gRPC takes "host:port" and wraps ports above 65535 silently.
  const size_t colon = options.grpc_address.rfind(':');
  int64_t grpc_port = -1;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(options.grpc_address.substr(colon + 1), &grpc_port) ||
      grpc_port < 0 || grpc_port > 65535) {
    return invalid(absl::StrCat("grpc_address \"", options.grpc_address,
                                "\" is not host:port with a port 0..65535"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<FanoutServer>> FanoutServer::Start(
    FanoutServerOptions options) {
  if (absl::Status status = ValidateOptions(options); !status.ok()) {
    return status;
  }
  std::unique_ptr<FanoutServer> server(new FanoutServer(std::move(options)));

  // Committed events go to the hub, and from there to subscribers, in
  // commit order on the log's writer thread.
  EventHub* hub = &server->hub_;
  absl::StatusOr<std::unique_ptr<EventLog>> log = EventLog::Open(
      server->options_.log,
      [hub](const std::vector<std::shared_ptr<const StoredEvent>>& events) {
        for (const auto& event : events) hub->Publish(event);
      });
  if (!log.ok()) {
    server->stopped_ = true;
    return log.status();
  }
  server->log_ = *std::move(log);
  server->hub_.StartAfter(server->log_->range().last);
  server->ingestor_ = std::make_unique<Ingestor>(
      &server->converter_, server->log_.get(), &server->metrics_);
  if (!server->options_.webhook_secrets.empty()) {
    SignatureVerifierOptions verifier_options;
    verifier_options.secrets = server->options_.webhook_secrets;
    verifier_options.tolerance = server->options_.signature_tolerance;
    server->verifier_ = std::make_unique<SignatureVerifier>(verifier_options);
  } else {
    spdlog::warn(
        "UNSIGNED DELIVERIES ARE ACCEPTED (--allow_unsigned): anyone who "
        "can reach the ingest port can publish events. Development only.");
  }
  FanoutServer* self = server.get();
  server->handler_ = std::make_unique<WebhookHandler>(
      server->ingestor_.get(), server->verifier_.get(), &server->metrics_,
      OperatorEndpoints{[self] { return self->Ready(); },
                        [self] { return self->RenderMetrics(); }});
  server->service_ = std::make_unique<FanoutService>(
      &server->hub_, server->log_.get(), &server->metrics_,
      server->options_.service);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // Without this a second server on the same port would silently share it
  // and take half of the subscribers.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Subscribers hold streams open for days and ping to find dead
  // connections (the client library every 30 s); allow that, and ping them
  // in turn so that the server finds its dead streams too.
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
  builder.AddListeningPort(server->options_.grpc_address,
                           grpc::InsecureServerCredentials(),
                           &server->grpc_port_);
  builder.RegisterService(server->service_.get());
  server->grpc_ = builder.BuildAndStart();
  if (server->grpc_ == nullptr || server->grpc_port_ == 0) {
    server->stopped_ = true;
    if (server->grpc_) server->grpc_->Shutdown();
    return absl::UnavailableError(absl::StrCat("cannot listen for gRPC on ",
                                               server->options_.grpc_address));
  }

  server->grpc_->GetHealthCheckService()->SetServingStatus(
      staffify::fanout::v1::Fanout::service_full_name(), true);

  server->http_ = std::make_unique<HttpServer>(
      &server->io_context_, server->handler_.get(), server->options_.http);
  if (absl::Status status = server->http_->Start(); !status.ok()) {
    server->Shutdown();
    return status;
  }
  for (int i = 0; i < std::max(1, server->options_.http_threads); ++i) {
    server->http_threads_.emplace_back([server = server.get()] {
      auto work = boost::asio::make_work_guard(server->io_context_);
      server->io_context_.run();
    });
  }

  server->ticker_ =
      std::thread([server = server.get()] { server->TickLoop(); });

  server->ready_ = true;
  spdlog::info("listening: HTTP {}:{} (POST {}), gRPC {} (port {})",
               server->options_.http.address, server->http_->port(),
               WebhookHandler::kWebhookPath, server->options_.grpc_address,
               server->grpc_port_);
  return server;
}

FanoutServer::~FanoutServer() { Shutdown(); }

std::string FanoutServer::RenderMetrics() const {
  std::string out;
  metrics_.Render(&out);

  if (verifier_ != nullptr) {
    absl::StrAppend(&out,
                    "# HELP fanout_signature_failures_total Deliveries "
                    "refused for their signature, by reason.\n"
                    "# TYPE fanout_signature_failures_total counter\n");
    for (int i = 0; i < kSignatureFailureCount; ++i) {
      const auto failure = static_cast<SignatureFailure>(i);
      absl::StrAppend(&out, "fanout_signature_failures_total{reason=\"",
                      SignatureFailureName(failure), "\"} ",
                      verifier_->failures(failure), "\n");
    }
  }
  if (log_ != nullptr) {
    const LogRange range = log_->range();
    absl::StrAppend(
        &out,
        "# HELP fanout_duplicates_total Deliveries whose id was already "
        "stored.\n# TYPE fanout_duplicates_total counter\n"
        "fanout_duplicates_total ",
        log_->duplicates(),
        "\n# HELP fanout_differing_duplicates_total Duplicates whose body "
        "differed from the stored one.\n"
        "# TYPE fanout_differing_duplicates_total counter\n"
        "fanout_differing_duplicates_total ",
        log_->differing_duplicates(),
        "\n# HELP fanout_log_commits_total Event log transactions.\n"
        "# TYPE fanout_log_commits_total counter\nfanout_log_commits_total ",
        log_->commits(),
        "\n# HELP fanout_log_checkpoints_total Checkpoints of the event "
        "log's write-ahead log.\n"
        "# TYPE fanout_log_checkpoints_total counter\n"
        "fanout_log_checkpoints_total ",
        log_->checkpoints(),
        "\n# HELP fanout_log_wal_restarts_total Checkpoints that held "
        "commits back because the write-ahead log reached its limit.\n"
        "# TYPE fanout_log_wal_restarts_total counter\n"
        "fanout_log_wal_restarts_total ",
        log_->wal_restarts(),
        "\n# HELP fanout_log_last_sequence Newest sequence in the log.\n"
        "# TYPE fanout_log_last_sequence gauge\nfanout_log_last_sequence ",
        range.last,
        "\n# HELP fanout_log_first_sequence Oldest retained sequence.\n"
        "# TYPE fanout_log_first_sequence gauge\nfanout_log_first_sequence ",
        range.first, "\n");
  }

  const uint64_t last = hub_.last_sequence();
  const auto cursors = hub_.SubscriberCursors();
  absl::StrAppend(&out,
                  "# HELP fanout_subscribers Subscribe streams open.\n"
                  "# TYPE fanout_subscribers gauge\nfanout_subscribers ",
                  cursors.size(),
                  "\n# HELP fanout_subscriber_lag Events committed that a "
                  "subscriber has not yet considered.\n"
                  "# TYPE fanout_subscriber_lag gauge\n");
  for (const auto& [id, cursor] : cursors) {
    absl::StrAppend(&out, "fanout_subscriber_lag{subscriber=\"", id, "\"} ",
                    last > cursor ? last - cursor : 0, "\n");
  }
  return out;
}

void FanoutServer::TickLoop() {
  // Ticking at a quarter of the interval keeps heartbeats within 25% of it.
  const absl::Duration period =
      std::max(options_.service.heartbeat_interval / 4, absl::Milliseconds(5));
  absl::MutexLock lock(&tick_mu_);
  while (ticking_) {
    tick_mu_.AwaitWithTimeout(
        absl::Condition(
            +[](bool* ticking) { return !*ticking; }, &ticking_),
        period);
    if (ticking_) hub_.Tick();
  }
}

void FanoutServer::Shutdown() {
  if (stopped_) return;
  stopped_ = true;
  ready_ = false;
  if (grpc_ != nullptr) grpc_->GetHealthCheckService()->SetServingStatus(false);
  const bool started = grpc_ != nullptr && http_ != nullptr;

  if (http_) http_->Stop();
  // Deliveries already received are committed and answered before the
  // threads stop, within the grace period.
  const absl::Time deadline = absl::Now() + options_.shutdown_grace;
  while (handler_ != nullptr && handler_->in_flight() > 0 &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  {
    absl::MutexLock lock(&tick_mu_);
    ticking_ = false;
  }
  if (ticker_.joinable()) ticker_.join();
  hub_.Close();
  if (grpc_) {
    grpc_->Shutdown(std::chrono::system_clock::now() +
                    absl::ToChronoNanoseconds(options_.shutdown_grace));
    grpc_->Wait();
  }
  io_context_.stop();
  for (std::thread& thread : http_threads_) thread.join();
  http_threads_.clear();
  grpc_.reset();
  service_.reset();
  log_.reset();  // Commits what is queued.
  if (started) spdlog::info("stopped after seq {}", hub_.last_sequence());
}

}  // namespace fanout
