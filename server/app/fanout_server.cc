#include "server/app/fanout_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <chrono>
#include <cstdint>
#include <limits>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/ascii.h"
#include "absl/strings/strip.h"
#include "server/nats/subjects.h"
#include "server/store/embedded_store.h"
#include "spdlog/spdlog.h"

namespace fanout {
namespace {

// A duration as a channel argument: whole milliseconds, capped at INT_MAX
// (gRPC's "infinite").
int ChannelArgMillis(absl::Duration duration) {
  return static_cast<int>(std::clamp<int64_t>(
      absl::ToInt64Milliseconds(duration), 0, std::numeric_limits<int>::max()));
}

// As above, with zero meaning "never".
int ChannelArgMillisOrNever(absl::Duration duration) {
  return duration == absl::ZeroDuration() ? std::numeric_limits<int>::max()
                                          : ChannelArgMillis(duration);
}

// Opens the event store the options select, feeding `hub`.
absl::StatusOr<std::unique_ptr<EventStore>> OpenStore(
    const FanoutServerOptions& options, EventHub* hub) {
  if (!IsEmbeddedBus(options.bus)) {
    absl::StatusOr<std::unique_ptr<JetStreamStore>> jetstream =
        JetStreamStore::Open(JetStreamOptionsFor(options), hub);
    if (!jetstream.ok()) return jetstream.status();
    return std::unique_ptr<EventStore>(*std::move(jetstream));
  }
  absl::StatusOr<std::unique_ptr<EmbeddedStore>> embedded =
      EmbeddedStore::Open(options.log, hub);
  if (!embedded.ok()) return embedded.status();
  return std::unique_ptr<EventStore>(*std::move(embedded));
}

}  // namespace

bool IsEmbeddedBus(absl::string_view bus) { return bus == "embedded"; }

JetStreamOptions JetStreamOptionsFor(const FanoutServerOptions& options) {
  JetStreamOptions nats = options.nats;
  nats.servers.clear();
  for (absl::string_view server : absl::StrSplit(options.bus, ',')) {
    server = absl::StripAsciiWhitespace(server);
    if (!server.empty()) nats.servers.emplace_back(server);
  }
  nats.max_age = options.log.retention_age;
  nats.max_bytes = options.log.retention_bytes;
  nats.max_event_bytes = options.converter.max_event_bytes;
  return nats;
}

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
  if (options.http.header_timeout <= absl::ZeroDuration() ||
      options.http.body_timeout <= absl::ZeroDuration() ||
      options.http.write_timeout <= absl::ZeroDuration() ||
      options.http.idle_timeout <= absl::ZeroDuration()) {
    return invalid("HTTP timeouts must be positive");
  }
  if (options.http.max_connections == 0) {
    return invalid("http_max_connections is 0");
  }
  if (options.http_threads < 1) return invalid("http_threads must be >= 1");
  if (options.converter.max_json_depth < 2 ||
      options.converter.max_json_depth > kMaxJsonDepthLimit) {
    return invalid(absl::StrCat(
        "max_json_depth must be between 2 (envelope and data) and ",
        kMaxJsonDepthLimit,
        " (deeper untyped data exceeds what subscribers' protobuf parsers "
        "read)"));
  }
  // Keeps the Subscribe request limit (MaxSubscribeRequestBytes) small.
  if (options.service.max_pattern_bytes > (1 << 20) ||
      options.service.max_patterns >
          (1 << 20) / (options.service.max_pattern_bytes + 8)) {
    return invalid(
        "max_subscribe_patterns times max_pattern_bytes must stay within "
        "1 MiB");
  }
  if (options.service.heartbeat_interval <= absl::ZeroDuration()) {
    return invalid("heartbeat_interval must be positive");
  }
  if (!IsEmbeddedBus(options.bus)) {
    if (!absl::StrContains(options.bus, "://")) {
      return invalid(absl::StrCat(
          "bus \"", options.bus,
          "\" is neither \"embedded\" nor a list of nats:// URLs"));
    }
    if (absl::Status nats = ValidateJetStreamOptions(JetStreamOptionsFor(options));
        !nats.ok()) {
      return nats;
    }
    // The delivery id travels as a NATS header (up to three bytes for
    // each of its own), within the 4 KiB the store leaves for headers.
    if (options.converter.max_id_bytes > 1024) {
      return invalid("with NATS, max_id_bytes must be at most 1024");
    }
    // A publish's subject goes in a protocol line of at most 4 KiB.
    if (MaxSubjectBytes(options.nats.subject_prefix,
                        options.converter.max_event_type_bytes) >
        kMaxNatsSubjectBytes) {
      return invalid(absl::StrCat(
          "with NATS, the subject of the longest event type must fit in ",
          kMaxNatsSubjectBytes,
          " bytes: nats_subject_prefix plus three bytes for each of "
          "max_event_type_bytes (",
          options.converter.max_event_type_bytes, ") is too long"));
    }
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
  const GrpcConnectionOptions& connections = options.grpc_connections;
  if (connections.keepalive_time < absl::Milliseconds(1) ||
      connections.keepalive_timeout < absl::Milliseconds(1)) {
    return invalid(
        "grpc_keepalive_time and grpc_keepalive_timeout must be "
        "at least 1ms");
  }
  if (connections.min_client_ping_interval < absl::ZeroDuration() ||
      connections.max_connection_idle < absl::ZeroDuration() ||
      connections.max_connection_age < absl::ZeroDuration() ||
      connections.max_connection_age_grace < absl::ZeroDuration()) {
    return invalid("gRPC connection durations must not be negative");
  }
  if (connections.max_ping_strikes < 0) {
    return invalid("grpc_max_ping_strikes must not be negative (0: no limit)");
  }
  if (absl::Status tls = ValidateGrpcTlsOptions(options.grpc_tls); !tls.ok()) {
    return tls;
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

size_t MaxSubscribeRequestBytes(const FanoutServiceOptions& options) {
  // Each pattern costs its bytes plus a few of framing; the start position
  // and the rest of the message fit in the 4 KiB added.
  return options.max_patterns * (options.max_pattern_bytes + 8) + (4 << 10);
}

bool IsLoopbackAddress(absl::string_view host_port) {
  absl::string_view host = host_port.substr(0, host_port.rfind(':'));
  if (absl::ConsumePrefix(&host, "[")) absl::ConsumeSuffix(&host, "]");
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

absl::StatusOr<std::unique_ptr<FanoutServer>> FanoutServer::Start(
    FanoutServerOptions options) {
  if (absl::Status status = ValidateOptions(options); !status.ok()) {
    return status;
  }
  // The files are read before anything starts, so that a mistake in one
  // stops the server at once, naming the file.
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      MakeServerCredentials(options.grpc_tls);
  if (!credentials.ok()) return credentials.status();
  std::unique_ptr<AccessTokens> access_tokens;
  if (!options.access_tokens_file.empty()) {
    absl::StatusOr<AccessTokens> read =
        AccessTokens::ReadFile(options.access_tokens_file);
    if (!read.ok()) return read.status();
    access_tokens = std::make_unique<AccessTokens>(*std::move(read));
    std::vector<std::string> names;
    for (const AccessGrant& grant : access_tokens->grants()) {
      names.push_back(absl::StrCat(grant.name, " [",
                                   absl::StrJoin(grant.patterns, ","), "]"));
    }
    spdlog::info("subscribers need an access token tokens={} grants={:?}",
                 names.size(), absl::StrJoin(names, ", "));
  }
  const bool loopback = IsLoopbackAddress(options.grpc_address);
  if (access_tokens == nullptr && !loopback) {
    spdlog::warn(
        "gRPC WITHOUT ACCESS TOKENS (no --access_tokens_file): anyone who "
        "can reach it can read every event grpc={}",
        options.grpc_address);
  }
  if (access_tokens != nullptr && !options.grpc_tls.enabled() && !loopback) {
    spdlog::warn(
        "access tokens travel in plaintext (give --grpc_tls_cert and "
        "--grpc_tls_key) grpc={}",
        options.grpc_address);
  }

  std::unique_ptr<FanoutServer> server(new FanoutServer(std::move(options)));
  server->access_tokens_ = std::move(access_tokens);

  absl::StatusOr<std::unique_ptr<EventStore>> store =
      OpenStore(server->options_, &server->hub_);
  if (!store.ok()) {
    server->stopped_ = true;
    return store.status();
  }
  server->store_ = *std::move(store);
  server->ingestor_ = std::make_unique<Ingestor>(
      &server->converter_, server->store_.get(), &server->metrics_);
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
      &server->hub_, server->store_.get(), &server->metrics_,
      server->options_.service, server->access_tokens_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // Without this a second server on the same port would silently share it
  // and take half of the subscribers.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Subscribers hold streams open for days and ping to find dead
  // connections (the client library every 30 s); allow that, and ping them
  // in turn so that the server finds its dead streams too.
  const GrpcConnectionOptions& connections = server->options_.grpc_connections;
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
      ChannelArgMillis(connections.min_client_ping_interval));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES,
                             connections.max_ping_strikes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             ChannelArgMillis(connections.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             ChannelArgMillis(connections.keepalive_timeout));
  builder.AddChannelArgument(
      GRPC_ARG_MAX_CONNECTION_IDLE_MS,
      ChannelArgMillisOrNever(connections.max_connection_idle));
  builder.AddChannelArgument(
      GRPC_ARG_MAX_CONNECTION_AGE_MS,
      ChannelArgMillisOrNever(connections.max_connection_age));
  builder.AddChannelArgument(
      GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
      ChannelArgMillisOrNever(connections.max_connection_age_grace));
  // TODO: gRPC connections and streams are not capped; a client that gets
  // through TLS and holds a token can open any number of streams.
  // GRPC_ARG_MAX_CONCURRENT_STREAMS and a per-token stream limit would
  // bound that.
  // A Subscribe request is a few patterns; anything much larger is not
  // one, and is refused before it is buffered.
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(MaxSubscribeRequestBytes(server->options_.service)));
  builder.AddListeningPort(server->options_.grpc_address, *credentials,
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
  // With the ports bound, which differ from the options' when those are 0.
  const std::string& http_host = server->options_.http.address;
  const std::string& grpc_address = server->options_.grpc_address;
  const GrpcTlsOptions& tls = server->options_.grpc_tls;
  const char* grpc_security = "plaintext";
  if (tls.enabled()) {
    grpc_security = tls.client_ca_file.empty() ? "tls" : "mutual_tls";
  }
  spdlog::info(
      "listening http={}:{} grpc={}:{} webhook_path={} grpc_security={}",
      absl::StrContains(http_host, ':') ? absl::StrCat("[", http_host, "]")
                                        : http_host,
      server->http_->port(), grpc_address.substr(0, grpc_address.rfind(':')),
      server->grpc_port_, WebhookHandler::kWebhookPath, grpc_security);
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
  if (store_ != nullptr) store_->RenderMetrics(&out);

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
  store_.reset();  // Commits what is queued.
  if (started) spdlog::info("stopped last_seq={}", hub_.last_sequence());
}

}  // namespace fanout
