// fanout-server: receives Staffify webhooks over HTTP and streams them to
// gRPC subscribers. Parses flags, starts the service, waits for a signal.

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/app/fanout_server.h"
#include "server/auth/protected_file.h"
#include "server/auth/signature_verifier.h"
#include "server/flags/program_flags.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, http_address, "127.0.0.1",
          "Address the HTTP ingest endpoint listens on.");
ABSL_FLAG(uint16_t, http_port, 8080,
          "Port of the HTTP ingest endpoint (0 picks a free one).");
ABSL_FLAG(std::string, grpc_address, "127.0.0.1:50051",
          "host:port the gRPC Subscribe service listens on.");
ABSL_FLAG(std::string, grpc_tls_cert, "",
          "PEM certificate chain (leaf first) to serve gRPC over TLS with; "
          "needs --grpc_tls_key. Without both, gRPC is plaintext.");
ABSL_FLAG(std::string, grpc_tls_key, "",
          "PEM private key of --grpc_tls_cert (unencrypted; the file must not "
          "be accessible to other users).");
ABSL_FLAG(std::string, grpc_tls_client_ca, "",
          "PEM CA certificates: with it, gRPC requires mutual TLS, and "
          "refuses clients without a certificate signed by one of them.");
ABSL_FLAG(std::string, access_tokens_file, "",
          "File of subscriber access tokens, one per line: <name> <token> "
          "<pattern>[,<pattern>...] (see docs/security.md). With it, every "
          "Subscribe call needs \"authorization: Bearer <token>\" metadata "
          "and sees only the event types granted. Without it, every "
          "subscriber reads every event. The file must not be accessible to "
          "other users.");
ABSL_FLAG(int, http_threads, 2, "Threads serving HTTP connections.");
ABSL_FLAG(absl::Duration, grpc_keepalive_time, absl::Seconds(60),
          "The server pings a gRPC connection after this long without "
          "activity, to find subscribers that vanished without closing it.");
ABSL_FLAG(absl::Duration, grpc_keepalive_timeout, absl::Seconds(20),
          "A keepalive ping unanswered for this long closes the connection; "
          "its streams end.");
ABSL_FLAG(absl::Duration, grpc_min_client_ping_interval, absl::Seconds(10),
          "Shortest interval between a client's pings the server accepts, "
          "also with no call open. Clients must not set their keepalive time "
          "below this.");
ABSL_FLAG(int, grpc_max_ping_strikes, 2,
          "Pings sooner than --grpc_min_client_ping_interval tolerated before "
          "the connection is closed with GOAWAY too_many_pings (0: no "
          "limit).");
ABSL_FLAG(absl::Duration, grpc_max_connection_idle, absl::ZeroDuration(),
          "A gRPC connection with no call open for this long is closed (0: "
          "never).");
ABSL_FLAG(absl::Duration, grpc_max_connection_age, absl::ZeroDuration(),
          "A gRPC connection older than this (+/-10%) is sent GOAWAY, so that "
          "its client reconnects, e.g. to spread subscribers over servers "
          "behind a balancer (0: never).");
ABSL_FLAG(absl::Duration, grpc_max_connection_age_grace, absl::Seconds(30),
          "Time the streams of a connection past --grpc_max_connection_age "
          "get before they are cancelled; subscribers then resume on a new "
          "connection (0: no limit).");
ABSL_FLAG(uint64_t, max_body_bytes, 1 << 20,
          "Largest delivery body accepted; larger ones get 413.");
ABSL_FLAG(uint64_t, max_header_bytes, 16 << 10,
          "Largest HTTP request line plus headers accepted; larger get 431.");
ABSL_FLAG(absl::Duration, http_header_timeout, absl::Seconds(10),
          "Time allowed to receive a request's line and headers, from its "
          "first byte (from the accept, for a connection's first request). "
          "The connection is closed when it runs out.");
ABSL_FLAG(absl::Duration, http_body_timeout, absl::Seconds(30),
          "Time allowed to receive a request's body, from the end of its "
          "headers, however slowly it trickles in. The connection is closed "
          "when it runs out.");
ABSL_FLAG(absl::Duration, http_write_timeout, absl::Seconds(30),
          "Time allowed to send one response.");
ABSL_FLAG(absl::Duration, http_idle_timeout, absl::Seconds(60),
          "Time an idle keep-alive HTTP connection stays open.");
ABSL_FLAG(uint64_t, http_max_connections, 1024,
          "HTTP connections open at once; more are answered 503.");
ABSL_FLAG(uint64_t, max_json_depth, 32,
          "Deepest nesting of JSON arrays/objects accepted in a delivery.");
ABSL_FLAG(uint64_t, max_event_bytes, (4 << 20) - (64 << 10),
          "Largest event, serialised, sent to subscribers; a delivery whose "
          "typed form would be larger keeps only its raw body. Must exceed "
          "--max_body_bytes by 64 KiB. Subscribers must accept messages of "
          "this size (gRPC's default limit is 4 MiB).");
ABSL_FLAG(uint64_t, max_id_bytes, 256,
          "Longest delivery id accepted, in bytes.");
ABSL_FLAG(uint64_t, max_event_type_bytes, 256,
          "Longest event type accepted, in bytes.");
ABSL_FLAG(std::string, bus, "embedded",
          "Where events are kept: embedded (the event log in --data_dir, "
          "one server) or comma-separated NATS URLs "
          "(nats://host:4222,...) of a JetStream server or cluster, shared "
          "by any number of servers; see docs/scaling.md.");
ABSL_FLAG(std::string, nats_stream, "FANOUT",
          "With NATS: the JetStream stream that holds the events (created "
          "if missing).");
ABSL_FLAG(std::string, nats_subject_prefix, "fanout",
          "With NATS: the stream's subjects are <prefix>.<event type>.");
ABSL_FLAG(int, nats_stream_replicas, 1,
          "With NATS: copies of each event in the cluster (1, 3 or 5), "
          "when the stream is created.");
ABSL_FLAG(std::string, nats_stream_storage, "file",
          "With NATS: file or memory, when the stream is created.");
ABSL_FLAG(absl::Duration, nats_duplicate_window, absl::Hours(24),
          "With NATS: how long JetStream remembers a delivery id, so that "
          "a retry is answered as a duplicate; at most --retention_age.");
ABSL_FLAG(absl::Duration, nats_connect_timeout, absl::Seconds(30),
          "With NATS: how long the start waits for NATS and JetStream.");
ABSL_FLAG(absl::Duration, nats_request_timeout, absl::Seconds(5),
          "With NATS: longest wait for one JetStream answer (a publish "
          "acknowledgement, a lookup, a replay fetch).");
ABSL_FLAG(int, nats_max_pending_publishes, 4096,
          "With NATS: events awaiting JetStream's acknowledgement at most; "
          "deliveries beyond it are answered 503.");
ABSL_FLAG(int, nats_tail_batch, 256,
          "With NATS: events the consumer feeding subscribers takes per "
          "request.");
ABSL_FLAG(std::string, nats_creds_file, "",
          "With NATS: a credentials file (user JWT and seed) to connect "
          "with; readable by its owner (and group) only.");
ABSL_FLAG(std::string, nats_tls_ca_file, "",
          "With NATS: PEM CAs that signed the NATS servers' certificates; "
          "turns on TLS (as do tls:// URLs; empty: the system's CAs).");
ABSL_FLAG(std::string, nats_tls_cert_file, "",
          "With NATS: PEM client certificate chain, for NATS servers that "
          "verify clients (with --nats_tls_key_file).");
ABSL_FLAG(std::string, nats_tls_key_file, "",
          "With NATS: PEM private key of --nats_tls_cert_file; readable by "
          "its owner (and group) only.");
ABSL_FLAG(std::string, data_dir, "data",
          "Folder of the event log (created if missing).");
ABSL_FLAG(std::string, sync, "normal",
          "When the event log syncs to disk. normal: an acknowledged event "
          "survives a crash of this process, not of the machine; full: "
          "every commit is synced, surviving power loss too (slower).");
ABSL_FLAG(absl::Duration, retention_age, absl::Hours(24 * 7),
          "Events received longer ago than this are deleted (0: keep).");
ABSL_FLAG(uint64_t, retention_bytes, 0,
          "Stored event bytes kept at most, oldest deleted first (0: no "
          "limit).");
ABSL_FLAG(absl::Duration, retention_interval, absl::Minutes(1),
          "How often retention runs.");
ABSL_FLAG(uint64_t, log_max_batch, 256,
          "Most deliveries committed to the event log in one transaction.");
ABSL_FLAG(uint64_t, log_checkpoint_bytes, 4 << 20,
          "Write-ahead log bytes not yet copied into the event log's "
          "database that start a checkpoint (on a thread of its own).");
ABSL_FLAG(uint64_t, log_wal_max_bytes, 64 << 20,
          "Largest the event log's write-ahead log may grow; past it, "
          "commits wait while a checkpoint starts it over.");
ABSL_FLAG(uint64_t, hub_window_events, 8192,
          "Recent events kept in memory for subscribers; subscribers further "
          "behind are served from the event log.");
ABSL_FLAG(uint64_t, hub_window_bytes, 64 << 20,
          "Memory the in-memory window of recent events may take.");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(15),
          "A stream with nothing to send for this long gets a heartbeat.");
ABSL_FLAG(uint64_t, replay_batch, 256,
          "Events read from the log at a time for a stream that is behind.");
ABSL_FLAG(uint64_t, replay_batch_bytes, 4 << 20,
          "Stored bytes read from the log at a time for a stream that is "
          "behind (at least one event is read).");
ABSL_FLAG(uint64_t, max_subscribe_patterns, 64,
          "Most event type patterns in one Subscribe request.");
ABSL_FLAG(uint64_t, max_pattern_bytes, 256,
          "Longest event type pattern accepted in a Subscribe request, in "
          "bytes. With --max_subscribe_patterns it also sets the largest "
          "Subscribe request gRPC accepts.");
ABSL_FLAG(uint64_t, max_conversion_problems, 64,
          "Most conversion problems listed on one event; the rest are "
          "counted in one last entry.");
ABSL_FLAG(uint64_t, max_problem_path_bytes, 256,
          "Longest field path of a conversion problem, in bytes; longer "
          "ones are cut.");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(5),
          "On SIGTERM, time deliveries in flight get to be committed and "
          "answered, and then time open gRPC streams get to end; stopping "
          "can take twice this.");
ABSL_FLAG(std::string, secrets_file, "",
          "File of webhook signing secrets, one per line (several while "
          "rotating; '#' starts a comment). The environment variable "
          "FANOUT_WEBHOOK_SECRETS (comma-separated) adds more. Secrets are "
          "never taken from the command line.");
ABSL_FLAG(bool, create_secrets_file, false,
          "If --secrets_file does not exist, create it with a new random "
          "secret (for development: fanout-send signs with the same file).");
ABSL_FLAG(bool, allow_unsigned, false,
          "DEVELOPMENT ONLY: accept deliveries without a valid signature when "
          "no secret is configured.");
ABSL_FLAG(absl::Duration, signature_tolerance, absl::Minutes(5),
          "How far a delivery's signed timestamp may be from this clock.");
ABSL_FLAG(std::string, log_level, "info",
          "One of trace, debug, info, warn, error, critical, off.");

namespace {

// Every flag above can also be set with FANOUT_<NAME>; see --help.
fanout::ProgramFlagsOptions ProgramFlags() {
  fanout::ProgramFlagsOptions options;
  options.env_prefix = "FANOUT_";
  options.other_variables = {
      {"FANOUT_WEBHOOK_SECRETS",
       "Webhook signing secrets, comma-separated, added to those of "
       "--secrets_file. Secrets have no flag, so that they never appear on "
       "a command line."}};
  // The clients' variables (client/): they share the FANOUT_ namespace.
  options.foreign_variables = {"FANOUT_SEND_", "FANOUT_SUBSCRIBE_",
                               "FANOUT_WEBHOOK_SECRET", "FANOUT_PYTHON_STUBS"};
  return options;
}

// Collects the webhook secrets from --secrets_file (creating it when asked)
// and FANOUT_WEBHOOK_SECRETS. Never logs a secret.
absl::Status LoadSecrets(std::vector<std::string>* secrets) {
  const std::string path = absl::GetFlag(FLAGS_secrets_file);
  if (!path.empty()) {
    absl::StatusOr<std::vector<std::string>> from_file =
        fanout::ReadSecretsFile(path);
    if (absl::IsNotFound(from_file.status()) &&
        absl::GetFlag(FLAGS_create_secrets_file)) {
      std::error_code ignored;
      std::filesystem::create_directories(
          std::filesystem::path(path).parent_path(), ignored);
      absl::StatusOr<std::string> created = fanout::CreateSecretsFile(path);
      if (!created.ok()) return created.status();
      spdlog::warn("created a development webhook secret path={}", path);
      from_file = std::vector<std::string>{*created};
    }
    if (!from_file.ok()) return from_file.status();
    *secrets = *std::move(from_file);
    if (fanout::OthersMayAccess(path)) {
      spdlog::warn(
          "webhook secrets file {} is accessible to other users; "
          "run chmod o-rwx {}",
          path, path);
    }
  }
  if (const char* env = std::getenv("FANOUT_WEBHOOK_SECRETS")) {
    for (std::string& secret : fanout::ParseSecretsList(env)) {
      secrets->push_back(std::move(secret));
    }
  }
  if (!secrets->empty()) {
    spdlog::info("verifying webhook signatures secrets={}", secrets->size());
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Usage: fanout-server [FLAGS]\n"
      "Receives Staffify webhooks on POST /webhooks and streams them as\n"
      "typed protobuf events to gRPC subscribers.");
  absl::StatusOr<fanout::ParsedFlags> flags =
      fanout::ParseProgramFlags(argc, argv, ProgramFlags());
  if (!flags.ok()) {
    spdlog::critical("cannot start error={:?}",
                     std::string(flags.status().message()));
    return EXIT_FAILURE;
  }
  // Debian's Abseil is built with its debug checks, among them a lock-order
  // graph updated under a global lock on every Mutex acquisition: a cost
  // and a point of contention on every delivery. The tests keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (!flags->args.empty()) {
    std::fprintf(stderr,
                 "fanout-server: unexpected argument \"%s\"; see --help\n",
                 flags->args.front().c_str());
    return EXIT_FAILURE;
  }

  const std::string level = absl::GetFlag(FLAGS_log_level);
  spdlog::set_level(spdlog::level::from_str(level));
  if (spdlog::get_level() == spdlog::level::off && level != "off") {
    spdlog::set_level(spdlog::level::info);
    spdlog::critical("cannot start: unknown --log_level log_level={:?}", level);
    return EXIT_FAILURE;
  }
  if (!flags->from_environment.empty()) {
    spdlog::info("flags from environment variables={}",
                 absl::StrJoin(flags->from_environment, ","));
  }
  for (const std::string& unknown : flags->unknown_variables) {
    spdlog::warn("environment variable sets no flag (misspelt?) variable={}",
                 unknown);
  }

  fanout::FanoutServerOptions options;
  absl::Status secrets = LoadSecrets(&options.webhook_secrets);
  if (!secrets.ok()) {
    spdlog::critical("cannot start error={:?}", secrets.ToString());
    return EXIT_FAILURE;
  }
  options.allow_unsigned = absl::GetFlag(FLAGS_allow_unsigned);
  options.signature_tolerance = absl::GetFlag(FLAGS_signature_tolerance);
  options.http.address = absl::GetFlag(FLAGS_http_address);
  options.http.port = absl::GetFlag(FLAGS_http_port);
  options.http.max_body_bytes = absl::GetFlag(FLAGS_max_body_bytes);
  options.http.max_header_bytes = absl::GetFlag(FLAGS_max_header_bytes);
  options.http.header_timeout = absl::GetFlag(FLAGS_http_header_timeout);
  options.http.body_timeout = absl::GetFlag(FLAGS_http_body_timeout);
  options.http.write_timeout = absl::GetFlag(FLAGS_http_write_timeout);
  options.http.idle_timeout = absl::GetFlag(FLAGS_http_idle_timeout);
  options.http.max_connections = absl::GetFlag(FLAGS_http_max_connections);
  options.http_threads = absl::GetFlag(FLAGS_http_threads);
  options.grpc_address = absl::GetFlag(FLAGS_grpc_address);
  fanout::GrpcConnectionOptions& grpc_connections = options.grpc_connections;
  grpc_connections.keepalive_time = absl::GetFlag(FLAGS_grpc_keepalive_time);
  grpc_connections.keepalive_timeout =
      absl::GetFlag(FLAGS_grpc_keepalive_timeout);
  grpc_connections.min_client_ping_interval =
      absl::GetFlag(FLAGS_grpc_min_client_ping_interval);
  grpc_connections.max_ping_strikes =
      absl::GetFlag(FLAGS_grpc_max_ping_strikes);
  grpc_connections.max_connection_idle =
      absl::GetFlag(FLAGS_grpc_max_connection_idle);
  grpc_connections.max_connection_age =
      absl::GetFlag(FLAGS_grpc_max_connection_age);
  grpc_connections.max_connection_age_grace =
      absl::GetFlag(FLAGS_grpc_max_connection_age_grace);
  options.grpc_tls.cert_file = absl::GetFlag(FLAGS_grpc_tls_cert);
  options.grpc_tls.key_file = absl::GetFlag(FLAGS_grpc_tls_key);
  options.grpc_tls.client_ca_file = absl::GetFlag(FLAGS_grpc_tls_client_ca);
  options.access_tokens_file = absl::GetFlag(FLAGS_access_tokens_file);
  options.converter.max_json_depth = absl::GetFlag(FLAGS_max_json_depth);
  options.converter.max_id_bytes = absl::GetFlag(FLAGS_max_id_bytes);
  options.converter.max_event_type_bytes =
      absl::GetFlag(FLAGS_max_event_type_bytes);
  options.hub.window_events = absl::GetFlag(FLAGS_hub_window_events);
  options.hub.window_bytes = absl::GetFlag(FLAGS_hub_window_bytes);
  options.converter.max_event_bytes = absl::GetFlag(FLAGS_max_event_bytes);
  options.service.replay_batch_bytes =
      std::max<uint64_t>(1, absl::GetFlag(FLAGS_replay_batch_bytes));
  options.log.data_dir = absl::GetFlag(FLAGS_data_dir);
  const std::string sync = absl::GetFlag(FLAGS_sync);
  if (sync == "normal") {
    options.log.sync = fanout::SyncPolicy::kNormal;
  } else if (sync == "full") {
    options.log.sync = fanout::SyncPolicy::kFull;
  } else {
    spdlog::critical("cannot start: --sync must be normal or full sync={:?}",
                     sync);
    return EXIT_FAILURE;
  }
  options.log.retention_age = absl::GetFlag(FLAGS_retention_age);
  options.bus = absl::GetFlag(FLAGS_bus);
  options.nats.stream = absl::GetFlag(FLAGS_nats_stream);
  options.nats.subject_prefix = absl::GetFlag(FLAGS_nats_subject_prefix);
  options.nats.replicas = absl::GetFlag(FLAGS_nats_stream_replicas);
  const std::string storage = absl::GetFlag(FLAGS_nats_stream_storage);
  if (storage != "file" && storage != "memory") {
    spdlog::critical(
        "cannot start: --nats_stream_storage must be file or memory "
        "storage={:?}",
        storage);
    return EXIT_FAILURE;
  }
  options.nats.memory_storage = storage == "memory";
  options.nats.duplicate_window = absl::GetFlag(FLAGS_nats_duplicate_window);
  options.nats.connect_timeout = absl::GetFlag(FLAGS_nats_connect_timeout);
  options.nats.request_timeout = absl::GetFlag(FLAGS_nats_request_timeout);
  options.nats.max_pending_publishes =
      absl::GetFlag(FLAGS_nats_max_pending_publishes);
  options.nats.tail_batch = absl::GetFlag(FLAGS_nats_tail_batch);
  options.nats.creds_file = absl::GetFlag(FLAGS_nats_creds_file);
  options.nats.tls_ca_file = absl::GetFlag(FLAGS_nats_tls_ca_file);
  options.nats.tls_cert_file = absl::GetFlag(FLAGS_nats_tls_cert_file);
  options.nats.tls_key_file = absl::GetFlag(FLAGS_nats_tls_key_file);
  options.log.retention_bytes = absl::GetFlag(FLAGS_retention_bytes);
  options.log.retention_interval = absl::GetFlag(FLAGS_retention_interval);
  options.log.max_batch =
      std::max<uint64_t>(1, absl::GetFlag(FLAGS_log_max_batch));
  options.log.checkpoint_bytes = absl::GetFlag(FLAGS_log_checkpoint_bytes);
  options.log.wal_max_bytes = absl::GetFlag(FLAGS_log_wal_max_bytes);
  options.service.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  options.service.replay_batch =
      std::max<uint64_t>(1, absl::GetFlag(FLAGS_replay_batch));
  options.service.max_patterns = absl::GetFlag(FLAGS_max_subscribe_patterns);
  options.service.max_pattern_bytes = absl::GetFlag(FLAGS_max_pattern_bytes);
  options.converter.max_conversion_problems =
      absl::GetFlag(FLAGS_max_conversion_problems);
  options.converter.max_problem_path_bytes =
      absl::GetFlag(FLAGS_max_problem_path_bytes);
  options.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);

  // Block the stop signals before any thread starts, so that only the
  // sigwait below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto server = fanout::FanoutServer::Start(std::move(options));
  if (!server.ok()) {
    spdlog::critical("cannot start error={:?}", server.status().ToString());
    return EXIT_FAILURE;
  }

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  spdlog::info("shutting down signal={}",
               signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
  (*server)->Shutdown();
  return EXIT_SUCCESS;
}
