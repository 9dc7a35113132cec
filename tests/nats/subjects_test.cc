#include "server/nats/subjects.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/fanout/subscription_filter.h"

namespace fanout {
namespace {

SubscriptionFilter Filter(const std::vector<std::string>& patterns) {
  absl::StatusOr<SubscriptionFilter> filter =
      SubscriptionFilter::Create(patterns);
  EXPECT_TRUE(filter.ok()) << filter.status();
  return filter.ok() ? *filter : SubscriptionFilter();
}

TEST(SubjectsTest, PublishedTypesKeepTheirSegmentsAsTokens) {
  EXPECT_EQ(EventTypeSubject("fanout", "ticket.created"),
            "fanout.ticket.created");
  EXPECT_EQ(EventTypeSubject("a.b", "maintenance_request.created"),
            "a.b.maintenance_request.created");
  EXPECT_EQ(EventTypeSubject("fanout", "ping"), "fanout.ping");
}

TEST(SubjectsTest, CharactersNatsTreatsSpeciallyAreEscaped) {
  // '>' and '*' as tokens are wildcards; '%' is the escape itself.
  EXPECT_EQ(EventTypeSubject("f", "ticket.>"), "f.ticket.%3E");
  EXPECT_EQ(EventTypeSubject("f", "a>b.x"), "f.a%3Eb.x");
  EXPECT_EQ(EventTypeSubject("f", "rate.100%"), "f.rate.100%25");
  EXPECT_EQ(EventTypeSubject("f", "caf\xC3\xA9.open"), "f.caf%C3%A9.open");
  EXPECT_EQ(EventTypeSubject("f", "a/b:c.d"), "f.a%2Fb%3Ac.d");
}

TEST(SubjectsTest, EverySubjectDecodesBackToItsType) {
  for (const std::string type :
       {"ticket.created", "ticket.>", "a>b.x", "rate.100%", "x.y.z.w",
        "caf\xC3\xA9.open", "maintenance_request.created", "ping",
        "%41.b"}) {
    const std::string subject = EventTypeSubject("fanout.v1", type);
    EXPECT_EQ(EventTypeFromSubject("fanout.v1", subject), type) << subject;
  }
}

TEST(SubjectsTest, SubjectsNoEncodingMakesAreNotTypes) {
  EXPECT_EQ(EventTypeFromSubject("fanout", "other.ticket.created"),
            std::nullopt);
  EXPECT_EQ(EventTypeFromSubject("fanout", "fanout"), std::nullopt);
  EXPECT_EQ(EventTypeFromSubject("fanout", "fanoutx.a"), std::nullopt);
  EXPECT_EQ(EventTypeFromSubject("fanout", "fanout.a..b"), std::nullopt);
  // Lower-case hex, an escaped plain byte and a cut escape are never
  // written, so they name no type (each type has one subject).
  EXPECT_EQ(EventTypeFromSubject("fanout", "fanout.a%3e"), std::nullopt);
  EXPECT_EQ(EventTypeFromSubject("fanout", "fanout.%61"), std::nullopt);
  EXPECT_EQ(EventTypeFromSubject("fanout", "fanout.a%3"), std::nullopt);
  // A decoded space is not part of any event type.
  EXPECT_EQ(EventTypeFromSubject("fanout", "fanout.a%20b"), std::nullopt);
}

TEST(SubjectsTest, OneTypeOrOneDomainIsFilteredByJetStream) {
  EXPECT_EQ(FilterSubject("fanout", Filter({"ticket.created"})),
            "fanout.ticket.created");
  EXPECT_EQ(FilterSubject("fanout", Filter({"ticket.*"})), "fanout.ticket.>");
  EXPECT_EQ(FilterSubject("fanout", Filter({"a>b.*"})), "fanout.a%3Eb.>");
  EXPECT_EQ(FilterSubject("fanout", Filter({"ticket.>"})),
            "fanout.ticket.%3E");
}

TEST(SubjectsTest, OtherFiltersTakeTheWholeStream) {
  EXPECT_EQ(FilterSubject("fanout", Filter({})), "fanout.>");
  EXPECT_EQ(FilterSubject("fanout", Filter({"*"})), "fanout.>");
  EXPECT_EQ(FilterSubject("fanout", Filter({"ticket.*", "call.*"})),
            "fanout.>");
  EXPECT_EQ(FilterSubject("fanout", Filter({"ticket.created", "call.*"})),
            "fanout.>");
}

TEST(SubjectsTest, MessageIdsKeepSpacesAndStayDistinct) {
  EXPECT_EQ(MessageId("wh_a1b2-c3:d4"), "wh_a1b2-c3:d4");
  EXPECT_EQ(MessageId(" lead"), "%20lead");
  EXPECT_EQ(MessageId("trail "), "trail%20");
  EXPECT_EQ(MessageId("100%"), "100%25");
  EXPECT_EQ(MessageId("caf\xC3\xA9"), "caf%C3%A9");
  EXPECT_NE(MessageId(" lead"), MessageId("lead"));
  EXPECT_NE(MessageId("%20lead"), MessageId(" lead"));
}

TEST(SubjectsTest, LongestSubjectIsBoundedByTheTypeLimit) {
  const std::string longest(100, '\xE9');  // Each byte escaped.
  EXPECT_EQ(EventTypeSubject("fanout", longest).size(),
            MaxSubjectBytes("fanout", longest.size()));
}

TEST(SubjectsTest, PrefixesAreTokensOfPlainCharacters) {
  EXPECT_TRUE(IsSubjectPrefix("fanout"));
  EXPECT_TRUE(IsSubjectPrefix("staffify.fanout-v1_x"));
  EXPECT_FALSE(IsSubjectPrefix(""));
  EXPECT_FALSE(IsSubjectPrefix("fanout."));
  EXPECT_FALSE(IsSubjectPrefix("a..b"));
  EXPECT_FALSE(IsSubjectPrefix("fanout.>"));
  EXPECT_FALSE(IsSubjectPrefix("fan out"));
}

}  // namespace
}  // namespace fanout
