#include "server/flags/program_flags.h"

#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_FLAG(int, widget_port, 8080, "Port the widgets listen on.");
ABSL_FLAG(std::string, widget_name, "gizmo", "Name of the widget.");
ABSL_FLAG(absl::Duration, widget_timeout, absl::Seconds(30),
          "Time a widget waits; a long help text that --help has to wrap "
          "over more than one line, because it is longer than the width.");
ABSL_FLAG(bool, widget_verbose, false, "Whether widgets talk.");
// Its variable would be TEST_SECRETS, which the program reads itself.
ABSL_FLAG(std::string, secrets, "", "Clashes with a variable.");

namespace fanout {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::vector<absl::CommandLineFlag*> WidgetFlags() {
  std::vector<absl::CommandLineFlag*> flags;
  for (const char* name :
       {"widget_name", "widget_port", "widget_timeout", "widget_verbose"}) {
    flags.push_back(absl::FindCommandLineFlag(name));
  }
  return flags;
}

EnvironmentLookup Environment(std::map<std::string, std::string> variables) {
  return [variables = std::move(variables)](const char* name) -> const char* {
    auto found = variables.find(name);
    return found == variables.end() ? nullptr : found->second.c_str();
  };
}

class ProgramFlagsTest : public ::testing::Test {
 protected:
  // Restores every flag's value after each test.
  absl::FlagSaver saver_;
};

TEST_F(ProgramFlagsTest, VariableIsPrefixAndUpperCaseName) {
  EXPECT_EQ(FlagVariable("FANOUT_", "http_port"), "FANOUT_HTTP_PORT");
  EXPECT_EQ(FlagVariable("FANOUT_SEND_", "url"), "FANOUT_SEND_URL");
}

TEST_F(ProgramFlagsTest, VariableSetsItsFlag) {
  absl::StatusOr<std::vector<std::string>> used =
      SetFlagsFromEnvironment(WidgetFlags(), "TEST_",
                              Environment({{"TEST_WIDGET_PORT", "9090"},
                                           {"TEST_WIDGET_TIMEOUT", "250ms"},
                                           {"TEST_WIDGET_VERBOSE", "true"},
                                           {"OTHER_WIDGET_NAME", "not ours"}}));
  ASSERT_TRUE(used.ok()) << used.status();
  EXPECT_THAT(*used, ElementsAre("TEST_WIDGET_PORT", "TEST_WIDGET_TIMEOUT",
                                 "TEST_WIDGET_VERBOSE"));
  EXPECT_EQ(absl::GetFlag(FLAGS_widget_port), 9090);
  EXPECT_EQ(absl::GetFlag(FLAGS_widget_timeout), absl::Milliseconds(250));
  EXPECT_TRUE(absl::GetFlag(FLAGS_widget_verbose));
  EXPECT_EQ(absl::GetFlag(FLAGS_widget_name), "gizmo");
}

TEST_F(ProgramFlagsTest, EmptyValueIsAValue) {
  absl::StatusOr<std::vector<std::string>> used = SetFlagsFromEnvironment(
      WidgetFlags(), "TEST_", Environment({{"TEST_WIDGET_NAME", ""}}));
  ASSERT_TRUE(used.ok()) << used.status();
  EXPECT_EQ(absl::GetFlag(FLAGS_widget_name), "");

  used = SetFlagsFromEnvironment(WidgetFlags(), "TEST_",
                                 Environment({{"TEST_WIDGET_PORT", ""}}));
  EXPECT_EQ(used.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ProgramFlagsTest, BadValueNamesVariableValueAndFlag) {
  absl::StatusOr<std::vector<std::string>> used = SetFlagsFromEnvironment(
      WidgetFlags(), "TEST_", Environment({{"TEST_WIDGET_PORT", "eighty"}}));
  ASSERT_EQ(used.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(used.status().message()),
              HasSubstr("environment variable TEST_WIDGET_PORT"));
  EXPECT_THAT(std::string(used.status().message()), HasSubstr("'eighty'"));
  EXPECT_THAT(std::string(used.status().message()), HasSubstr("widget_port"));
  EXPECT_EQ(absl::GetFlag(FLAGS_widget_port), 8080);

  used = SetFlagsFromEnvironment(WidgetFlags(), "TEST_",
                                 Environment({{"TEST_WIDGET_TIMEOUT", "30"}}));
  EXPECT_EQ(used.status().code(), absl::StatusCode::kInvalidArgument)
      << "a duration needs a unit";
}

TEST_F(ProgramFlagsTest, FlagWhoseVariableClashesIsRefused) {
  ProgramFlagsOptions options;
  options.env_prefix = "TEST_";
  options.other_variables = {{"TEST_SECRETS", "read directly"}};
  std::vector<absl::CommandLineFlag*> flags = WidgetFlags();
  EXPECT_TRUE(CheckFlagVariables(flags, options).ok());

  flags.push_back(absl::FindCommandLineFlag("secrets"));
  absl::Status status = CheckFlagVariables(flags, options);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("--secrets"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("TEST_SECRETS"));

  // Another program's prefix is as much out of bounds.
  options.other_variables.clear();
  options.foreign_variables = {"TEST_WIDGET_"};
  EXPECT_EQ(CheckFlagVariables(WidgetFlags(), options).code(),
            absl::StatusCode::kInvalidArgument);
  options.foreign_variables = {"TEST_WIDGET_PORT"};
  EXPECT_EQ(CheckFlagVariables(WidgetFlags(), options).code(),
            absl::StatusCode::kInvalidArgument);
  options.foreign_variables = {"TEST_WIDGET"};  // Not a prefix: no '_'.
  EXPECT_TRUE(CheckFlagVariables(WidgetFlags(), options).ok());
}

TEST_F(ProgramFlagsTest, UnknownVariablesWithThePrefixAreReported) {
  ProgramFlagsOptions options;
  options.env_prefix = "TEST_";
  options.other_variables = {{"TEST_SECRETS", "read directly"}};
  options.foreign_variables = {"TEST_CLIENT_", "TEST_TOOL_KEY"};
  EXPECT_THAT(UnknownVariables(
                  WidgetFlags(), options,
                  {"PATH=/usr/bin", "TEST_WIDGET_PORT=1", "TEST_WIDGET_PROT=2",
                   "TEST_SECRETS=s", "TEST_CLIENT_URL=u", "TEST_TOOL_KEY=k",
                   "TEST_TOOL=t", "TEST_A=1", "TEST_A=2"}),
              ElementsAre("TEST_A", "TEST_TOOL", "TEST_WIDGET_PROT"));
  EXPECT_THAT(UnknownVariables(WidgetFlags(), options, {"HOME=/root"}),
              IsEmpty());
}

TEST_F(ProgramFlagsTest, HelpShowsEveryFlagWithDefaultAndVariable) {
  ProgramFlagsOptions options;
  options.env_prefix = "TEST_";
  options.other_variables = {{"TEST_SECRETS", "Secrets, comma-separated."}};
  const std::string help =
      FlagsHelp("Usage: widget [FLAGS]", WidgetFlags(), options);

  EXPECT_TRUE(absl::StartsWith(help, "Usage: widget [FLAGS]\n\n")) << help;
  EXPECT_THAT(help, HasSubstr("\n  --widget_port\n"
                              "      Port the widgets listen on.\n"
                              "      default: 8080; env: TEST_WIDGET_PORT\n"));
  EXPECT_THAT(help, HasSubstr("      default: \"gizmo\"; env: "
                              "TEST_WIDGET_NAME\n"));
  EXPECT_THAT(help,
              HasSubstr("      default: 30s; env: TEST_WIDGET_TIMEOUT\n"));
  EXPECT_THAT(help, HasSubstr("      default: false; env: "
                              "TEST_WIDGET_VERBOSE\n"));
  EXPECT_THAT(help, HasSubstr("\n  TEST_SECRETS\n"
                              "      Secrets, comma-separated.\n"));
  for (absl::string_view line : absl::StrSplit(help, '\n')) {
    EXPECT_LE(line.size(), 78u) << line;
  }
  EXPECT_THAT(help, HasSubstr("      Time a widget waits; a long help text "
                              "that --help has to wrap over more\n"
                              "      than one line,"));
}

TEST_F(ProgramFlagsTest, OwnFlagsAreThoseOfServerAndClientFiles) {
  EXPECT_TRUE(IsOwnFlagFile("server/main.cc"));
  EXPECT_TRUE(IsOwnFlagFile("../server/main.cc"));
  EXPECT_TRUE(IsOwnFlagFile("client/send_main.cc"));
  EXPECT_FALSE(IsOwnFlagFile("absl/flags/parse.cc"));
  EXPECT_FALSE(IsOwnFlagFile("tests/flags/program_flags_test.cc"));
  // This binary defines its flags under tests/, and links no program.
  EXPECT_THAT(OwnFlags(), IsEmpty());
}

TEST_F(ProgramFlagsTest, HelpIsAskedForBeforeTheEndOfFlags) {
  const auto asks = [](std::vector<std::string> args) {
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    return AsksForHelp(static_cast<int>(argv.size()), argv.data());
  };
  EXPECT_TRUE(asks({"prog", "--help"}));
  EXPECT_TRUE(asks({"prog", "--data_dir=x", "-help"}));
  EXPECT_TRUE(asks({"prog", "--helpshort"}));
  EXPECT_FALSE(asks({"prog"}));
  EXPECT_FALSE(asks({"prog", "--helpfull"}));
  EXPECT_FALSE(asks({"prog", "--", "--help"}));
  EXPECT_FALSE(asks({"prog", "help"}));
}

}  // namespace
}  // namespace fanout
