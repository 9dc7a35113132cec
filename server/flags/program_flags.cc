#include "server/flags/program_flags.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

extern char** environ;

namespace fanout {
namespace {

// --help wraps text to this width.
constexpr size_t kHelpWidth = 78;

// Appends `text` to `out`, word-wrapped, each line indented by `indent`.
void AppendWrapped(absl::string_view text, absl::string_view indent,
                   std::string* out) {
  std::string line;
  for (absl::string_view word :
       absl::StrSplit(text, absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
    if (!line.empty() &&
        indent.size() + line.size() + 1 + word.size() > kHelpWidth) {
      absl::StrAppend(out, indent, line, "\n");
      line.clear();
    }
    absl::StrAppend(&line, line.empty() ? "" : " ", word);
  }
  if (!line.empty()) absl::StrAppend(out, indent, line, "\n");
}

bool IsForeign(absl::string_view variable, const ProgramFlagsOptions& options) {
  for (const std::string& foreign : options.foreign_variables) {
    if (variable == foreign ||
        (absl::EndsWith(foreign, "_") && absl::StartsWith(variable, foreign))) {
      return true;
    }
  }
  return false;
}

// The help flags left to absl (--helpfull, --help=SUBSTRING) list our
// flags too; by default absl lists only flags defined in a file named after
// the program, which none of ours is.
void ConfigureAbslHelp() {
  absl::FlagsUsageConfig config;
  config.contains_help_flags = IsOwnFlagFile;
  config.contains_helpshort_flags = IsOwnFlagFile;
  absl::SetFlagsUsageConfig(config);
}

}  // namespace

bool IsOwnFlagFile(absl::string_view filename) {
  // Build systems name the file relative to different roots
  // ("server/main.cc", "../server/main.cc").
  return absl::StrContains(filename, "server/") ||
         absl::StrContains(filename, "client/");
}

std::vector<absl::CommandLineFlag*> OwnFlags() {
  std::vector<absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (IsOwnFlagFile(flag->Filename())) flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(),
            [](absl::CommandLineFlag* a, absl::CommandLineFlag* b) {
              return a->Name() < b->Name();
            });
  return flags;
}

std::string FlagVariable(absl::string_view prefix,
                         absl::string_view flag_name) {
  return absl::StrCat(prefix, absl::AsciiStrToUpper(flag_name));
}

absl::Status CheckFlagVariables(
    const std::vector<absl::CommandLineFlag*>& flags,
    const ProgramFlagsOptions& options) {
  for (const absl::CommandLineFlag* flag : flags) {
    const std::string variable = FlagVariable(options.env_prefix, flag->Name());
    for (const EnvironmentVariable& other : options.other_variables) {
      if (variable == other.name) {
        return absl::InvalidArgumentError(
            absl::StrCat("flag --", flag->Name(), " would be set by ", variable,
                         ", which the program reads for another purpose"));
      }
    }
    if (IsForeign(variable, options)) {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", flag->Name(), " would be set by ", variable,
                       ", a variable another program reads"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> SetFlagsFromEnvironment(
    const std::vector<absl::CommandLineFlag*>& flags, absl::string_view prefix,
    const EnvironmentLookup& lookup) {
  std::vector<std::string> used;
  for (absl::CommandLineFlag* flag : flags) {
    const std::string variable = FlagVariable(prefix, flag->Name());
    const char* value = lookup(variable.c_str());
    if (value == nullptr) continue;
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      // absl's error quotes the value and names the flag; flags carry no
      // secrets (those have variables of their own, read without a flag).
      return absl::InvalidArgumentError(
          absl::StrCat("environment variable ", variable, ": ", error));
    }
    used.push_back(variable);
  }
  std::sort(used.begin(), used.end());
  return used;
}

std::vector<std::string> UnknownVariables(
    const std::vector<absl::CommandLineFlag*>& flags,
    const ProgramFlagsOptions& options,
    const std::vector<std::string>& environment) {
  std::vector<std::string> unknown;
  for (const std::string& entry : environment) {
    const std::string name = entry.substr(0, entry.find('='));
    if (!absl::StartsWith(name, options.env_prefix)) continue;
    if (IsForeign(name, options)) continue;
    const bool known = std::any_of(flags.begin(), flags.end(),
                                   [&](const absl::CommandLineFlag* flag) {
                                     return FlagVariable(options.env_prefix,
                                                         flag->Name()) == name;
                                   }) ||
                       std::any_of(options.other_variables.begin(),
                                   options.other_variables.end(),
                                   [&](const EnvironmentVariable& other) {
                                     return other.name == name;
                                   });
    if (!known) unknown.push_back(name);
  }
  std::sort(unknown.begin(), unknown.end());
  unknown.erase(std::unique(unknown.begin(), unknown.end()), unknown.end());
  return unknown;
}

std::string FlagsHelp(absl::string_view usage,
                      const std::vector<absl::CommandLineFlag*>& flags,
                      const ProgramFlagsOptions& options) {
  std::string help = absl::StrCat(usage, "\n\n");
  AppendWrapped(
      absl::StrCat("Flags. Each can also be set with the environment variable "
                   "shown after \"env:\" (",
                   options.env_prefix,
                   "<FLAG NAME IN UPPER CASE>); a flag given on the command "
                   "line wins over its variable."),
      "", &help);
  for (const absl::CommandLineFlag* flag : flags) {
    absl::StrAppend(&help, "\n  --", flag->Name(), "\n");
    AppendWrapped(flag->Help(), "      ", &help);
    // Quoted for strings, so that an empty default shows.
    const std::string quote = flag->IsOfType<std::string>() ? "\"" : "";
    absl::StrAppend(
        &help, "      default: ", quote, flag->DefaultValue(), quote,
        "; env: ", FlagVariable(options.env_prefix, flag->Name()), "\n");
  }
  if (!options.other_variables.empty()) {
    absl::StrAppend(&help, "\nOther environment variables:\n");
    for (const EnvironmentVariable& variable : options.other_variables) {
      absl::StrAppend(&help, "\n  ", variable.name, "\n");
      AppendWrapped(variable.meaning, "      ", &help);
    }
  }
  return help;
}

bool AsksForHelp(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg == "--help" || arg == "-help" || arg == "--helpshort" ||
        arg == "-helpshort") {
      return true;
    }
  }
  return false;
}

absl::StatusOr<ParsedFlags> ParseProgramFlags(
    int argc, char** argv, const ProgramFlagsOptions& options) {
  ConfigureAbslHelp();
  const std::vector<absl::CommandLineFlag*> flags = OwnFlags();
  if (absl::Status status = CheckFlagVariables(flags, options); !status.ok()) {
    return status;
  }
  if (AsksForHelp(argc, argv)) {
    const std::string help =
        FlagsHelp(absl::ProgramUsageMessage(), flags, options);
    std::fwrite(help.data(), 1, help.size(), stdout);
    std::fflush(stdout);
    std::exit(EXIT_SUCCESS);
  }

  ParsedFlags parsed;
  absl::StatusOr<std::vector<std::string>> used = SetFlagsFromEnvironment(
      flags, options.env_prefix,
      [](const char* name) { return std::getenv(name); });
  if (!used.ok()) return used.status();
  parsed.from_environment = *std::move(used);

  std::vector<std::string> environment;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    environment.emplace_back(*entry);
  }
  parsed.unknown_variables = UnknownVariables(flags, options, environment);

  const std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  parsed.args.assign(args.begin() + 1, args.end());
  return parsed;
}

}  // namespace fanout
