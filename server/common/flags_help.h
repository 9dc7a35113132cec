// Makes --help list the flags of this project's binaries. By default absl
// lists only flags defined in a file named after the program, which none of
// ours is.

#ifndef FANOUT_SERVER_COMMON_FLAGS_HELP_H_
#define FANOUT_SERVER_COMMON_FLAGS_HELP_H_

#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace fanout {

// Call before absl::ParseCommandLine.
inline void ShowOwnFlagsInHelp() {
  absl::FlagsUsageConfig config;
  const auto own = [](absl::string_view file) {
    return absl::StrContains(file, "server/") ||
           absl::StrContains(file, "client/");
  };
  config.contains_help_flags = own;
  config.contains_helpshort_flags = own;
  absl::SetFlagsUsageConfig(config);
}

}  // namespace fanout

#endif  // FANOUT_SERVER_COMMON_FLAGS_HELP_H_
