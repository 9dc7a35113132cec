// Tests for SubscriptionFilter: which event types a set of patterns lets
// through, and which patterns are refused.

#include "server/fanout/subscription_filter.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fanout {
namespace {

using ::testing::HasSubstr;

class SubscriptionFilterTest : public ::testing::Test {
 protected:
  // Builds the filter for `patterns`, which must all be well formed.
  static SubscriptionFilter Filter(const std::vector<std::string>& patterns) {
    absl::StatusOr<SubscriptionFilter> filter =
        SubscriptionFilter::Create(patterns);
    EXPECT_TRUE(filter.ok()) << filter.status();
    return filter.ok() ? *filter : SubscriptionFilter();
  }
};

TEST_F(SubscriptionFilterTest, ExactPatternMatchesOnlyThatType) {
  const SubscriptionFilter filter = Filter({"ticket.created"});
  EXPECT_FALSE(filter.matches_all());
  EXPECT_TRUE(filter.Matches("ticket.created"));
  EXPECT_FALSE(filter.Matches("ticket.resolved"));
  EXPECT_FALSE(filter.Matches("ticket.created.v2"));
  EXPECT_FALSE(filter.Matches("ticket.create"));
  EXPECT_FALSE(filter.Matches("Ticket.created"));
  EXPECT_FALSE(filter.Matches("call.created"));
  EXPECT_FALSE(filter.Matches(""));
}

TEST_F(SubscriptionFilterTest, DomainWildcardMatchesEveryTypeOfTheDomain) {
  const SubscriptionFilter filter = Filter({"ticket.*"});
  EXPECT_FALSE(filter.matches_all());
  EXPECT_TRUE(filter.Matches("ticket.created"));
  EXPECT_TRUE(filter.Matches("ticket.note_added"));
  EXPECT_TRUE(filter.Matches("ticket.status_changed"));
  EXPECT_FALSE(filter.Matches("call.completed"));
  EXPECT_FALSE(filter.Matches("maintenance_request.created"));
}

TEST_F(SubscriptionFilterTest, DomainWildcardDoesNotMatchALongerDomain) {
  const SubscriptionFilter filter = Filter({"ticket.*"});
  EXPECT_FALSE(filter.Matches("tickets.created"));
  EXPECT_FALSE(filter.Matches("myticket.created"));
}

TEST_F(SubscriptionFilterTest, DomainWildcardDoesNotMatchTheBareDomain) {
  const SubscriptionFilter filter = Filter({"ticket.*"});
  EXPECT_FALSE(filter.Matches("ticket"));
  EXPECT_FALSE(filter.Matches("ticket_created"));
}

TEST_F(SubscriptionFilterTest, StarMatchesEveryType) {
  const SubscriptionFilter filter = Filter({"*"});
  EXPECT_TRUE(filter.matches_all());
  EXPECT_TRUE(filter.Matches("ticket.created"));
  EXPECT_TRUE(filter.Matches("call.ended"));
  EXPECT_TRUE(filter.Matches("anything"));
}

TEST_F(SubscriptionFilterTest, StarAmongOtherPatternsMatchesEveryType) {
  const SubscriptionFilter filter = Filter({"ticket.created", "*"});
  EXPECT_TRUE(filter.matches_all());
  EXPECT_TRUE(filter.Matches("chat.completed"));
}

TEST_F(SubscriptionFilterTest, EmptyListMatchesEveryType) {
  const SubscriptionFilter filter = Filter({});
  EXPECT_TRUE(filter.matches_all());
  EXPECT_TRUE(filter.Matches("ticket.created"));
  EXPECT_TRUE(filter.Matches("test.ping"));
}

TEST_F(SubscriptionFilterTest, DefaultFilterMatchesEveryType) {
  const SubscriptionFilter filter;
  EXPECT_TRUE(filter.matches_all());
  EXPECT_TRUE(filter.Matches("emergency.escalated"));
}

TEST_F(SubscriptionFilterTest, SeveralPatternsMatchTheirUnion) {
  const SubscriptionFilter filter =
      Filter({"ticket.created", "call.*", "maintenance_request.updated"});
  EXPECT_FALSE(filter.matches_all());
  EXPECT_TRUE(filter.Matches("ticket.created"));
  EXPECT_TRUE(filter.Matches("call.completed"));
  EXPECT_TRUE(filter.Matches("call.recording_available"));
  EXPECT_TRUE(filter.Matches("maintenance_request.updated"));
  EXPECT_FALSE(filter.Matches("ticket.resolved"));
  EXPECT_FALSE(filter.Matches("maintenance_request.created"));
  EXPECT_FALSE(filter.Matches("chat.completed"));
}

TEST_F(SubscriptionFilterTest, PatternsMayUseDigitsUnderscoresAndHyphens) {
  const SubscriptionFilter filter =
      Filter({"maintenance_request.created", "v2-call.*", "a1.b_2-c"});
  EXPECT_TRUE(filter.Matches("maintenance_request.created"));
  EXPECT_TRUE(filter.Matches("v2-call.ended"));
  EXPECT_TRUE(filter.Matches("a1.b_2-c"));
}

TEST_F(SubscriptionFilterTest, PatternsNameAnyTypeIngestAccepts) {
  const SubscriptionFilter filter =
      Filter({"ticket/created", "tické.created", "a>b.*"});
  EXPECT_TRUE(filter.Matches("ticket/created"));
  EXPECT_TRUE(filter.Matches("tické.created"));
  EXPECT_TRUE(filter.Matches("a>b.x"));
  EXPECT_FALSE(filter.Matches("ticket.created"));
}

TEST_F(SubscriptionFilterTest, MalformedPatternIsRejectedByName) {
  for (const std::string pattern :
       {"", "*.created", "ticket.", ".x", "ti cket.created", "ticket.**",
        "a.*.b", ".*", "**", "ticket..created", "ticket.created*",
        "ticket\tcreated", "ticket.created\n", "ticket created"}) {
    SCOPED_TRACE(pattern);
    const absl::StatusOr<SubscriptionFilter> filter =
        SubscriptionFilter::Create({pattern});
    ASSERT_FALSE(filter.ok());
    EXPECT_EQ(filter.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(filter.status().message()),
                HasSubstr("\"" + pattern + "\""));
  }
}

TEST_F(SubscriptionFilterTest, FirstMalformedPatternOfSeveralIsNamed) {
  const absl::StatusOr<SubscriptionFilter> filter =
      SubscriptionFilter::Create({"ticket.*", "call.", "*.x"});
  ASSERT_FALSE(filter.ok());
  EXPECT_EQ(filter.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(filter.status().message()), HasSubstr("\"call.\""));
}

TEST_F(SubscriptionFilterTest, OneMalformedPatternFailsTheWholeList) {
  EXPECT_FALSE(SubscriptionFilter::Create({"*", "ticket."}).ok());
  EXPECT_FALSE(SubscriptionFilter::Create({"ticket.created", ""}).ok());
}

// ------------------------------------------------------ grants

TEST(IntersectPatternsTest, GivesThePatternOfTheCommonTypes) {
  const struct {
    const char* a;
    const char* b;
    std::optional<std::string> both;
  } cases[] = {
      {"*", "*", "*"},
      {"*", "ticket.*", "ticket.*"},
      {"ticket.created", "*", "ticket.created"},
      {"ticket.*", "ticket.*", "ticket.*"},
      {"ticket.*", "call.*", std::nullopt},
      {"ticket.*", "ticket.created", "ticket.created"},
      {"ticket.created", "ticket.*", "ticket.created"},
      {"ticket.*", "ticket", std::nullopt},
      {"ticket.*", "tickets.created", std::nullopt},
      {"a.*", "a.b.c", "a.b.c"},
      {"ticket.created", "ticket.created", "ticket.created"},
      {"ticket.created", "ticket.resolved", std::nullopt},
  };
  for (const auto& [a, b, both] : cases) {
    SCOPED_TRACE(absl::StrCat(a, " & ", b));
    EXPECT_EQ(IntersectPatterns(a, b), both);
    EXPECT_EQ(IntersectPatterns(b, a), both);
  }
}

TEST(IntersectPatternsTest, MatchesWhatBothMatchAndNothingElse) {
  const std::vector<std::string> patterns = {"*",
                                             "ticket.*",
                                             "call.*",
                                             "ticket.created",
                                             "ticket.resolved",
                                             "call.completed",
                                             "ticket",
                                             "a.*",
                                             "a.b.c"};
  const std::vector<std::string> types = {"ticket.created",
                                          "ticket.resolved",
                                          "ticket",
                                          "call.completed",
                                          "call.x.y",
                                          "a.b.c",
                                          "a.b",
                                          "tickets.created",
                                          "x"};
  for (const std::string& a : patterns) {
    for (const std::string& b : patterns) {
      const SubscriptionFilter filter_a = *SubscriptionFilter::Create({a});
      const SubscriptionFilter filter_b = *SubscriptionFilter::Create({b});
      const std::optional<std::string> both = IntersectPatterns(a, b);
      for (const std::string& type : types) {
        SCOPED_TRACE(absl::StrCat(a, " & ", b, " on ", type));
        const bool expected = filter_a.Matches(type) && filter_b.Matches(type);
        const bool actual = both.has_value() &&
                            SubscriptionFilter::Create({*both})->Matches(type);
        EXPECT_EQ(actual, expected);
      }
    }
  }
}

TEST(NarrowToGrantTest, StarAndNoPatternMeanTheWholeGrant) {
  const std::vector<std::string> grant = {"ticket.*", "appointment.booked"};

  EXPECT_THAT(*NarrowToGrant({}, grant),
              ::testing::ElementsAre("ticket.*", "appointment.booked"));
  EXPECT_THAT(*NarrowToGrant({"*"}, grant),
              ::testing::ElementsAre("ticket.*", "appointment.booked"));
}

TEST(NarrowToGrantTest, WiderRequestIsNarrowedNotRefused) {
  EXPECT_THAT(*NarrowToGrant({"ticket.*"}, {"ticket.created"}),
              ::testing::ElementsAre("ticket.created"));
  EXPECT_THAT(*NarrowToGrant({"ticket.*", "ticket.created"},
                             {"ticket.created", "ticket.resolved"}),
              ::testing::ElementsAre("ticket.created", "ticket.resolved"));
  EXPECT_THAT(*NarrowToGrant({"ticket.resolved"}, {"*"}),
              ::testing::ElementsAre("ticket.resolved"));
}

TEST(NarrowToGrantTest, PatternOutsideTheGrantIsPermissionDenied) {
  const absl::StatusOr<std::vector<std::string>> narrowed =
      NarrowToGrant({"ticket.*", "call.*"}, {"ticket.*", "appointment.booked"});

  EXPECT_EQ(narrowed.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(narrowed.status().message(), HasSubstr("\"call.*\""));
  EXPECT_THAT(narrowed.status().message(),
              HasSubstr("ticket.*, appointment.booked"));
  EXPECT_EQ(
      NarrowToGrant({"ticket.created"}, {"ticket.resolved"}).status().code(),
      absl::StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace fanout
