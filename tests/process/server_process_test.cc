// Runs the real fanout-server binary as a child process, the way operators
// run it, and checks the guarantees that only show across a process
// boundary: acknowledged deliveries survive kill -9 exactly once, a stalled
// subscriber costs the server bounded memory, a delivery is stored and
// streamed once however often it is repeated, a resumed stream crosses
// from log replay to live events without a gap or a repeat, and flags can
// be set through the environment, the command line winning. And the
// security set-up as operators run it: fanout-server with mutual TLS and
// access tokens, and the fanout-subscribe binary connecting to it.

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/webhook_sender.h"
#include "gtest/gtest.h"
#include "server/auth/signature_verifier.h"
#include "staffify/fanout/v1/fanout.grpc.pb.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_certificates.h"

extern char** environ;

namespace fanout {
namespace {

// The webhook secret the servers under test verify signatures with.
constexpr char kSecret[] = "process-test-secret";

using staffify::fanout::v1::Event;
using staffify::fanout::v1::Fanout;
using staffify::fanout::v1::StartPosition;
using staffify::fanout::v1::SubscribeRequest;
using staffify::fanout::v1::SubscribeResponse;
using SteadyClock = std::chrono::steady_clock;

constexpr char kServerBinary[] = FANOUT_SERVER_BINARY;
constexpr char kSubscribeBinary[] = FANOUT_SUBSCRIBE_BINARY;
constexpr uint64_t kMiB = 1 << 20;

double SecondsSince(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Polls `condition` every few milliseconds until it holds or `timeout`
// passes; returns whether it held.
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// A thread that is joined when it goes out of scope, so that a failed
// ASSERT in the test body cannot leave it running.
class ScopedThread {
 public:
  explicit ScopedThread(std::function<void()> body)
      : thread_(std::move(body)) {}
  ~ScopedThread() { Join(); }

  ScopedThread(const ScopedThread&) = delete;
  ScopedThread& operator=(const ScopedThread&) = delete;

  void Join() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::thread thread_;
};

// Parses the decimal number that starts at `text[pos]` and runs up to the
// first character in `terminators`.
std::optional<uint16_t> PortAt(const std::string& text, size_t pos,
                               const char* terminators) {
  const size_t end = text.find_first_of(terminators, pos);
  if (pos == std::string::npos || end == std::string::npos) {
    return std::nullopt;
  }
  uint32_t port = 0;
  if (!absl::SimpleAtoi(absl::string_view(text).substr(pos, end - pos),
                        &port) ||
      port == 0 || port > 65535) {
    return std::nullopt;
  }
  return static_cast<uint16_t>(port);
}

// The environment of this process with `overrides` ("NAME=value") added,
// replacing variables of the same name.
std::vector<std::string> EnvironmentWith(
    const std::vector<std::string>& overrides) {
  std::vector<std::string> environment;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const absl::string_view variable = *entry;
    const absl::string_view name = variable.substr(0, variable.find('='));
    const bool replaced = std::any_of(
        overrides.begin(), overrides.end(), [&](const std::string& o) {
          return absl::StartsWith(o, absl::StrCat(name, "="));
        });
    if (!replaced) environment.emplace_back(variable);
  }
  environment.insert(environment.end(), overrides.begin(), overrides.end());
  return environment;
}

// Writes the secrets file that a server on `data_dir` verifies with, and
// returns the server's command line: `flags` after the flags that choose
// free ports, the data directory and that file.
std::vector<std::string> ServerCommandLine(
    const std::string& data_dir, const std::vector<std::string>& flags) {
  // The secrets file sits beside the data directory.
  const std::string secrets_path = data_dir + ".secrets";
  {
    std::ofstream secrets(secrets_path);
    secrets << kSecret << "\n";
  }
  std::vector<std::string> args = {
      kServerBinary,
      "--http_port=0",
      "--grpc_address=127.0.0.1:0",
      absl::StrCat("--data_dir=", data_dir),
      absl::StrCat("--secrets_file=", secrets_path),
      "--log_level=info"};
  args.insert(args.end(), flags.begin(), flags.end());
  return args;
}

// Starts `args` with `environment`, stdout and stderr appended to
// `log_path`. Returns the child's pid.
absl::StatusOr<pid_t> Spawn(std::vector<std::string> args,
                            std::vector<std::string> environment,
                            const std::string& log_path) {
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (std::string& variable : environment) envp.push_back(variable.data());
  envp.push_back(nullptr);

  // The child gets only stdin and the log file: it must not inherit this
  // process's client sockets, which would keep connections to an earlier
  // server instance half alive.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t no_signals;
  sigemptyset(&no_signals);
  posix_spawnattr_setsigmask(&attributes, &no_signals);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);

  pid_t pid = 0;
  const int error = posix_spawn(&pid, argv[0], &actions, &attributes,
                                argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (error != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot start ", argv[0], ": ", std::strerror(error)));
  }
  return pid;
}

// How a server that was expected to refuse to start ended.
struct Exit {
  int status = -1;  // The exit status; -1 if killed by a signal.
  std::string log;
};

// Runs the server on `data_dir` with `flags` and `environment` until it
// exits by itself. Returns DeadlineExceeded (after killing it) if it is
// still running after `timeout`.
absl::StatusOr<Exit> RunServerUntilExit(
    const std::string& data_dir, const std::string& log_path,
    const std::vector<std::string>& flags,
    const std::vector<std::string>& environment, absl::Duration timeout) {
  absl::StatusOr<pid_t> pid =
      Spawn(ServerCommandLine(data_dir, flags), environment, log_path);
  if (!pid.ok()) return pid.status();
  int status = 0;
  const bool exited =
      WaitFor([&] { return waitpid(*pid, &status, WNOHANG) == *pid; }, timeout);
  if (!exited) {
    kill(*pid, SIGKILL);
    waitpid(*pid, &status, 0);
    return absl::DeadlineExceededError(absl::StrCat(
        "server still running after ", absl::FormatDuration(timeout)));
  }
  Exit exit;
  exit.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  exit.log = ReadWholeFile(log_path);
  return exit;
}

// The fanout-server binary running as a child process on ports it picked
// itself (port 0), with stdout and stderr going to a log file. A process
// still running when this object is destroyed is killed with SIGKILL.
class ServerProcess {
 public:
  // Starts the server on `data_dir` with `flags` added to the port flags
  // and with `environment`, waits for its "listening" line in `log_path`
  // and then for its HTTP port to answer. Returns Unavailable, with the
  // log, if it exits or is not ready within 20 seconds.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const std::string& data_dir, const std::string& log_path,
      const std::vector<std::string>& flags,
      const std::vector<std::string>& environment = EnvironmentWith({}));

  ~ServerProcess() {
    if (pid_ > 0) Kill();
  }

  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // kill -9, then reaps the process.
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  // Sends SIGTERM and waits up to `grace` for the process to exit; kills
  // it if it does not. Returns OK for a clean exit with status 0.
  absl::Status Terminate(absl::Duration grace) {
    if (pid_ <= 0) return absl::FailedPreconditionError("not running");
    kill(pid_, SIGTERM);
    int status = 0;
    pid_t reaped = 0;
    WaitFor(
        [&] {
          reaped = waitpid(pid_, &status, WNOHANG);
          return reaped != 0;
        },
        grace);
    if (reaped == 0) {
      Kill();
      return absl::DeadlineExceededError(
          absl::StrCat("server did not exit within ",
                       absl::FormatDuration(grace), " of SIGTERM"));
    }
    pid_ = -1;
    if (reaped < 0) return absl::InternalError("waitpid failed");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      return absl::InternalError(
          absl::StrCat("server ended with wait status ", status));
    }
    return absl::OkStatus();
  }

  // A "Vm..." line of /proc/PID/status (VmRSS, VmHWM), in bytes.
  absl::StatusOr<uint64_t> MemoryBytes(absl::string_view field) const {
    std::ifstream status(absl::StrCat("/proc/", pid_, "/status"));
    const std::string prefix = absl::StrCat(field, ":");
    std::string line;
    while (std::getline(status, line)) {
      if (!absl::StartsWith(line, prefix)) continue;
      std::istringstream value(line.substr(prefix.size()));
      uint64_t kib = 0;
      std::string unit;
      if (value >> kib >> unit && unit == "kB") return kib * 1024;
    }
    return absl::NotFoundError(
        absl::StrCat(field, " not in /proc/", pid_, "/status"));
  }

  std::string Log() const { return ReadWholeFile(log_path_); }
  pid_t pid() const { return pid_; }
  HttpUrl webhook_url() const {
    return HttpUrl{"127.0.0.1", std::to_string(http_port_), "/webhooks"};
  }
  std::string grpc_target() const {
    return absl::StrCat("127.0.0.1:", grpc_port_);
  }

 private:
  ServerProcess(pid_t pid, std::string log_path)
      : pid_(pid), log_path_(std::move(log_path)) {}

  // Reads the ports from the "listening" line, e.g. "listening
  // http=127.0.0.1:41234 grpc=127.0.0.1:41235 webhook_path=/webhooks".
  // Returns false while the line is not there yet.
  bool ParseListeningLine() {
    const std::string log = Log();
    const size_t line = log.find("listening http=");
    if (line == std::string::npos) return false;
    const size_t http_end = log.find(" grpc=", line);
    const size_t grpc_end = log.find(" webhook_path=", line);
    if (http_end == std::string::npos || grpc_end == std::string::npos) {
      return false;
    }
    std::optional<uint16_t> http_port =
        PortAt(log, log.rfind(':', http_end) + 1, " ");
    std::optional<uint16_t> grpc_port =
        PortAt(log, log.rfind(':', grpc_end) + 1, " ");
    if (!http_port.has_value() || !grpc_port.has_value()) return false;
    http_port_ = *http_port;
    grpc_port_ = *grpc_port;
    return true;
  }

  pid_t pid_;
  const std::string log_path_;
  uint16_t http_port_ = 0;
  uint16_t grpc_port_ = 0;
};

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const std::string& data_dir, const std::string& log_path,
    const std::vector<std::string>& flags,
    const std::vector<std::string>& environment) {
  absl::StatusOr<pid_t> spawned =
      Spawn(ServerCommandLine(data_dir, flags), environment, log_path);
  if (!spawned.ok()) return spawned.status();
  const pid_t pid = *spawned;
  std::unique_ptr<ServerProcess> server(new ServerProcess(pid, log_path));

  bool exited = false;
  const bool listening = WaitFor(
      [&] {
        int status = 0;
        exited = waitpid(pid, &status, WNOHANG) == pid;
        return exited || server->ParseListeningLine();
      },
      absl::Seconds(20));
  if (exited) server->pid_ = -1;
  if (!listening || exited) {
    return absl::UnavailableError(absl::StrCat(
        "server did not start listening; its log:\n", server->Log()));
  }

  // Any HTTP answer, even 404, shows the ingest endpoint is serving.
  WebhookSender probe(
      HttpUrl{"127.0.0.1", std::to_string(server->http_port_), "/"},
      absl::Seconds(1));
  const bool ready = WaitFor([&] { return probe.Send("GET", "", {}).ok(); },
                             absl::Seconds(20));
  if (!ready) {
    return absl::UnavailableError(absl::StrCat("HTTP port ", server->http_port_,
                                               " does not answer; log:\n",
                                               server->Log()));
  }
  return server;
}

// A small delivery of `type`, an event type the service models.
std::string DeliveryBody(const std::string& id,
                         const std::string& type = "test.ping") {
  return absl::StrCat(R"({"id":")", id, R"(","event":")", type,
                      R"(",)"
                      R"("timestamp":"2026-03-01T19:00:00.000Z",)"
                      R"("data":{"message":"process test"}})");
}

// The service's 2xx answer to one delivery.
struct Ack {
  std::string id;
  uint64_t sequence = 0;
  bool duplicate = false;
};

// POSTs `body`, signed as Staffify signs, so that every test also
// exercises the check. Returns the answer, or the sender's error.
absl::StatusOr<HttpAnswer> PostSigned(WebhookSender* sender,
                                      const std::string& body) {
  const std::string timestamp =
      std::to_string(absl::ToUnixSeconds(absl::Now()));
  return sender->Send(
      "POST", body,
      {{"Content-Type", "application/json"},
       {"X-Webhook-Timestamp", timestamp},
       {"X-Webhook-Signature", SignWebhook(kSecret, timestamp, body)}});
}

// POSTs delivery `id`. Returns its answer; the sender's error when the
// exchange failed; Internal for a non-2xx status or a malformed answer.
absl::StatusOr<Ack> Deliver(WebhookSender* sender, const std::string& id,
                            const std::string& type = "test.ping") {
  absl::StatusOr<HttpAnswer> answer =
      PostSigned(sender, DeliveryBody(id, type));
  if (!answer.ok()) return answer.status();
  if (answer->status / 100 != 2) {
    return absl::InternalError(
        absl::StrCat("HTTP ", answer->status, " for ", id, ": ", answer->body));
  }
  boost::system::error_code ec;
  const boost::json::value json = boost::json::parse(answer->body, ec);
  const boost::json::object* object = ec ? nullptr : json.if_object();
  const boost::json::value* status =
      object != nullptr ? object->if_contains("status") : nullptr;
  const boost::json::value* sequence =
      object != nullptr ? object->if_contains("sequence") : nullptr;
  const boost::json::value* echoed_id =
      object != nullptr ? object->if_contains("id") : nullptr;
  if (status == nullptr || !status->is_string() || sequence == nullptr ||
      echoed_id == nullptr || !echoed_id->is_string() ||
      echoed_id->as_string() != id) {
    return absl::InternalError(
        absl::StrCat("malformed answer for ", id, ": ", answer->body));
  }
  Ack ack;
  ack.id = id;
  ack.sequence = sequence->to_number<uint64_t>(ec);
  if (ec || ack.sequence == 0 ||
      (status->as_string() != "accepted" &&
       status->as_string() != "duplicate")) {
    return absl::InternalError(
        absl::StrCat("malformed answer for ", id, ": ", answer->body));
  }
  ack.duplicate = status->as_string() == "duplicate";
  return ack;
}

StartPosition FromOldest() {
  StartPosition start;
  start.set_from_oldest(true);
  return start;
}

StartPosition AfterSequence(uint64_t sequence) {
  StartPosition start;
  start.set_after_sequence(sequence);
  return start;
}

// What one Subscribe stream delivered before its reader stopped.
struct StreamRecord {
  std::vector<Event> events;
  std::vector<uint64_t> heartbeats;
  // True when the reader stopped because `visit` asked it to; false when
  // the stream ended (see `status`) or its deadline passed.
  bool stopped_by_reader = false;
  grpc::Status status;
};

// Called with each response (after it is recorded); returns whether to stop
// reading. May block, to hold the stream's reader back.
using ResponseVisitor = std::function<bool(const SubscribeResponse&)>;

// Subscribes to every event type from `start` and records what arrives
// until `visit` says stop, the stream ends, or `timeout` passes.
StreamRecord ReadStream(const std::string& target, const StartPosition& start,
                        const ResponseVisitor& visit, absl::Duration timeout,
                        const grpc::ChannelArguments& channel_args = {}) {
  std::unique_ptr<Fanout::Stub> stub =
      Fanout::NewStub(grpc::CreateCustomChannel(
          target, grpc::InsecureChannelCredentials(), channel_args));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoNanoseconds(timeout));
  SubscribeRequest request;
  *request.mutable_start() = start;
  std::unique_ptr<grpc::ClientReader<SubscribeResponse>> reader =
      stub->Subscribe(&context, request);

  StreamRecord record;
  SubscribeResponse response;
  while (reader->Read(&response)) {
    if (response.has_event()) {
      record.events.push_back(response.event());
    } else if (response.has_heartbeat()) {
      record.heartbeats.push_back(response.heartbeat().sequence());
    }
    if (visit(response)) {
      record.stopped_by_reader = true;
      context.TryCancel();
      break;
    }
  }
  record.status = reader->Finish();
  return record;
}

bool UntilHeartbeat(const SubscribeResponse& response) {
  return response.has_heartbeat();
}

// Returns "" when `events` carry exactly the sequences first, first + 1,
// ... in order, else a description of the first departure.
std::string FirstOrderError(const std::vector<Event>& events, uint64_t first) {
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i].sequence() != first + i) {
      return absl::StrCat("event #", i, " has seq ", events[i].sequence(),
                          ", expected ", first + i,
                          " (previous: ", i == 0 ? 0 : events[i - 1].sequence(),
                          ")");
    }
  }
  return "";
}

// A run of the fanout-subscribe binary, its stdout and stderr going to
// files. Killed if still running when destroyed.
class SubscribeProcess {
 public:
  // Starts fanout-subscribe with `args`; output files are `prefix`.out and
  // `prefix`.err.
  static absl::StatusOr<std::unique_ptr<SubscribeProcess>> Start(
      const std::string& prefix, const std::vector<std::string>& args) {
    std::unique_ptr<SubscribeProcess> process(new SubscribeProcess(prefix));
    std::vector<std::string> all = {kSubscribeBinary};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& arg : all) argv.push_back(arg.data());
    argv.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO,
                                     process->out_path_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO,
                                     process->err_path_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    sigset_t no_signals;
    sigemptyset(&no_signals);
    posix_spawnattr_setsigmask(&attributes, &no_signals);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);
    const int error = posix_spawn(&process->pid_, kSubscribeBinary, &actions,
                                  &attributes, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    if (error != 0) {
      return absl::UnavailableError(absl::StrCat(
          "cannot start ", kSubscribeBinary, ": ", std::strerror(error)));
    }
    return process;
  }

  ~SubscribeProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // The lines printed so far, once at least `count` were, or after 20 s.
  std::vector<std::string> WaitForLines(size_t count) const {
    std::vector<std::string> lines;
    WaitFor(
        [&] {
          std::vector<std::string> split =
              absl::StrSplit(ReadWholeFile(out_path_), '\n', absl::SkipEmpty());
          lines = std::move(split);
          return lines.size() >= count;
        },
        absl::Seconds(20));
    return lines;
  }

  // Waits up to 20 s for the process to exit on its own (after SIGTERM
  // when `terminate`); returns its exit status, or -1 if it did not exit
  // (it is then killed).
  int WaitForExit(bool terminate) {
    if (terminate) kill(pid_, SIGTERM);
    int status = 0;
    const bool exited =
        WaitFor([&] { return waitpid(pid_, &status, WNOHANG) == pid_; },
                absl::Seconds(20));
    if (!exited) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
    return exited && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  std::string Stderr() const { return ReadWholeFile(err_path_); }

 private:
  explicit SubscribeProcess(const std::string& prefix)
      : out_path_(prefix + ".out"), err_path_(prefix + ".err") {}

  pid_t pid_ = -1;
  const std::string out_path_;
  const std::string err_path_;
};

// Writes `text` into a new file at `path` that only its owner may read.
void WriteSecretFile(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
}

class ServerProcessTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // A write to a socket the killed server left behind must come back as
    // an error, not end the test program.
    signal(SIGPIPE, SIG_IGN);
  }

  void TearDown() override {
    if (!HasFailure()) return;
    for (const std::string& path : log_paths_) {
      std::string log = ReadWholeFile(path);
      if (log.size() > 6000) log = "..." + log.substr(log.size() - 6000);
      std::printf("---- %s ----\n%s\n", path.c_str(), log.c_str());
    }
  }

  // A new log file for the next server of this test.
  const std::string& NextLogPath() {
    log_paths_.push_back(
        absl::StrCat(root_.path(), "/server-", log_paths_.size() + 1, ".log"));
    return log_paths_.back();
  }

  // Starts a server on this test's data dir, with `variables` ("NAME=value")
  // added to its environment; each start logs to a file of its own.
  absl::StatusOr<std::unique_ptr<ServerProcess>> StartServer(
      const std::vector<std::string>& flags,
      const std::vector<std::string>& variables = {}) {
    const std::string& log_path = NextLogPath();
    const auto start = SteadyClock::now();
    auto server = ServerProcess::Start(data_dir_, log_path, flags,
                                       EnvironmentWith(variables));
    if (server.ok()) {
      std::printf("[ timing ] server pid %d ready in %.3f s\n",
                  (*server)->pid(), SecondsSince(start));
    }
    return server;
  }

  testing::TempDir root_;
  const std::string data_dir_ = root_.path() + "/data";
  std::vector<std::string> log_paths_;
};

TEST_F(ServerProcessTest, AcknowledgedDeliveriesSurviveKillNineExactlyOnce) {
  constexpr int kSenders = 8;
  constexpr size_t kKillAfterAcks = 1500;
  constexpr int kMaxPerSender = 50000;
  const std::vector<std::string> flags = {"--heartbeat_interval=200ms"};
  auto server = StartServer(flags);
  ASSERT_TRUE(server.ok()) << server.status();

  // Follows the stream from the start until the crash cuts it. It stops
  // reading at kFollowerHoldAt until the kill, with a small client window,
  // so that it is well behind when the server dies.
  constexpr uint64_t kFollowerHoldAt = 500;
  std::atomic<bool> killed{false};
  grpc::ChannelArguments small_window;
  small_window.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  small_window.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16 << 10);
  StreamRecord before_crash;
  ScopedThread follower([&] {
    before_crash = ReadStream(
        (*server)->grpc_target(), FromOldest(),
        [&](const SubscribeResponse& response) {
          if (response.event().sequence() == kFollowerHoldAt) {
            WaitFor([&] { return killed.load(); }, absl::Seconds(30));
          }
          return false;
        },
        absl::Seconds(60), small_window);
  });

  struct SenderRecord {
    std::vector<Ack> acks;
    std::vector<std::string> failed_ids;
    std::vector<std::string> errors;
    bool failed_before_kill = false;
  };
  std::vector<SenderRecord> records(kSenders);
  std::atomic<size_t> acked{0};
  std::atomic<bool> killing{false};
  const HttpUrl url = (*server)->webhook_url();
  const auto burst_start = SteadyClock::now();
  std::vector<std::thread> senders;
  for (int t = 0; t < kSenders; ++t) {
    senders.emplace_back([&, t] {
      SenderRecord& record = records[t];
      WebhookSender sender(url, absl::Seconds(10));
      for (int n = 0; n < kMaxPerSender; ++n) {
        const std::string id = absl::StrCat("wh_crash_", t, "_", n);
        absl::StatusOr<Ack> ack = Deliver(&sender, id);
        if (!ack.ok()) {
          record.failed_before_kill = !killing.load();
          record.failed_ids.push_back(id);
          record.errors.push_back(ack.status().ToString());
          return;
        }
        record.acks.push_back(*std::move(ack));
        acked.fetch_add(1);
      }
    });
  }

  WaitFor([&] { return acked.load() >= kKillAfterAcks; }, absl::Seconds(30));
  killing = true;
  const size_t acked_at_kill = acked.load();
  const double burst_seconds = SecondsSince(burst_start);
  (*server)->Kill();
  killed = true;
  for (std::thread& sender : senders) sender.join();
  follower.Join();
  ASSERT_GE(acked_at_kill, kKillAfterAcks) << "burst too slow";

  // Every sender was cut off by the kill, mid-burst, with one delivery in
  // flight whose fate it does not know.
  std::map<std::string, uint64_t> acked_sequence;
  std::set<uint64_t> acked_sequences;
  std::vector<std::string> failed_ids;
  for (const SenderRecord& record : records) {
    EXPECT_FALSE(record.failed_before_kill)
        << "a delivery failed before the kill: " << record.errors.front();
    ASSERT_EQ(record.failed_ids.size(), 1u) << "a sender was never cut off";
    failed_ids.push_back(record.failed_ids.front());
    for (const Ack& ack : record.acks) {
      EXPECT_FALSE(ack.duplicate) << ack.id << " is new but was a duplicate";
      acked_sequence[ack.id] = ack.sequence;
      EXPECT_TRUE(acked_sequences.insert(ack.sequence).second)
          << "two deliveries acknowledged with seq " << ack.sequence;
    }
  }
  std::printf(
      "[ timing ] crash burst: %zu acks in %.3f s (%.0f/s) before kill -9; "
      "%zu acks in total\n",
      acked_at_kill, burst_seconds, acked_at_kill / burst_seconds,
      acked_sequence.size());

  // The restarted server holds exactly what was acknowledged, plus perhaps
  // some of the deliveries in flight, numbered 1..K with no gap.
  auto restarted = StartServer(flags);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  const std::string target = (*restarted)->grpc_target();
  const auto read_start = SteadyClock::now();
  StreamRecord recovered =
      ReadStream(target, FromOldest(), UntilHeartbeat, absl::Seconds(30));
  ASSERT_TRUE(recovered.stopped_by_reader)
      << "no heartbeat after replay: " << recovered.status.error_message();
  const uint64_t stored_count = recovered.events.size();
  std::printf("[ timing ] replayed %llu events after restart in %.3f s\n",
              static_cast<unsigned long long>(stored_count),
              SecondsSince(read_start));
  EXPECT_EQ(FirstOrderError(recovered.events, 1), "");
  EXPECT_EQ(recovered.heartbeats.back(), stored_count);

  std::map<std::string, uint64_t> stored_sequence;
  for (const Event& event : recovered.events) {
    EXPECT_TRUE(stored_sequence.emplace(event.id(), event.sequence()).second)
        << event.id() << " is stored twice";
  }
  size_t lost = 0;
  size_t moved = 0;
  for (const auto& [id, sequence] : acked_sequence) {
    auto stored = stored_sequence.find(id);
    if (stored == stored_sequence.end()) {
      if (++lost <= 5) ADD_FAILURE() << "acknowledged " << id << " is lost";
    } else if (stored->second != sequence) {
      if (++moved <= 5) {
        ADD_FAILURE() << id << " was acknowledged as seq " << sequence
                      << " but is stored as seq " << stored->second;
      }
    }
  }
  EXPECT_EQ(lost, 0u);
  EXPECT_EQ(moved, 0u);
  const std::set<std::string> in_flight(failed_ids.begin(), failed_ids.end());
  size_t unacknowledged_stored = 0;
  for (const auto& [id, sequence] : stored_sequence) {
    if (acked_sequence.count(id) != 0) continue;
    ++unacknowledged_stored;
    EXPECT_EQ(in_flight.count(id), 1u)
        << "seq " << sequence << " holds " << id << ", never sent";
  }
  std::printf(
      "[ result ] stored %llu = %zu acknowledged + %zu in flight at the "
      "kill\n",
      static_cast<unsigned long long>(stored_count), acked_sequence.size(),
      unacknowledged_stored);

  // The subscriber cut off by the crash resumes after the last sequence it
  // processed and gets the rest exactly once.
  ASSERT_FALSE(before_crash.events.empty());
  EXPECT_EQ(before_crash.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << before_crash.status.error_message();
  EXPECT_EQ(FirstOrderError(before_crash.events, 1), "");
  const uint64_t resume_after = before_crash.events.back().sequence();
  ASSERT_GE(resume_after, kFollowerHoldAt);
  ASSERT_LT(resume_after, stored_count) << "the follower was not behind";
  for (const Event& event : before_crash.events) {
    ASSERT_EQ(event.id(), recovered.events[event.sequence() - 1].id());
  }
  StreamRecord resumed = ReadStream(target, AfterSequence(resume_after),
                                    UntilHeartbeat, absl::Seconds(30));
  ASSERT_TRUE(resumed.stopped_by_reader)
      << "no heartbeat after resume: " << resumed.status.error_message();
  EXPECT_EQ(resumed.events.size(), stored_count - resume_after);
  EXPECT_EQ(FirstOrderError(resumed.events, resume_after + 1), "");
  for (const Event& event : resumed.events) {
    ASSERT_EQ(event.id(), recovered.events[event.sequence() - 1].id());
  }
  std::printf(
      "[ result ] follower saw seq 1..%llu before the crash, %zu "
      "more after resuming\n",
      static_cast<unsigned long long>(resume_after), resumed.events.size());

  // A delivery whose answer the crash swallowed is simply sent again: it
  // is a duplicate of what was stored, or new.
  WebhookSender retry((*restarted)->webhook_url());
  uint64_t next_new = stored_count + 1;
  for (const std::string& id : failed_ids) {
    absl::StatusOr<Ack> ack = Deliver(&retry, id);
    ASSERT_TRUE(ack.ok()) << ack.status();
    auto stored = stored_sequence.find(id);
    if (stored != stored_sequence.end()) {
      EXPECT_TRUE(ack->duplicate) << id;
      EXPECT_EQ(ack->sequence, stored->second) << id;
    } else {
      EXPECT_FALSE(ack->duplicate) << id;
      EXPECT_EQ(ack->sequence, next_new++) << id;
    }
  }
  // So is one that was acknowledged: the last each sender got an answer
  // for, the likeliest to be lost had the commit not been durable.
  for (const SenderRecord& record : records) {
    if (record.acks.empty()) continue;
    const Ack& last = record.acks.back();
    absl::StatusOr<Ack> ack = Deliver(&retry, last.id);
    ASSERT_TRUE(ack.ok()) << ack.status();
    EXPECT_TRUE(ack->duplicate) << last.id;
    EXPECT_EQ(ack->sequence, last.sequence) << last.id;
  }
  StreamRecord final_log =
      ReadStream(target, FromOldest(), UntilHeartbeat, absl::Seconds(30));
  ASSERT_TRUE(final_log.stopped_by_reader);
  EXPECT_EQ(final_log.events.size(), next_new - 1);
  EXPECT_EQ(FirstOrderError(final_log.events, 1), "");
  std::set<std::string> final_ids;
  for (const Event& event : final_log.events) final_ids.insert(event.id());
  EXPECT_EQ(final_ids.size(), final_log.events.size());
  for (const std::string& id : failed_ids) EXPECT_EQ(final_ids.count(id), 1u);
}

TEST_F(ServerProcessTest,
       StalledSubscriberCostsBoundedMemoryAndHoldsNoOneBack) {
  constexpr uint64_t kEvents = 100000;
  constexpr int kSenders = 4;
  // The issue's target: one stalled subscriber may cost at most this much
  // resident memory while the events it does not read pile up.
  constexpr uint64_t kMaxGrowth = 64 * kMiB;
  auto server = StartServer({});
  ASSERT_TRUE(server.ok()) << server.status();

  // A raw Subscribe call that is started and then not read until the end.
  std::unique_ptr<Fanout::Stub> stub = Fanout::NewStub(grpc::CreateChannel(
      (*server)->grpc_target(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(120));
  SubscribeRequest request;
  *request.mutable_start() = FromOldest();
  std::unique_ptr<grpc::ClientReader<SubscribeResponse>> stalled =
      stub->Subscribe(&context, request);
  ASSERT_TRUE(
      WaitFor([&] { return absl::StrContains((*server)->Log(), "attached"); },
              absl::Seconds(10)))
      << "the subscriber never attached";

  absl::StatusOr<uint64_t> rss_before = (*server)->MemoryBytes("VmRSS");
  ASSERT_TRUE(rss_before.ok()) << rss_before.status();

  // Another subscriber keeps reading throughout; the stalled one must not
  // hold it back.
  StreamRecord live;
  ScopedThread live_reader([&] {
    live = ReadStream((*server)->grpc_target(), FromOldest(),
                      [](const SubscribeResponse& response) {
                        return response.has_event() &&
                               response.event().sequence() >= kEvents;
                      },
                      absl::Seconds(120));
  });

  std::vector<std::vector<Ack>> acks(kSenders);
  std::vector<std::string> errors(kSenders);
  const HttpUrl url = (*server)->webhook_url();
  const auto ingest_start = SteadyClock::now();
  std::vector<std::thread> senders;
  for (int t = 0; t < kSenders; ++t) {
    senders.emplace_back([&, t] {
      WebhookSender sender(url);
      for (uint64_t n = t; n < kEvents; n += kSenders) {
        absl::StatusOr<Ack> ack =
            Deliver(&sender, absl::StrCat("wh_memory_", n));
        if (!ack.ok()) {
          errors[t] = ack.status().ToString();
          return;
        }
        acks[t].push_back(*std::move(ack));
      }
    });
  }
  for (std::thread& sender : senders) sender.join();
  const double ingest_seconds = SecondsSince(ingest_start);
  for (const std::string& error : errors) ASSERT_EQ(error, "");

  absl::StatusOr<uint64_t> rss_after = (*server)->MemoryBytes("VmRSS");
  absl::StatusOr<uint64_t> peak_after = (*server)->MemoryBytes("VmHWM");
  ASSERT_TRUE(rss_after.ok()) << rss_after.status();
  ASSERT_TRUE(peak_after.ok()) << peak_after.status();
  const double growth_mib =
      (static_cast<double>(*rss_after) - *rss_before) / kMiB;
  const double peak_growth_mib =
      (static_cast<double>(*peak_after) - *rss_before) / kMiB;
  std::printf(
      "[ timing ] ingested %llu events with %d keep-alive senders in %.3f s "
      "(%.0f/s)\n",
      static_cast<unsigned long long>(kEvents), kSenders, ingest_seconds,
      kEvents / ingest_seconds);
  std::printf(
      "[ memory ] server VmRSS %.1f MiB after start+subscribe, %.1f MiB "
      "after ingest (growth %.1f MiB); VmHWM %.1f MiB (peak growth %.1f "
      "MiB); bound %.0f MiB\n",
      static_cast<double>(*rss_before) / kMiB,
      static_cast<double>(*rss_after) / kMiB, growth_mib,
      static_cast<double>(*peak_after) / kMiB, peak_growth_mib,
      static_cast<double>(kMaxGrowth) / kMiB);
  RecordProperty("rss_before_kib", std::to_string(*rss_before / 1024));
  RecordProperty("rss_after_kib", std::to_string(*rss_after / 1024));
  RecordProperty("hwm_after_kib", std::to_string(*peak_after / 1024));
  EXPECT_LE(*rss_after, *rss_before + kMaxGrowth);
  EXPECT_LE(*peak_after, *rss_before + kMaxGrowth);

  live_reader.Join();
  EXPECT_TRUE(live.stopped_by_reader) << live.status.error_message();
  EXPECT_EQ(live.events.size(), kEvents);
  EXPECT_EQ(FirstOrderError(live.events, 1), "");

  // Which delivery each sequence holds, from the answers.
  std::vector<std::string> id_at(kEvents + 1);
  for (const std::vector<Ack>& sender_acks : acks) {
    for (const Ack& ack : sender_acks) {
      ASSERT_FALSE(ack.duplicate) << ack.id;
      ASSERT_GE(ack.sequence, 1u);
      ASSERT_LE(ack.sequence, kEvents);
      ASSERT_EQ(id_at[ack.sequence], "") << "seq " << ack.sequence;
      id_at[ack.sequence] = ack.id;
    }
  }

  // Now the stalled subscriber reads: everything, in order.
  const auto drain_start = SteadyClock::now();
  SubscribeResponse response;
  uint64_t next = 1;
  size_t received = 0;
  std::string first_error;
  while (next <= kEvents && stalled->Read(&response)) {
    if (!response.has_event()) continue;
    ++received;
    const Event& event = response.event();
    if (first_error.empty() &&
        (event.sequence() != next || event.id() != id_at[next])) {
      first_error =
          absl::StrCat("expected seq ", next, " (", id_at[next], "), got seq ",
                       event.sequence(), " (", event.id(), ")");
    }
    next = event.sequence() + 1;
  }
  const double drain_seconds = SecondsSince(drain_start);
  context.TryCancel();
  const grpc::Status status = stalled->Finish();
  EXPECT_EQ(received, kEvents) << status.error_message();
  EXPECT_EQ(next, kEvents + 1);
  EXPECT_EQ(first_error, "");

  absl::StatusOr<uint64_t> rss_drained = (*server)->MemoryBytes("VmRSS");
  ASSERT_TRUE(rss_drained.ok()) << rss_drained.status();
  std::printf(
      "[ timing ] stalled subscriber then read %zu events in %.3f s "
      "(%.0f/s); server VmRSS %.1f MiB after the drain\n",
      received, drain_seconds, received / drain_seconds,
      static_cast<double>(*rss_drained) / kMiB);
}

TEST_F(ServerProcessTest, RepeatedDeliveryIsStoredAndStreamedOnce) {
  constexpr int kSenders = 8;
  const std::vector<std::string> flags = {"--heartbeat_interval=200ms"};
  auto server = StartServer(flags);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string repeated_id = "wh_repeated_1";

  // A subscriber that is live while the copies arrive; it stops at the
  // first heartbeat once everything below has been posted.
  std::atomic<uint64_t> last_posted{0};
  StreamRecord live;
  ScopedThread reader([&] {
    live = ReadStream((*server)->grpc_target(), FromOldest(),
                      [&](const SubscribeResponse& response) {
                        const uint64_t last = last_posted.load();
                        return response.has_heartbeat() && last != 0 &&
                               response.heartbeat().sequence() >= last;
                      },
                      absl::Seconds(30));
  });

  WebhookSender sender((*server)->webhook_url());
  for (const char* id : {"wh_before_1", "wh_before_2"}) {
    absl::StatusOr<Ack> ack = Deliver(&sender, id);
    ASSERT_TRUE(ack.ok()) << ack.status();
  }

  // Eight connections, opened first, send the same delivery at once.
  std::mutex gate_mu;
  std::condition_variable gate;
  int ready = 0;
  bool go = false;
  std::vector<absl::StatusOr<Ack>> answers(kSenders,
                                           absl::UnknownError("not sent"));
  const HttpUrl url = (*server)->webhook_url();
  std::vector<std::thread> senders;
  for (int t = 0; t < kSenders; ++t) {
    senders.emplace_back([&, t] {
      WebhookSender concurrent(url);
      concurrent.Send("GET", "", {}).IgnoreError();  // Connects.
      {
        std::unique_lock<std::mutex> lock(gate_mu);
        ++ready;
        gate.notify_all();
        gate.wait(lock, [&] { return go; });
      }
      answers[t] = Deliver(&concurrent, repeated_id);
    });
  }
  {
    std::unique_lock<std::mutex> lock(gate_mu);
    gate.wait_for(lock, std::chrono::seconds(10),
                  [&] { return ready == kSenders; });
    EXPECT_EQ(ready, kSenders);
    go = true;
  }
  gate.notify_all();
  for (std::thread& thread : senders) thread.join();

  int accepted = 0;
  std::set<uint64_t> sequences;
  for (const absl::StatusOr<Ack>& answer : answers) {
    ASSERT_TRUE(answer.ok()) << answer.status();
    if (!answer->duplicate) ++accepted;
    sequences.insert(answer->sequence);
  }
  EXPECT_EQ(accepted, 1);
  ASSERT_EQ(sequences.size(), 1u);
  const uint64_t repeated_sequence = *sequences.begin();
  EXPECT_EQ(repeated_sequence, 3u);

  // Later, after other deliveries, it is still the same event.
  for (const char* id : {"wh_after_1", "wh_after_2", "wh_after_3"}) {
    absl::StatusOr<Ack> ack = Deliver(&sender, id);
    ASSERT_TRUE(ack.ok()) << ack.status();
  }
  absl::StatusOr<Ack> later = Deliver(&sender, repeated_id);
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_TRUE(later->duplicate);
  EXPECT_EQ(later->sequence, repeated_sequence);

  last_posted = 6;
  reader.Join();
  ASSERT_TRUE(live.stopped_by_reader) << live.status.error_message();
  EXPECT_EQ(live.events.size(), 6u);
  EXPECT_EQ(FirstOrderError(live.events, 1), "");
  int streamed = 0;
  for (const Event& event : live.events) {
    if (event.id() == repeated_id) {
      ++streamed;
      EXPECT_EQ(event.sequence(), repeated_sequence);
    }
  }
  EXPECT_EQ(streamed, 1);

  // And after a restart, too.
  EXPECT_TRUE((*server)->Terminate(absl::Seconds(15)).ok());
  auto restarted = StartServer(flags);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  WebhookSender after_restart((*restarted)->webhook_url());
  absl::StatusOr<Ack> again = Deliver(&after_restart, repeated_id);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->duplicate);
  EXPECT_EQ(again->sequence, repeated_sequence);
  absl::StatusOr<Ack> fresh = Deliver(&after_restart, "wh_after_restart");
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(fresh->sequence, 7u);

  StreamRecord stored = ReadStream((*restarted)->grpc_target(), FromOldest(),
                                   UntilHeartbeat, absl::Seconds(30));
  ASSERT_TRUE(stored.stopped_by_reader) << stored.status.error_message();
  EXPECT_EQ(stored.events.size(), 7u);
  EXPECT_EQ(FirstOrderError(stored.events, 1), "");
  EXPECT_EQ(std::count_if(
                stored.events.begin(), stored.events.end(),
                [&](const Event& event) { return event.id() == repeated_id; }),
            1);
}

TEST_F(ServerProcessTest, ResumedStreamCrossesFromReplayToLiveExactlyOnce) {
  constexpr uint64_t kBefore = 500;
  constexpr uint64_t kDuring = 2000;
  constexpr uint64_t kLast = kBefore + kDuring;
  // The reader holds back at these sequences until the writer is this far
  // ahead, so that its stream drops out of the 64-event window (the client
  // window is kept small so that gRPC cannot absorb the difference) and
  // must go back to the log, then catches up with live events again.
  const std::vector<uint64_t> kPauses = {900, 1500, 2100};
  constexpr uint64_t kPauseLead = 400;
  auto server =
      StartServer({"--hub_window_events=64", "--heartbeat_interval=200ms"});
  ASSERT_TRUE(server.ok()) << server.status();

  std::mutex ids_mu;
  std::vector<std::string> id_at(kLast + 1);
  WebhookSender sender((*server)->webhook_url());
  for (uint64_t n = 1; n <= kBefore; ++n) {
    const std::string id = absl::StrCat("wh_replay_", n);
    absl::StatusOr<Ack> ack = Deliver(&sender, id);
    ASSERT_TRUE(ack.ok()) << ack.status();
    ASSERT_EQ(ack->sequence, n);
    id_at[n] = id;
  }

  std::atomic<uint64_t> written{kBefore};
  std::string writer_error;
  const auto start = SteadyClock::now();
  ScopedThread writer([&] {
    for (uint64_t n = kBefore + 1; n <= kLast; ++n) {
      const std::string id = absl::StrCat("wh_replay_", n);
      absl::StatusOr<Ack> ack = Deliver(&sender, id);
      if (!ack.ok() || ack->duplicate || ack->sequence != n) {
        writer_error = ack.ok() ? absl::StrCat(id, " got seq ", ack->sequence)
                                : ack.status().ToString();
        return;
      }
      {
        std::lock_guard<std::mutex> lock(ids_mu);
        id_at[n] = id;
      }
      written = n;
    }
  });

  grpc::ChannelArguments small_window;
  small_window.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  small_window.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16 << 10);
  int pauses_held = 0;
  StreamRecord resumed = ReadStream(
      (*server)->grpc_target(), AfterSequence(kBefore),
      [&](const SubscribeResponse& response) {
        if (!response.has_event()) return false;
        const uint64_t sequence = response.event().sequence();
        if (std::find(kPauses.begin(), kPauses.end(), sequence) !=
            kPauses.end()) {
          const uint64_t target = std::min(kLast, sequence + kPauseLead);
          if (written.load() < target) ++pauses_held;
          WaitFor([&] { return written.load() >= target; }, absl::Seconds(20));
        }
        return sequence >= kLast;
      },
      absl::Seconds(60), small_window);
  writer.Join();
  const double seconds = SecondsSince(start);
  ASSERT_EQ(writer_error, "");
  ASSERT_TRUE(resumed.stopped_by_reader) << resumed.status.error_message();

  EXPECT_EQ(resumed.events.size(), kDuring);
  EXPECT_EQ(FirstOrderError(resumed.events, kBefore + 1), "");
  std::lock_guard<std::mutex> lock(ids_mu);
  size_t wrong_ids = 0;
  for (const Event& event : resumed.events) {
    if (event.sequence() <= kLast && event.id() != id_at[event.sequence()]) {
      ++wrong_ids;
    }
  }
  EXPECT_EQ(wrong_ids, 0u);
  std::printf(
      "[ timing ] resumed after seq %llu while %llu more were posted: %zu "
      "events in %.3f s; reader held back %d times\n",
      static_cast<unsigned long long>(kBefore),
      static_cast<unsigned long long>(kDuring), resumed.events.size(), seconds,
      pauses_held);
}

// A delivery of about `bytes` bytes.
std::string DeliveryOfSize(const std::string& id, size_t bytes) {
  return absl::StrCat(R"({"id":")", id,
                      R"(","event":"test.ping",)"
                      R"("timestamp":"2026-03-01T19:00:00.000Z",)"
                      R"("data":{"message":")",
                      std::string(bytes, 'x'), R"("}})");
}

TEST_F(ServerProcessTest, FlagIsSetFromItsEnvironmentVariable) {
  auto server = StartServer({}, {"FANOUT_MAX_BODY_BYTES=2048"});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE(absl::StrContains((*server)->Log(),
                                "flags from environment "
                                "variables=FANOUT_MAX_BODY_BYTES"))
      << (*server)->Log();

  WebhookSender sender((*server)->webhook_url());
  absl::StatusOr<HttpAnswer> small =
      PostSigned(&sender, DeliveryOfSize("wh_env_small", 1000));
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->status, 200) << small->body;
  WebhookSender another((*server)->webhook_url());
  absl::StatusOr<HttpAnswer> large =
      PostSigned(&another, DeliveryOfSize("wh_env_large", 4000));
  ASSERT_TRUE(large.ok()) << large.status();
  EXPECT_EQ(large->status, 413) << large->body;
}

TEST_F(ServerProcessTest, CommandLineWinsOverTheEnvironment) {
  const std::string env_data_dir = root_.path() + "/data-from-env";
  auto server = StartServer(
      {"--max_body_bytes=65536"},
      {"FANOUT_MAX_BODY_BYTES=2048", "FANOUT_DATA_DIR=" + env_data_dir});
  ASSERT_TRUE(server.ok()) << server.status();

  WebhookSender sender((*server)->webhook_url());
  absl::StatusOr<HttpAnswer> large =
      PostSigned(&sender, DeliveryOfSize("wh_cli_large", 4000));
  ASSERT_TRUE(large.ok()) << large.status();
  EXPECT_EQ(large->status, 200) << large->body;
  // --data_dir, on the command line, won too.
  EXPECT_FALSE(std::ifstream(env_data_dir + "/LOCK").good());
  EXPECT_TRUE(std::ifstream(data_dir_ + "/LOCK").good());
}

TEST_F(ServerProcessTest, BadEnvironmentValueStopsTheStartAndNamesIt) {
  struct Case {
    std::string variable;
    std::string value;
  };
  for (const Case& bad : {Case{"FANOUT_HTTP_THREADS", "two"},
                          Case{"FANOUT_HEARTBEAT_INTERVAL", "15"},
                          Case{"FANOUT_ALLOW_UNSIGNED", "maybe"}}) {
    absl::StatusOr<Exit> exit = RunServerUntilExit(
        data_dir_, NextLogPath(), {},
        EnvironmentWith({absl::StrCat(bad.variable, "=", bad.value)}),
        absl::Seconds(20));
    ASSERT_TRUE(exit.ok()) << bad.variable << ": " << exit.status();
    EXPECT_EQ(exit->status, 1) << exit->log;
    EXPECT_TRUE(absl::StrContains(
        exit->log, absl::StrCat("environment variable ", bad.variable, ":")))
        << exit->log;
    EXPECT_TRUE(absl::StrContains(exit->log, absl::StrCat("'", bad.value, "'")))
        << exit->log;
    EXPECT_FALSE(absl::StrContains(exit->log, "listening")) << exit->log;
  }
}

TEST_F(ServerProcessTest, ClientPingingTooOftenIsDisconnectedUnlessAllowed) {
  // A client that pings as often as gRPC lets it (about once a second),
  // on a stream with nothing to read: no heartbeat within the test.
  grpc::ChannelArguments eager_pinger;
  eager_pinger.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 100);
  eager_pinger.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  eager_pinger.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  eager_pinger.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  const auto never = [](const SubscribeResponse&) { return false; };

  // The default allows a ping every 10 s, and 2 strikes.
  {
    auto server = StartServer({"--heartbeat_interval=1h"});
    ASSERT_TRUE(server.ok()) << server.status();
    const auto start = SteadyClock::now();
    StreamRecord record = ReadStream((*server)->grpc_target(), FromOldest(),
                                     never, absl::Seconds(20), eager_pinger);
    EXPECT_EQ(record.status.error_code(), grpc::StatusCode::UNAVAILABLE)
        << record.status.error_message();
    std::printf("[ timing ] eager pinger disconnected after %.3f s: %s\n",
                SecondsSince(start), record.status.error_message().c_str());
  }

  auto server = StartServer(
      {"--heartbeat_interval=1h", "--grpc_min_client_ping_interval=100ms"});
  ASSERT_TRUE(server.ok()) << server.status();
  StreamRecord record = ReadStream((*server)->grpc_target(), FromOldest(),
                                   never, absl::Seconds(6), eager_pinger);
  EXPECT_EQ(record.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << record.status.error_message();
}

TEST_F(ServerProcessTest, InfoLogCarriesIdsAndNoPayloads) {
  auto server = StartServer({"--heartbeat_interval=200ms"});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string target = (*server)->grpc_target();

  // A subscription the server refuses, and one that reads two events.
  SubscribeRequest bad_request;
  bad_request.add_event_types("not a pattern");
  {
    std::unique_ptr<Fanout::Stub> stub = Fanout::NewStub(
        grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    SubscribeResponse response;
    auto reader = stub->Subscribe(&context, bad_request);
    while (reader->Read(&response)) {
    }
    EXPECT_EQ(reader->Finish().error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  StreamRecord record;
  ScopedThread reader([&] {
    record = ReadStream(
        target, FromOldest(),
        [](const SubscribeResponse& response) {
          return response.has_event() && response.event().sequence() == 2;
        },
        absl::Seconds(30));
  });

  // Contact details, a field that does not convert, and a retry whose body
  // differs: each gets a line, none shows the payload.
  const std::string contact =
      R"("customerEmail":"jane.smith@example.com","customerPhone":"+1234567890")";
  const std::string first = absl::StrCat(
      R"({"id":"wh_log_1","event":"ticket.created",)",
      R"("timestamp":"2026-03-01T19:00:00.000Z","data":{"ticketId":42,)",
      contact, "}}");
  const std::string second =
      absl::StrCat(R"({"id":"wh_log_2","event":"ticket.created",)",
                   R"("timestamp":"2026-03-01T19:00:00.000Z",)",
                   R"("data":{"ticketId":"forty-two",)", contact, "}}");
  const std::string first_changed = absl::StrCat(
      R"({"id":"wh_log_1","event":"ticket.created",)",
      R"("timestamp":"2026-03-01T19:00:00.000Z","data":{"ticketId":43,)",
      contact, "}}");
  WebhookSender sender((*server)->webhook_url());
  for (const std::string* body : {&first, &second, &first_changed}) {
    absl::StatusOr<HttpAnswer> answer = PostSigned(&sender, *body);
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_EQ(answer->status, 200) << answer->body;
  }
  reader.Join();
  ASSERT_TRUE(record.stopped_by_reader) << record.status.error_message();
  ASSERT_TRUE(WaitFor(
      [&] {
        return absl::StrContains((*server)->Log(), "subscriber detached");
      },
      absl::Seconds(10)));
  ASSERT_TRUE((*server)->Terminate(absl::Seconds(15)).ok());

  const std::string log = (*server)->Log();
  for (const char* line : {
           "subscription refused peer=ipv",
           " status=INVALID_ARGUMENT error=",
           "subscriber attached subscriber=1 peer=ipv",
           " patterns=\"*\" after_seq=0",
           "delivery accepted with fields that did not convert "
           "delivery=\"wh_log_2\" seq=2 event_type=ticket.created problems=1",
           "duplicate delivery differs from the stored one, which is kept "
           "delivery=\"wh_log_1\" seq=1",
           "subscriber detached subscriber=1 seq=2 events_sent=2 "
           "status=CANCELLED",
           "shutting down signal=SIGTERM",
           "stopped last_seq=2",
       }) {
    EXPECT_TRUE(absl::StrContains(log, line)) << "no \"" << line << "\"";
  }
  for (const char* secret :
       {"jane.smith@example.com", "+1234567890", "forty-two", kSecret}) {
    EXPECT_FALSE(absl::StrContains(log, secret)) << secret << " is logged";
  }
}

TEST_F(ServerProcessTest, SubscribeBinaryOverMutualTlsSeesOnlyItsGrant) {
  const std::string tls_dir = root_.path() + "/tls";
  ASSERT_EQ(mkdir(tls_dir.c_str(), 0700), 0);
  absl::StatusOr<testing::TestCertificates> certs =
      testing::TestCertificates::Create(tls_dir);
  ASSERT_TRUE(certs.ok()) << certs.status();
  const std::string token = "process-test-token-8c1e5a0f93b2";
  const std::string tokens_file = root_.path() + "/access-tokens";
  ASSERT_NO_FATAL_FAILURE(WriteSecretFile(
      tokens_file, absl::StrCat("tickets ", token, " ticket.*\n")));
  const std::string token_file = root_.path() + "/token";
  ASSERT_NO_FATAL_FAILURE(WriteSecretFile(token_file, token + "\n"));
  const std::string wrong_token_file = root_.path() + "/wrong-token";
  ASSERT_NO_FATAL_FAILURE(
      WriteSecretFile(wrong_token_file, "not-the-token-4d2a9c7e1b\n"));

  auto server =
      StartServer({absl::StrCat("--grpc_tls_cert=", certs->server_cert),
                   absl::StrCat("--grpc_tls_key=", certs->server_key),
                   absl::StrCat("--grpc_tls_client_ca=", certs->ca),
                   absl::StrCat("--access_tokens_file=", tokens_file)});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE(
      absl::StrContains((*server)->Log(), "grpc_security=mutual_tls"));
  EXPECT_FALSE(absl::StrContains((*server)->Log(), token));

  WebhookSender sender((*server)->webhook_url(), absl::Seconds(10));
  for (const auto& [id, type] :
       std::vector<std::pair<std::string, std::string>>{
           {"wh_tls-1", "ticket.created"},
           {"wh_tls-2", "test.ping"},
           {"wh_tls-3", "ticket.resolved"}}) {
    absl::StatusOr<Ack> ack = Deliver(&sender, id, type);
    ASSERT_TRUE(ack.ok()) << ack.status();
  }

  const std::vector<std::string> tls = {
      absl::StrCat("--target=", (*server)->grpc_target()),
      absl::StrCat("--tls_ca_file=", certs->ca),
      absl::StrCat("--tls_cert_file=", certs->client_cert),
      absl::StrCat("--tls_key_file=", certs->client_key)};
  const auto with = [&tls](std::vector<std::string> more) {
    more.insert(more.begin(), tls.begin(), tls.end());
    return more;
  };

  // No pattern: everything the token may read, the ticket events only.
  auto subscriber = SubscribeProcess::Start(
      root_.path() + "/subscribe-granted",
      with({absl::StrCat("--token_file=", token_file), "--from_start"}));
  ASSERT_TRUE(subscriber.ok()) << subscriber.status();
  const std::vector<std::string> lines = (*subscriber)->WaitForLines(2);
  ASSERT_EQ(lines.size(), 2u) << (*subscriber)->Stderr();
  EXPECT_TRUE(absl::StrContains(lines[0], R"("id":"wh_tls-1")")) << lines[0];
  EXPECT_TRUE(absl::StrContains(lines[1], R"("id":"wh_tls-3")")) << lines[1];
  EXPECT_EQ((*subscriber)->WaitForExit(/*terminate=*/true), 0)
      << (*subscriber)->Stderr();

  // Refusals end the run with exit status 1 at once.
  const struct {
    std::string name;
    std::vector<std::string> args;
    std::string code;
  } refusals[] = {
      {"no-token", with({"ticket.*"}), "UNAUTHENTICATED"},
      {"wrong-token",
       with({absl::StrCat("--token_file=", wrong_token_file), "ticket.*"}),
       "UNAUTHENTICATED"},
      {"outside-grant",
       with({absl::StrCat("--token_file=", token_file), "test.ping"}),
       "PERMISSION_DENIED"},
  };
  for (const auto& refusal : refusals) {
    SCOPED_TRACE(refusal.name);
    auto refused = SubscribeProcess::Start(
        absl::StrCat(root_.path(), "/subscribe-", refusal.name), refusal.args);
    ASSERT_TRUE(refused.ok()) << refused.status();
    EXPECT_EQ((*refused)->WaitForExit(/*terminate=*/false), 1);
    EXPECT_TRUE(absl::StrContains((*refused)->Stderr(), refusal.code))
        << (*refused)->Stderr();
    EXPECT_TRUE((*refused)->WaitForLines(0).empty());
  }

  // A key file others may read stops the client before it connects.
  ASSERT_EQ(chmod(certs->client_key.c_str(), 0644), 0);
  auto exposed = SubscribeProcess::Start(
      root_.path() + "/subscribe-exposed-key",
      with({absl::StrCat("--token_file=", token_file)}));
  ASSERT_TRUE(exposed.ok()) << exposed.status();
  EXPECT_EQ((*exposed)->WaitForExit(/*terminate=*/false), 1);
  EXPECT_TRUE(absl::StrContains((*exposed)->Stderr(), "chmod o-rwx"))
      << (*exposed)->Stderr();
  EXPECT_FALSE(absl::StrContains((*server)->Log(), token));
}

TEST_F(ServerProcessTest, MismatchedTlsKeyStopsTheServerNamingTheFile) {
  const std::string tls_dir = root_.path() + "/tls";
  ASSERT_EQ(mkdir(tls_dir.c_str(), 0700), 0);
  absl::StatusOr<testing::TestCertificates> certs =
      testing::TestCertificates::Create(tls_dir);
  ASSERT_TRUE(certs.ok()) << certs.status();

  auto server =
      StartServer({absl::StrCat("--grpc_tls_cert=", certs->server_cert),
                   absl::StrCat("--grpc_tls_key=", certs->client_key)});

  ASSERT_FALSE(server.ok());
  EXPECT_TRUE(absl::StrContains(server.status().message(), "cannot start"))
      << server.status();
  EXPECT_TRUE(absl::StrContains(server.status().message(), "--grpc_tls_key"));
  EXPECT_TRUE(absl::StrContains(server.status().message(), certs->client_key));
}

}  // namespace
}  // namespace fanout
