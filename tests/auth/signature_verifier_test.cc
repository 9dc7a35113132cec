// Signature checks on deliveries: every way a delivery can fail, rotation,
// and the secrets file.

#include "server/auth/signature_verifier.h"

#include <sys/stat.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/temp_dir.h"

namespace fanout {
namespace {

using ::testing::HasSubstr;

constexpr char kBody[] = R"({"id":"wh_1","event":"test.ping"})";

class SignatureVerifierTest : public ::testing::Test {
 protected:
  SignatureVerifier MakeVerifier(std::vector<std::string> secrets) {
    SignatureVerifierOptions options;
    options.secrets = std::move(secrets);
    options.clock = [this] { return now_; };
    return SignatureVerifier(std::move(options));
  }

  std::string Timestamp(absl::Duration offset = absl::ZeroDuration()) const {
    return std::to_string(absl::ToUnixSeconds(now_ + offset));
  }

  absl::Time now_ = absl::FromUnixSeconds(1772370000);
};

TEST_F(SignatureVerifierTest, SignatureMatchesIndependentlyComputedHmac) {
  // Computed with: printf '<timestamp>.<body>' | openssl dgst -sha256
  //   -hmac <secret>
  EXPECT_EQ(SignWebhook("secret", "1700000000", "{}"),
            "sha256=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d"
            "79a5f163");
  EXPECT_EQ(SignWebhook("whsec_test", "1772370000", R"({"id":"wh_1"})"),
            "sha256=22c4fe81c80919fb105870d4e3c90e344bb62693030600ae01ffbb3d"
            "8d6d9847");
}

TEST_F(SignatureVerifierTest, CorrectSignatureIsAccepted) {
  SignatureVerifier verifier = MakeVerifier({"s3cret"});
  const std::string timestamp = Timestamp();
  EXPECT_TRUE(
      verifier.Verify(SignWebhook("s3cret", timestamp, kBody), timestamp, kBody)
          .ok());
}

TEST_F(SignatureVerifierTest, EachFailureHasItsReasonAndCounter) {
  SignatureVerifier verifier = MakeVerifier({"s3cret"});
  const std::string timestamp = Timestamp();
  const std::string good = SignWebhook("s3cret", timestamp, kBody);

  struct Case {
    std::string signature;
    std::string timestamp;
    std::string body;
    SignatureFailure failure;
  };
  const Case cases[] = {
      {"", timestamp, kBody, SignatureFailure::kMissingHeader},
      {good, "", kBody, SignatureFailure::kMissingHeader},
      {good, "-1", kBody, SignatureFailure::kMalformed},
      {good, "1.5", kBody, SignatureFailure::kMalformed},
      {good, " 1772370000", kBody, SignatureFailure::kMalformed},
      {good, "99999999999999999999999", kBody, SignatureFailure::kMalformed},
      {good, Timestamp(absl::Minutes(6)), kBody, SignatureFailure::kStale},
      {good, Timestamp(-absl::Minutes(6)), kBody, SignatureFailure::kStale},
      {"sha1=" + good.substr(7), timestamp, kBody,
       SignatureFailure::kMalformed},
      {good.substr(0, good.size() - 1), timestamp, kBody,
       SignatureFailure::kMalformed},
      {good.substr(0, good.size() - 1) + "g", timestamp, kBody,
       SignatureFailure::kMalformed},
      {good, timestamp, std::string(kBody) + " ", SignatureFailure::kMismatch},
      {SignWebhook("other", timestamp, kBody), timestamp, kBody,
       SignatureFailure::kMismatch},
  };
  int expected[kSignatureFailureCount] = {};
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat(c.signature, " / ", c.timestamp));
    SignatureFailure failure;
    const absl::Status status =
        verifier.Verify(c.signature, c.timestamp, c.body, &failure);
    EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(failure, c.failure);
    EXPECT_THAT(std::string(status.message()),
                ::testing::Not(HasSubstr("s3cret")));
    ++expected[static_cast<int>(c.failure)];
  }
  for (int i = 0; i < kSignatureFailureCount; ++i) {
    EXPECT_EQ(verifier.failures(static_cast<SignatureFailure>(i)),
              static_cast<uint64_t>(expected[i]))
        << SignatureFailureName(static_cast<SignatureFailure>(i));
  }
}

TEST_F(SignatureVerifierTest, TimestampWithinToleranceEitherWayIsAccepted) {
  SignatureVerifier verifier = MakeVerifier({"s3cret"});
  for (absl::Duration offset : {absl::Minutes(-5), absl::Minutes(5)}) {
    const std::string timestamp = Timestamp(offset);
    EXPECT_TRUE(
        verifier
            .Verify(SignWebhook("s3cret", timestamp, kBody), timestamp, kBody)
            .ok());
  }
}

TEST_F(SignatureVerifierTest, UppercaseHexIsTheSameSignature) {
  SignatureVerifier verifier = MakeVerifier({"s3cret"});
  const std::string timestamp = Timestamp();
  std::string signature = SignWebhook("s3cret", timestamp, kBody);
  for (size_t i = 7; i < signature.size(); ++i) {
    signature[i] = static_cast<char>(std::toupper(signature[i]));
  }
  EXPECT_TRUE(verifier.Verify(signature, timestamp, kBody).ok());
}

TEST_F(SignatureVerifierTest, AnyActiveSecretVerifiesDuringRotation) {
  SignatureVerifier verifier = MakeVerifier({"old", "new"});
  const std::string timestamp = Timestamp();
  EXPECT_TRUE(
      verifier.Verify(SignWebhook("old", timestamp, kBody), timestamp, kBody)
          .ok());
  EXPECT_TRUE(
      verifier.Verify(SignWebhook("new", timestamp, kBody), timestamp, kBody)
          .ok());
  EXPECT_FALSE(
      verifier.Verify(SignWebhook("gone", timestamp, kBody), timestamp, kBody)
          .ok());
}

TEST(SecretsFileTest, ReadsSecretsSkippingCommentsAndBlankLines) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/secrets";
  std::ofstream(path) << "# rotation in progress\n\n  old-secret \nnew\n";
  absl::StatusOr<std::vector<std::string>> secrets = ReadSecretsFile(path);
  ASSERT_TRUE(secrets.ok()) << secrets.status();
  EXPECT_EQ(*secrets, (std::vector<std::string>{"old-secret", "new"}));
}

TEST(SecretsFileTest, MissingAndEmptyFilesAreErrors) {
  testing::TempDir dir;
  EXPECT_TRUE(absl::IsNotFound(ReadSecretsFile(dir.path() + "/none").status()));
  const std::string empty = dir.path() + "/empty";
  std::ofstream(empty) << "# nothing\n\n";
  EXPECT_TRUE(absl::IsInvalidArgument(ReadSecretsFile(empty).status()));
}

TEST(SecretsFileTest, CreatedFileIsPrivateReadableAndNeverReplaced) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/secrets";
  absl::StatusOr<std::string> secret = CreateSecretsFile(path);
  ASSERT_TRUE(secret.ok()) << secret.status();
  EXPECT_EQ(secret->size(), 64u);

  struct stat info;
  ASSERT_EQ(stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  absl::StatusOr<std::vector<std::string>> read = ReadSecretsFile(path);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, std::vector<std::string>{*secret});

  EXPECT_TRUE(absl::IsAlreadyExists(CreateSecretsFile(path).status()));
  EXPECT_EQ(*ReadSecretsFile(path), std::vector<std::string>{*secret});
}

TEST(SecretsListTest, SplitsAtCommasAndNewlines) {
  EXPECT_EQ(ParseSecretsList(" a, b\nc,,\n "),
            (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(ParseSecretsList("").empty());
}

}  // namespace
}  // namespace fanout
