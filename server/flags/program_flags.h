// Command-line flags for this project's programs, with an environment
// variable for every flag: FANOUT_HTTP_PORT=9090 does what --http_port=9090
// does, so that a service manager or a container can configure a program
// without a command line. The command line wins over the environment.
//
// Generic over absl's flag registry: a flag added with ABSL_FLAG in server/
// or client/ gets its variable, and its line in --help, with no code here.

#ifndef FANOUT_SERVER_FLAGS_PROGRAM_FLAGS_H_
#define FANOUT_SERVER_FLAGS_PROGRAM_FLAGS_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fanout {

// An environment variable a program reads itself, not through a flag (e.g.
// FANOUT_WEBHOOK_SECRETS, which carries secrets and so has no flag).
struct EnvironmentVariable {
  std::string name;
  std::string meaning;
};

struct ProgramFlagsOptions {
  // A flag's variable is this prefix and its name in upper case:
  // "FANOUT_" and http_port give FANOUT_HTTP_PORT.
  std::string env_prefix;
  // Variables the program reads directly; --help lists them. No flag may
  // have a variable of the same name.
  std::vector<EnvironmentVariable> other_variables;
  // Names and prefixes (ending in '_') of variables that other programs of
  // the project read, e.g. "FANOUT_SEND_". They are not reported as unknown,
  // and no flag's variable may be one of them or start with one.
  std::vector<std::string> foreign_variables;
};

// What ParseProgramFlags found.
struct ParsedFlags {
  // The arguments that are not flags, after argv[0].
  std::vector<std::string> args;
  // The variables that set a flag, sorted. A flag also given on the command
  // line takes the command line's value.
  std::vector<std::string> from_environment;
  // Variables that start with env_prefix but set no flag and are neither
  // other_variables nor foreign_variables, sorted; probably misspelt.
  std::vector<std::string> unknown_variables;
};

// Looks up an environment variable; null when it is not set.
using EnvironmentLookup = std::function<const char*(const char* name)>;

// Whether a flag defined in `filename` (absl::CommandLineFlag::Filename)
// belongs to this project rather than to a library.
bool IsOwnFlagFile(absl::string_view filename);

// The flags defined in this project's files (IsOwnFlagFile), by name.
std::vector<absl::CommandLineFlag*> OwnFlags();

// The variable that sets flag `flag_name`: prefix + flag_name in upper case.
std::string FlagVariable(absl::string_view prefix, absl::string_view flag_name);

// Returns InvalidArgument, naming both, if a flag's variable is one of
// options.other_variables or options.foreign_variables (or starts with a
// foreign prefix): a programming error, reported before anything is read.
absl::Status CheckFlagVariables(
    const std::vector<absl::CommandLineFlag*>& flags,
    const ProgramFlagsOptions& options);

// Sets each flag in `flags` whose variable `lookup` finds to the variable's
// value (an empty value is a value). Returns the names of the variables
// used, or InvalidArgument naming the variable, its value and the flag
// for the first value the flag does not accept; flags set before it keep their
// new values. Not thread-safe: call before threads that read flags start.
absl::StatusOr<std::vector<std::string>> SetFlagsFromEnvironment(
    const std::vector<absl::CommandLineFlag*>& flags, absl::string_view prefix,
    const EnvironmentLookup& lookup);

// The names in `environment` ("NAME=value" strings, as in environ) that
// start with options.env_prefix and name no flag of `flags`, no
// other_variable and no foreign variable, sorted.
std::vector<std::string> UnknownVariables(
    const std::vector<absl::CommandLineFlag*>& flags,
    const ProgramFlagsOptions& options,
    const std::vector<std::string>& environment);

// The text of --help: `usage`, then every flag of `flags` with its meaning,
// default and variable, then options.other_variables.
std::string FlagsHelp(absl::string_view usage,
                      const std::vector<absl::CommandLineFlag*>& flags,
                      const ProgramFlagsOptions& options);

// Whether argv (before a "--") asks for help: --help or --helpshort, with
// one dash or two. Other absl help flags (--helpfull, --help=SUBSTRING)
// are left to absl.
bool AsksForHelp(int argc, char** argv);

// Parses a program's flags, in this order:
//   --help (AsksForHelp): prints FlagsHelp(absl::ProgramUsageMessage())
//     for OwnFlags() to stdout and exits with status 0;
//   the environment, for OwnFlags() (SetFlagsFromEnvironment);
//   the command line (absl::ParseCommandLine, which exits with a message
//     on an unknown flag or a bad value), so that it wins.
// Returns InvalidArgument for a bad variable, or for CheckFlagVariables'
// error; the caller reports it and exits. Call absl::SetProgramUsageMessage
// first; call once, from main, before other threads start.
absl::StatusOr<ParsedFlags> ParseProgramFlags(
    int argc, char** argv, const ProgramFlagsOptions& options);

}  // namespace fanout

#endif  // FANOUT_SERVER_FLAGS_PROGRAM_FLAGS_H_
