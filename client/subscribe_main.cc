// fanout-subscribe: subscribes to event type patterns and prints each event
// as one JSON object per line, with Staffify's own keys. It resumes by itself
// when the stream breaks and, with --resume_file, across its own restarts.
// Ctrl-C (or SIGTERM) ends it with exit status 0.

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "client/channel_credentials.h"
#include "client/event_subscriber.h"
#include "server/convert/event_json.h"
#include "server/flags/program_flags.h"
#include "staffify/fanout/v1/fanout.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051",
          "host:port of the fanout-server gRPC endpoint.");
ABSL_FLAG(std::string, tls_ca_file, "",
          "PEM certificate of the CA that signed the server's certificate; "
          "connects with TLS. Without it, the connection is plaintext.");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM client certificate chain, for a server that requires mutual "
          "TLS (needs --tls_key_file and --tls_ca_file).");
ABSL_FLAG(std::string, tls_key_file, "",
          "PEM private key of --tls_cert_file (not accessible to other "
          "users).");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name the server's certificate must carry, when it is not the "
          "host of --target.");
ABSL_FLAG(std::string, token_file, "",
          "File whose first line is the access token to send (the file must "
          "not be accessible to other users). Without it, the token is taken "
          "from the environment variable FANOUT_TOKEN, if set.");
ABSL_FLAG(bool, raw_body, false,
          "Also print each delivery's original body as \"rawBody\".");
ABSL_FLAG(int, max_message_bytes, 64 << 20,
          "Largest event accepted from the server, in bytes.");
ABSL_FLAG(std::string, after, "",
          "Start with the events after sequence SEQ (a number, e.g. the "
          "last \"sequence\" printed by an earlier run).");
ABSL_FLAG(std::string, since, "",
          "Start with the events the server received at or after TIME, in "
          "RFC 3339, e.g. 2026-03-01T14:00:00Z.");
ABSL_FLAG(bool, from_start, false,
          "Start with the oldest event the server still holds.");
ABSL_FLAG(std::string, resume_file, "",
          "Keep the last sequence printed (or announced by a heartbeat) in "
          "PATH, replaced atomically after each one. When PATH exists and "
          "holds a sequence, the run resumes after it, and --after, --since "
          "and --from_start are ignored; when it does not exist (or is "
          "empty), they apply.");

namespace fanout {
namespace {

using staffify::fanout::v1::Event;
using staffify::fanout::v1::StartPosition;

constexpr char kUsage[] =
    "Usage: fanout-subscribe [FLAGS] [PATTERN...]\n"
    "Prints every matching event as one JSON line. A pattern is an event\n"
    "type (ticket.created), a domain (ticket.*) or * (the default).\n"
    "\n"
    "Where to start (at most one; the default is new events only):\n"
    "  --after=SEQ        the events after sequence SEQ\n"
    "  --since=TIME       the events received at or after TIME (RFC 3339)\n"
    "  --from_start       every event the server still holds\n"
    "  --resume_file=PATH resume after the sequence kept in PATH, when PATH\n"
    "                     exists; it overrides the three above\n"
    "\n"
    "Security (for a server with TLS or access tokens):\n"
    "  --tls_ca_file=PEM  the CA that signed the server's certificate\n"
    "  --tls_cert_file=PEM --tls_key_file=PEM  a client certificate, for\n"
    "                     mutual TLS\n"
    "  --token_file=PATH  the access token (else $FANOUT_TOKEN)\n"
    "\n"
    "Flag names are spelled with underscores: --from_start and\n"
    "--resume_file; --from-start and --resume-file are not accepted.\n"
    "\n"
    "A broken stream is resumed after the last sequence seen. A stream the\n"
    "server refuses (a bad pattern, a start position it no longer holds)\n"
    "ends the run with exit status 1; Ctrl-C or SIGTERM, with 0.";

absl::Status ErrnoError(const std::string& what, const std::string& path) {
  const int error = errno;
  return absl::Status(absl::ErrnoToStatusCode(error),
                      absl::StrCat(what, " ", path, ": ", strerror(error)));
}

// The file behind --resume_file: one decimal sequence and a newline.
class ResumeFile {
 public:
  explicit ResumeFile(std::string path) : path_(std::move(path)) {}

  // The sequence kept in the file; nullopt when the file does not exist or
  // holds only white space. InvalidArgument when it holds anything else,
  // since guessing a start would risk a gap.
  absl::StatusOr<std::optional<uint64_t>> Read() {
    const int fd = open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) return std::nullopt;
      return ErrnoError("cannot open", path_);
    }
    std::string text;
    char buffer[256];
    ssize_t n;
    while ((n = read(fd, buffer, sizeof(buffer))) != 0) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        absl::Status error = ErrnoError("cannot read", path_);
        close(fd);
        return error;
      }
      text.append(buffer, static_cast<size_t>(n));
      if (text.size() > kMaxBytes) {
        close(fd);
        return absl::InvalidArgumentError(
            absl::StrCat(path_, " is too long to be a resume file"));
      }
    }
    close(fd);

    const absl::string_view trimmed = absl::StripAsciiWhitespace(text);
    if (trimmed.empty()) return std::nullopt;
    uint64_t sequence = 0;
    if (!absl::SimpleAtoi(trimmed, &sequence)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, " holds \"", trimmed,
                       "\", not a sequence number; fix or remove it"));
    }
    written_ = sequence;
    return sequence;
  }

  // Replaces the file with one holding `sequence`: a temporary file next to
  // it is written and renamed over it, so that a crash of this process
  // leaves either the old sequence or the new one, never a torn file. It
  // is not fsynced: the position guards against this process restarting,
  // and a sync per event would cap the stream at the disk's sync rate. An
  // OS crash may lose the newest positions, so events are then printed
  // again (at least once, never skipped).
  // Does nothing when the file already holds `sequence`.
  absl::Status Write(uint64_t sequence) {
    if (written_ == sequence) return absl::OkStatus();
    const std::string temp = path_ + ".tmp";
    const int fd =
        open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoError("cannot create", temp);
    const std::string text = absl::StrCat(sequence, "\n");
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = write(fd, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        absl::Status error = ErrnoError("cannot write", temp);
        close(fd);
        return error;
      }
      done += static_cast<size_t>(n);
    }
    if (close(fd) != 0) return ErrnoError("cannot close", temp);
    if (rename(temp.c_str(), path_.c_str()) != 0) {
      return ErrnoError("cannot rename " + temp + " to", path_);
    }
    written_ = sequence;
    return absl::OkStatus();
  }

 private:
  // Far more than a sequence and a newline; guards against a wrong path.
  static constexpr size_t kMaxBytes = 4096;

  const std::string path_;
  std::optional<uint64_t> written_;
};

// The start position that --after, --since and --from_start ask for.
absl::StatusOr<StartPosition> StartFromFlags() {
  const std::string after = absl::GetFlag(FLAGS_after);
  const std::string since = absl::GetFlag(FLAGS_since);
  const bool from_start = absl::GetFlag(FLAGS_from_start);
  if (!after.empty() + !since.empty() + from_start > 1) {
    return absl::InvalidArgumentError(
        "give at most one of --after, --since and --from_start");
  }

  StartPosition start;
  if (!after.empty()) {
    uint64_t sequence = 0;
    if (!absl::SimpleAtoi(after, &sequence)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--after=", after, ": expected a sequence number, e.g. 42"));
    }
    start.set_after_sequence(sequence);
  } else if (!since.empty()) {
    absl::Time time;
    std::string error;
    if (!absl::ParseTime(absl::RFC3339_full, since, &time, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--since=", since, ": expected an RFC 3339 time, e.g. ",
                       "2026-03-01T14:00:00Z (", error, ")"));
    }
    const int64_t seconds = absl::ToUnixSeconds(time);
    start.mutable_since_time()->set_seconds(seconds);
    start.mutable_since_time()->set_nanos(static_cast<int32_t>(
        (time - absl::FromUnixSeconds(seconds)) / absl::Nanoseconds(1)));
  } else if (from_start) {
    start.set_from_oldest(true);
  }
  return start;
}

std::string DescribeStart(const StartPosition& start) {
  switch (start.position_case()) {
    case StartPosition::kAfterSequence:
      return absl::StrCat("after sequence ", start.after_sequence());
    case StartPosition::kSinceTime: {
      const absl::Time time =
          absl::FromUnixSeconds(start.since_time().seconds()) +
          absl::Nanoseconds(start.since_time().nanos());
      return absl::StrCat("since ", absl::FormatTime(absl::RFC3339_full, time,
                                                     absl::UTCTimeZone()));
    }
    case StartPosition::kFromOldest:
      return "from the oldest event";
    default:
      return "with new events";
  }
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  ProgramFlagsOptions flag_options;
  flag_options.env_prefix = "FANOUT_SUBSCRIBE_";
  absl::StatusOr<ParsedFlags> flags =
      ParseProgramFlags(argc, argv, flag_options);
  if (!flags.ok()) {
    std::cerr << "fanout-subscribe: " << flags.status().message() << "\n";
    return EXIT_FAILURE;
  }
  for (const std::string& unknown : flags->unknown_variables) {
    std::cerr << "fanout-subscribe: environment variable " << unknown
              << " sets no flag (misspelt?)\n";
  }

  absl::StatusOr<StartPosition> start = StartFromFlags();
  if (!start.ok()) {
    std::cerr << "fanout-subscribe: " << start.status().message() << "\n";
    return EXIT_FAILURE;
  }

  std::optional<ResumeFile> resume_file;
  if (const std::string path = absl::GetFlag(FLAGS_resume_file);
      !path.empty()) {
    resume_file.emplace(path);
    absl::StatusOr<std::optional<uint64_t>> kept = resume_file->Read();
    if (!kept.ok()) {
      std::cerr << "fanout-subscribe: --resume_file: "
                << kept.status().message() << "\n";
      return EXIT_FAILURE;
    }
    if (kept->has_value()) {
      start->Clear();
      start->set_after_sequence(**kept);
      std::cerr << "fanout-subscribe: resuming after sequence " << **kept
                << " from " << path << "\n";
    }
  }

  // Stop signals go to a watcher thread that stops the subscriber, so that
  // the stream ends through gRPC rather than by killing the process
  // mid-line. Blocked before any thread starts, so that all inherit it.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  EventSubscriberOptions options;
  options.target = absl::GetFlag(FLAGS_target);
  ClientTlsOptions tls;
  tls.ca_file = absl::GetFlag(FLAGS_tls_ca_file);
  tls.cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  tls.key_file = absl::GetFlag(FLAGS_tls_key_file);
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      MakeChannelCredentials(tls);
  if (!credentials.ok()) {
    std::cerr << "fanout-subscribe: " << credentials.status().message() << "\n";
    return EXIT_FAILURE;
  }
  options.credentials = *std::move(credentials);
  options.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  absl::StatusOr<std::string> token =
      ReadAccessToken(absl::GetFlag(FLAGS_token_file), "FANOUT_TOKEN");
  if (!token.ok()) {
    std::cerr << "fanout-subscribe: " << token.status().message() << "\n";
    return EXIT_FAILURE;
  }
  options.access_token = *std::move(token);
  options.event_types = flags->args;
  options.start = *start;
  options.max_receive_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  if (resume_file.has_value()) {
    options.on_heartbeat = [&resume_file](uint64_t sequence) {
      return resume_file->Write(sequence);
    };
  }
  options.on_retry = [](const absl::Status& cause, absl::Duration delay,
                        const StartPosition& next_start) {
    std::cerr << "fanout-subscribe: subscription interrupted ("
              << (cause.ok() ? "closed by the server" : cause.ToString())
              << "); subscribing again " << DescribeStart(next_start) << " in "
              << absl::FormatDuration(absl::Trunc(delay, absl::Milliseconds(1)))
              << "\n";
  };
  // Shared with the watcher thread, which may outlive main's frame.
  auto subscriber = std::make_shared<EventSubscriber>(std::move(options));

  std::thread watcher([subscriber, stop_signals] {
    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    subscriber->Stop();
  });
  watcher.detach();

  const bool raw_body = absl::GetFlag(FLAGS_raw_body);
  const absl::Status status = subscriber->Run([&](const Event& event) {
    // Printed before the resume file moves past it: a crash in between
    // prints the event again on restart rather than losing it.
    std::cout << boost::json::serialize(EventToJson(event, raw_body))
              << std::endl;
    if (!std::cout) return absl::UnavailableError("cannot write to stdout");
    if (resume_file.has_value()) return resume_file->Write(event.sequence());
    return absl::OkStatus();
  });
  if (!status.ok()) {
    std::cerr << "fanout-subscribe: " << absl::StatusCodeToString(status.code())
              << ": " << status.message() << "\n";
    return EXIT_FAILURE;
  }
  return EXIT_SUCCESS;
}

}  // namespace
}  // namespace fanout

int main(int argc, char** argv) { return fanout::Main(argc, argv); }
