// fanout-send: POSTs JSON files to the ingest endpoint, one delivery per
// file, and prints each answer.

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "client/webhook_sender.h"
#include "server/common/flags_help.h"

ABSL_FLAG(std::string, url, "http://127.0.0.1:8080/webhooks",
          "Where to POST the deliveries.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10),
          "Time allowed to connect, and for each answer.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Usage: fanout-send [--url=URL] FILE.json...\n"
      "POSTs each file as one webhook delivery and prints the answer.");
  fanout::ShowOwnFlagsInHelp();
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) {
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

  int failures = 0;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string path = args[i];
    std::error_code error;
    std::ifstream in(path, std::ios::binary);
    if (!std::filesystem::is_regular_file(path, error) || !in) {
      std::cerr << path << ": cannot read\n";
      ++failures;
      continue;
    }
    std::ostringstream body;
    body << in.rdbuf();

    absl::StatusOr<fanout::HttpAnswer> answer = sender.PostJson(body.str());
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
