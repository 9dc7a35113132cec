// Tests for AccessTokens: the file format, the refusal of bad lines without
// quoting any token, lookups by token and by its SHA-256, and the Bearer
// metadata form.

#include "server/grpc/access_tokens.h"

#include <sys/stat.h>

#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/temp_dir.h"

namespace fanout {
namespace {

using ::testing::ElementsAre;

constexpr char kBillingToken[] = "billing-token-0123456789";
constexpr char kAuditToken[] = "audit-token-abcdefghijkl";

::testing::AssertionResult IsInvalidSaying(const absl::Status& status,
                                           absl::string_view text) {
  if (status.code() != absl::StatusCode::kInvalidArgument) {
    return ::testing::AssertionFailure() << "status is " << status;
  }
  if (!absl::StrContains(status.message(), text)) {
    return ::testing::AssertionFailure()
           << "message \"" << status.message() << "\" does not contain \""
           << text << "\"";
  }
  return ::testing::AssertionSuccess();
}

TEST(AccessTokensTest, ParsesNamesTokensAndPatterns) {
  absl::StatusOr<AccessTokens> tokens =
      AccessTokens::Parse(absl::StrCat("# name token patterns\n"
                                       "\n"
                                       "billing  ",
                                       kBillingToken,
                                       "\tticket.*,appointment.booked\n"
                                       "  audit ",
                                       kAuditToken, " *  \n"),
                          "tokens.conf");

  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(tokens->size(), 2u);
  const AccessGrant* billing = tokens->Find(kBillingToken);
  ASSERT_NE(billing, nullptr);
  EXPECT_EQ(billing->name, "billing");
  EXPECT_THAT(billing->patterns, ElementsAre("ticket.*", "appointment.booked"));
  const AccessGrant* audit = tokens->Find(kAuditToken);
  ASSERT_NE(audit, nullptr);
  EXPECT_EQ(audit->name, "audit");
  EXPECT_THAT(audit->patterns, ElementsAre("*"));
}

TEST(AccessTokensTest, UnknownOrAlteredTokensAreNotFound) {
  absl::StatusOr<AccessTokens> tokens = AccessTokens::Parse(
      absl::StrCat("billing ", kBillingToken, " ticket.*\n"), "t");
  ASSERT_TRUE(tokens.ok()) << tokens.status();

  EXPECT_EQ(tokens->Find(""), nullptr);
  EXPECT_EQ(tokens->Find("billing"), nullptr);
  EXPECT_EQ(tokens->Find(std::string(kBillingToken) + "x"), nullptr);
  EXPECT_EQ(tokens->Find(std::string(kBillingToken).substr(1)), nullptr);
  EXPECT_NE(tokens->Find(kBillingToken), nullptr);
}

TEST(AccessTokensTest, DigestStandsInForTheToken) {
  // The file holds only the digest; the token still opens it.
  const std::string digest =
      "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  absl::StatusOr<AccessTokens> tokens =
      AccessTokens::Parse(absl::StrCat("abc ", digest, " *\n"), "t");
  ASSERT_TRUE(tokens.ok()) << tokens.status();

  // "abc" is too short to be a token in the file, but its SHA-256 is the
  // well-known one above, and Find hashes whatever it is given.
  const AccessGrant* grant = tokens->Find("abc");
  ASSERT_NE(grant, nullptr);
  EXPECT_EQ(grant->name, "abc");
  EXPECT_EQ(tokens->Find(digest), nullptr);
}

TEST(AccessTokensTest, BadLinesAreRefusedNamingTheLineNotTheToken) {
  const struct {
    std::string text;
    std::string message;
  } cases[] = {
      {absl::StrCat("billing ", kBillingToken, "\n"), "line 1: expected"},
      {absl::StrCat("\n\nbilling ", kBillingToken, " ticket.*, call.*\n"),
       "line 3: expected"},
      {absl::StrCat("bill ing ", kBillingToken, " *\n"), "expected"},
      {absl::StrCat("bill/ing ", kBillingToken, " *\n"), "a name is 1 to 64"},
      {absl::StrCat(std::string(65, 'n'), " ", kBillingToken, " *\n"),
       "a name is 1 to 64"},
      {"billing short-token *\n", "a token is 16 to 512"},
      {absl::StrCat("billing ", std::string(513, 't'), " *\n"),
       "a token is 16 to 512"},
      {"billing sha256:abcd *\n", "a digest is"},
      {absl::StrCat("billing sha256:", std::string(64, 'g'), " *\n"),
       "a digest is"},
      {absl::StrCat("billing ", kBillingToken, " ticket.\n"),
       "malformed event type pattern"},
      {absl::StrCat("billing ", kBillingToken, " ticket.*,,call.*\n"),
       "malformed event type pattern"},
      {absl::StrCat("billing ", kBillingToken, " *\nbilling ", kAuditToken,
                    " *\n"),
       "line 2: the name \"billing\" is used twice"},
      {absl::StrCat("billing ", kBillingToken, " *\naudit ", kBillingToken,
                    " *\n"),
       "line 2: the token of \"audit\" is also that of \"billing\""},
      {"# nothing but comments\n\n", "holds no access token"},
  };
  for (const auto& [text, message] : cases) {
    SCOPED_TRACE(text);
    const absl::StatusOr<AccessTokens> tokens =
        AccessTokens::Parse(text, "tokens.conf");
    EXPECT_TRUE(IsInvalidSaying(tokens.status(), message));
    EXPECT_TRUE(IsInvalidSaying(tokens.status(), "tokens.conf"));
    EXPECT_FALSE(absl::StrContains(tokens.status().message(), kBillingToken));
    EXPECT_FALSE(absl::StrContains(tokens.status().message(), kAuditToken));
  }
}

TEST(AccessTokensTest, FileMustNotBeAccessibleToOthers) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/tokens";
  std::ofstream(path) << "billing " << kBillingToken << " ticket.*\n";
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);

  absl::StatusOr<AccessTokens> tokens = AccessTokens::ReadFile(path);
  EXPECT_EQ(tokens.status().code(), absl::StatusCode::kFailedPrecondition)
      << tokens.status();
  EXPECT_TRUE(
      absl::StrContains(tokens.status().message(), "--access_tokens_file"));

  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  tokens = AccessTokens::ReadFile(path);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_NE(tokens->Find(kBillingToken), nullptr);

  EXPECT_EQ(AccessTokens::ReadFile(path + ".missing").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(AccessTokensTest, BearerTokenIsTakenFromTheAuthorizationValue) {
  for (const char* value :
       {"Bearer abc.DEF-123", "bearer abc.DEF-123", "BEARER  abc.DEF-123 "}) {
    SCOPED_TRACE(value);
    absl::StatusOr<absl::string_view> token = ParseBearerToken(value);
    ASSERT_TRUE(token.ok()) << token.status();
    EXPECT_EQ(*token, "abc.DEF-123");
  }
  for (const char* value :
       {"", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearerabc",
        "abc.DEF-123", "Bearer two words", "Bearer caf\xc3\xa9"}) {
    SCOPED_TRACE(value);
    EXPECT_EQ(ParseBearerToken(value).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace fanout
