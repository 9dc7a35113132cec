// Tests for ParseStrictJson: what it builds matches Boost.JSON's own parser,
// and what it refuses (repeated keys, invalid UTF-8, deep nesting, trailing
// data) is refused with a message that names the problem.

#include "server/convert/strict_json.h"

#include <boost/json.hpp>
#include <cmath>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace fanout {
namespace {

constexpr size_t kDepth = 32;

::testing::AssertionResult IsRefusedWith(absl::string_view text,
                                         absl::string_view message) {
  const absl::StatusOr<boost::json::value> parsed =
      ParseStrictJson(text, kDepth);
  if (parsed.ok()) {
    return ::testing::AssertionFailure()
           << "parsed as " << boost::json::serialize(*parsed);
  }
  if (parsed.status().code() != absl::StatusCode::kInvalidArgument) {
    return ::testing::AssertionFailure() << "status is " << parsed.status();
  }
  if (!absl::StrContains(parsed.status().message(), message)) {
    return ::testing::AssertionFailure()
           << "message \"" << parsed.status().message()
           << "\" does not contain \"" << message << "\"";
  }
  return ::testing::AssertionSuccess();
}

TEST(StrictJsonTest, BuildsTheSameValueAsBoostJson) {
  const std::string text = R"({"id": "wh_1", "n": -5, "u": 18446744073709551615,
      "d": 0.25, "big": 1e400, "t": true, "z": null, "s": "caf\u00e9 \"q\"",
      "a": [1, [2, {"x": []}], {}], "o": {"k": {"k": "nested keys repeat"}}})";

  const absl::StatusOr<boost::json::value> strict =
      ParseStrictJson(text, kDepth);

  ASSERT_TRUE(strict.ok()) << strict.status();
  EXPECT_EQ(*strict, boost::json::parse(text));
  EXPECT_TRUE(strict->at("n").is_int64());
  EXPECT_TRUE(strict->at("u").is_uint64());
  EXPECT_TRUE(strict->at("d").is_double());
}

TEST(StrictJsonTest, NumbersWithAFractionAreReadCorrectlyRounded) {
  // Boost.JSON 1.81's own parser reads the first as 9007199254740990.
  const absl::StatusOr<boost::json::value> parsed = ParseStrictJson(
      R"([9007199254740991.0, 9007199254740993.0, 0.1, 1e400, -0.0,
          123456789012345678901234567890, 4.9e-324])",
      kDepth);

  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const boost::json::array& numbers = parsed->get_array();
  EXPECT_EQ(numbers[0].get_double(), 9007199254740991.0);
  // Halfway between two doubles: rounded to the even one, 2^53.
  EXPECT_EQ(numbers[1].get_double(), 9007199254740992.0);
  EXPECT_EQ(numbers[2].get_double(), 0.1);
  EXPECT_TRUE(std::isinf(numbers[3].get_double()));
  EXPECT_TRUE(std::signbit(numbers[4].get_double()));
  EXPECT_EQ(numbers[5].get_double(), 1.2345678901234568e29);
  EXPECT_EQ(numbers[6].get_double(), 4.9e-324);
}

TEST(StrictJsonTest, RepeatedKeyIsRefusedNamingItsPath) {
  EXPECT_TRUE(
      IsRefusedWith(R"({"id": "wh_1", "id": "wh_2"})", "duplicate key \"id\""));
  EXPECT_TRUE(IsRefusedWith(R"({"data": {"ticketId": 1, "ticketId": 2}})",
                            "duplicate key \"data.ticketId\""));
  EXPECT_TRUE(IsRefusedWith(
      R"({"data": {"items": [{"a": 1}, {"b": 1, "c": 2, "b": 3}]}})",
      "duplicate key \"data.items[1].b\""));
  EXPECT_TRUE(IsRefusedWith(R"([[], [{"x": 1, "x": 1}]])",
                            "duplicate key \"[1][0].x\""));
}

TEST(StrictJsonTest, KeysAreComparedAfterUnescaping) {
  EXPECT_TRUE(IsRefusedWith(R"({"data": {"ab": 1, "\u0061b": 2}})",
                            "duplicate key \"data.ab\""));
  // The same letters in another case are another key.
  EXPECT_TRUE(ParseStrictJson(R"({"ab": 1, "aB": 2})", kDepth).ok());
}

TEST(StrictJsonTest, EmptyKeyRepeatedIsRefused) {
  EXPECT_TRUE(IsRefusedWith(R"({"": 1, "": 2})", "duplicate key \"\""));
}

TEST(StrictJsonTest, SameKeyInSiblingObjectsIsAllowed) {
  const absl::StatusOr<boost::json::value> parsed = ParseStrictJson(
      R"({"a": {"id": 1}, "b": {"id": 2}, "c": [{"id": 3}, {"id": 4}]})",
      kDepth);

  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->at("c").at(1).at("id"), 4);
}

TEST(StrictJsonTest, ControlCharactersInAQuotedPathAreEscaped) {
  const absl::StatusOr<boost::json::value> parsed =
      ParseStrictJson("{\"a\\nb\": 1, \"a\\nb\": 2}", kDepth);

  ASSERT_FALSE(parsed.ok());
  EXPECT_TRUE(absl::StrContains(parsed.status().message(), R"("a\nb")"))
      << parsed.status();
  EXPECT_FALSE(absl::StrContains(parsed.status().message(), "\n"));
}

TEST(StrictJsonTest, InvalidUtf8IsRefused) {
  // A stray continuation byte, a truncated sequence, an overlong encoding
  // of '/', an encoded surrogate, and a code point beyond U+10FFFF.
  for (const std::string& bad :
       {std::string("\x80"), std::string("\xc3"), std::string("\xc0\xaf"),
        std::string("\xed\xa0\x80"), std::string("\xf4\x90\x80\x80")}) {
    SCOPED_TRACE(absl::CHexEscape(bad));
    EXPECT_TRUE(IsRefusedWith(absl::StrCat(R"({"s": ")", bad, R"("})"),
                              "body is not valid JSON"));
    EXPECT_TRUE(IsRefusedWith(absl::StrCat(R"({")", bad, R"(": 1})"),
                              "body is not valid JSON"));
  }
  // A lone surrogate written as an escape.
  EXPECT_TRUE(IsRefusedWith(R"({"s": "\ud800"})", "body is not valid JSON"));
  // Valid multi-byte UTF-8 is kept as it is.
  const absl::StatusOr<boost::json::value> parsed =
      ParseStrictJson("{\"s\": \"caf\xc3\xa9 \xf0\x9f\x93\x9e\"}", kDepth);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->at("s"), "caf\xc3\xa9 \xf0\x9f\x93\x9e");
}

TEST(StrictJsonTest, NestingDeeperThanTheLimitIsRefused) {
  EXPECT_TRUE(ParseStrictJson("[[[1]]]", 3).ok());
  EXPECT_TRUE(IsRefusedWith(
      std::string(kDepth + 1, '[') + std::string(kDepth + 1, ']'), "too deep"));
}

TEST(StrictJsonTest, NonJsonAndTrailingDataAreRefused) {
  EXPECT_TRUE(IsRefusedWith("", "body is not valid JSON"));
  EXPECT_TRUE(IsRefusedWith(R"({"a": 1} {"a": 2})", "body is not valid JSON"));
  EXPECT_TRUE(IsRefusedWith(R"({"a": 1,})", "body is not valid JSON"));
  EXPECT_TRUE(
      IsRefusedWith(R"({"a": 1 /* no comments */})", "body is not valid JSON"));
  EXPECT_TRUE(IsRefusedWith("{'a': 1}", "body is not valid JSON"));
  // White space after the value is fine.
  EXPECT_TRUE(ParseStrictJson("{\"a\": 1}\r\n\t ", kDepth).ok());
}

}  // namespace
}  // namespace fanout
