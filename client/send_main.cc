// fanout-send: POSTs JSON files to the ingest endpoint, one delivery per
// file, and prints each answer.

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "client/webhook_sender.h"
#include "server/auth/signature_verifier.h"
#include "server/flags/program_flags.h"

ABSL_FLAG(std::string, url, "http://127.0.0.1:8080/webhooks",
          "Where to POST the deliveries.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10),
          "Time allowed to connect, and for each answer.");
ABSL_FLAG(std::string, secrets_file, "data/webhook-secrets",
          "Signs each delivery as Staffify does, with the first secret of "
          "this file (the file `make run` creates); the environment variable "
          "FANOUT_WEBHOOK_SECRET overrides it. Without either, deliveries go "
          "unsigned.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Usage: fanout-send [--url=URL] FILE.json...\n"
      "POSTs each file as one webhook delivery and prints the answer.");
  fanout::ProgramFlagsOptions flag_options;
  flag_options.env_prefix = "FANOUT_SEND_";
  flag_options.other_variables = {
      {"FANOUT_WEBHOOK_SECRET",
       "The secret to sign with, instead of the first of --secrets_file."}};
  absl::StatusOr<fanout::ParsedFlags> flags =
      fanout::ParseProgramFlags(argc, argv, flag_options);
  if (!flags.ok()) {
    std::cerr << "fanout-send: " << flags.status().message() << "\n";
    return 2;
  }
  for (const std::string& unknown : flags->unknown_variables) {
    std::cerr << "fanout-send: environment variable " << unknown
              << " sets no flag (misspelt?)\n";
  }
  const std::vector<std::string>& paths = flags->args;
  if (paths.empty()) {
    std::cerr << absl::ProgramUsageMessage() << "\n";
    return 2;
  }

  absl::StatusOr<fanout::HttpUrl> url =
      fanout::ParseHttpUrl(absl::GetFlag(FLAGS_url));
  if (!url.ok()) {
    std::cerr << "fanout-send: " << url.status().message() << "\n";
    return 2;
  }
  fanout::WebhookSender sender(*url, absl::GetFlag(FLAGS_timeout));

  std::string secret;
  if (const char* env = std::getenv("FANOUT_WEBHOOK_SECRET")) {
    secret = env;
  } else {
    absl::StatusOr<std::vector<std::string>> secrets =
        fanout::ReadSecretsFile(absl::GetFlag(FLAGS_secrets_file));
    if (secrets.ok()) {
      secret = secrets->front();
    } else if (!absl::IsNotFound(secrets.status())) {
      std::cerr << "fanout-send: " << secrets.status().message() << "\n";
      return 2;
    }
  }
  if (secret.empty()) {
    std::cerr << "fanout-send: no secret; sending unsigned deliveries\n";
  }

  int failures = 0;
  for (const std::string& path : paths) {
    std::error_code error;
    std::ifstream in(path, std::ios::binary);
    if (!std::filesystem::is_regular_file(path, error) || !in) {
      std::cerr << path << ": cannot read\n";
      ++failures;
      continue;
    }
    std::ostringstream body;
    body << in.rdbuf();

    std::map<std::string, std::string> headers = {
        {"Content-Type", "application/json"},
        {"User-Agent", "fanout-send/1.0"}};
    if (!secret.empty()) {
      const std::string timestamp =
          std::to_string(absl::ToUnixSeconds(absl::Now()));
      headers["X-Webhook-Timestamp"] = timestamp;
      headers["X-Webhook-Signature"] =
          fanout::SignWebhook(secret, timestamp, body.str());
    }
    absl::StatusOr<fanout::HttpAnswer> answer =
        sender.Send("POST", body.str(), headers);
    if (!answer.ok()) {
      std::cerr << path << ": " << answer.status().message() << "\n";
      ++failures;
      continue;
    }
    std::cout << path << ": " << answer->status << " "
              << absl::StripTrailingAsciiWhitespace(answer->body) << "\n";
    if (answer->status < 200 || answer->status > 299) ++failures;
  }
  return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
