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
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/app/fanout_server.h"
#include "server/auth/signature_verifier.h"
#include "server/common/flags_help.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, http_address, "127.0.0.1",
          "Address the HTTP ingest endpoint listens on.");
ABSL_FLAG(uint16_t, http_port, 8080,
          "Port of the HTTP ingest endpoint (0 picks a free one).");
ABSL_FLAG(std::string, grpc_address, "127.0.0.1:50051",
          "host:port the gRPC Subscribe service listens on.");
ABSL_FLAG(int, http_threads, 2, "Threads serving HTTP connections.");
ABSL_FLAG(uint64_t, max_body_bytes, 1 << 20,
          "Largest delivery body accepted; larger ones get 413.");
ABSL_FLAG(uint64_t, max_header_bytes, 16 << 10,
          "Largest HTTP request line plus headers accepted; larger get 431.");
ABSL_FLAG(absl::Duration, http_request_timeout, absl::Seconds(30),
          "Time allowed to receive one whole request or send one response.");
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
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(5),
          "Time open gRPC streams get to end on shutdown.");
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
      spdlog::warn("created a development webhook secret in {}", path);
      from_file = std::vector<std::string>{*created};
    }
    if (!from_file.ok()) return from_file.status();
    *secrets = *std::move(from_file);
  }
  if (const char* env = std::getenv("FANOUT_WEBHOOK_SECRETS")) {
    for (std::string& secret : fanout::ParseSecretsList(env)) {
      secrets->push_back(std::move(secret));
    }
  }
  if (!secrets->empty()) {
    spdlog::info("verifying webhook signatures with {} secret(s)",
                 secrets->size());
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Receives Staffify webhooks on POST /webhooks and streams them as "
      "typed protobuf events to gRPC subscribers.");
  fanout::ShowOwnFlagsInHelp();
  const std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  // Debian's Abseil is built with its debug checks, among them a lock-order
  // graph updated under a global lock on every Mutex acquisition: a cost
  // and a point of contention on every delivery. The tests keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (args.size() > 1) {
    std::fprintf(stderr,
                 "fanout-server: unexpected argument \"%s\"; see --help\n",
                 args[1]);
    return EXIT_FAILURE;
  }

  const std::string level = absl::GetFlag(FLAGS_log_level);
  spdlog::set_level(spdlog::level::from_str(level));
  if (spdlog::get_level() == spdlog::level::off && level != "off") {
    spdlog::set_level(spdlog::level::info);
    spdlog::critical("unknown --log_level \"{}\"", level);
    return EXIT_FAILURE;
  }

  fanout::FanoutServerOptions options;
  absl::Status secrets = LoadSecrets(&options.webhook_secrets);
  if (!secrets.ok()) {
    spdlog::critical("cannot start: {}", secrets.ToString());
    return EXIT_FAILURE;
  }
  options.allow_unsigned = absl::GetFlag(FLAGS_allow_unsigned);
  options.signature_tolerance = absl::GetFlag(FLAGS_signature_tolerance);
  options.http.address = absl::GetFlag(FLAGS_http_address);
  options.http.port = absl::GetFlag(FLAGS_http_port);
  options.http.max_body_bytes = absl::GetFlag(FLAGS_max_body_bytes);
  options.http.max_header_bytes = absl::GetFlag(FLAGS_max_header_bytes);
  options.http.request_timeout = absl::GetFlag(FLAGS_http_request_timeout);
  options.http.idle_timeout = absl::GetFlag(FLAGS_http_idle_timeout);
  options.http.max_connections = absl::GetFlag(FLAGS_http_max_connections);
  options.http_threads = absl::GetFlag(FLAGS_http_threads);
  options.grpc_address = absl::GetFlag(FLAGS_grpc_address);
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
    spdlog::critical("--sync must be normal or full, not \"{}\"", sync);
    return EXIT_FAILURE;
  }
  options.log.retention_age = absl::GetFlag(FLAGS_retention_age);
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
    spdlog::critical("cannot start: {}", server.status().ToString());
    return EXIT_FAILURE;
  }

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  spdlog::info("received signal {}; shutting down", signal_number);
  (*server)->Shutdown();
  return EXIT_SUCCESS;
}
