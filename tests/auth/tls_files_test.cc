// Tests for the TLS file checks (tls_files.h) and the reading of files that
// hold secrets (protected_file.h), on certificates made for the test.

#include "server/auth/tls_files.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/auth/protected_file.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_certificates.h"

namespace fanout {
namespace {

::testing::AssertionResult HasCodeAndSays(const absl::Status& status,
                                          absl::StatusCode code,
                                          absl::string_view text) {
  if (status.code() != code) {
    return ::testing::AssertionFailure() << "status is " << status;
  }
  if (!absl::StrContains(status.message(), text)) {
    return ::testing::AssertionFailure()
           << "message \"" << status.message() << "\" does not contain \""
           << text << "\"";
  }
  return ::testing::AssertionSuccess();
}

void WriteFile(const std::string& path, const std::string& text, mode_t mode) {
  std::ofstream(path) << text;
  ASSERT_EQ(chmod(path.c_str(), mode), 0);
}

class TlsFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<testing::TestCertificates> made =
        testing::TestCertificates::Create(dir_.path());
    ASSERT_TRUE(made.ok()) << made.status();
    certs_ = *made;
  }

  std::string Path(const std::string& name) const {
    return dir_.path() + "/" + name;
  }

  testing::TempDir dir_;
  testing::TestCertificates certs_;
};

TEST_F(TlsFilesTest, ReadsAMatchingCertificateAndKey) {
  absl::StatusOr<TlsIdentity> identity =
      ReadTlsIdentity(certs_.server_cert, "--cert", certs_.server_key, "--key");

  ASSERT_TRUE(identity.ok()) << identity.status();
  EXPECT_TRUE(absl::StartsWith(identity->certificate_chain,
                               "-----BEGIN CERTIFICATE-----"));
  EXPECT_TRUE(absl::StrContains(identity->private_key, "PRIVATE KEY"));
  EXPECT_EQ(identity->summary.count, 1);
  EXPECT_EQ(identity->summary.subject, "CN=localhost");
  EXPECT_LT(identity->summary.not_before, absl::Now());
  EXPECT_GT(identity->summary.not_after, absl::Now() + absl::Hours(24));
}

TEST_F(TlsFilesTest, ChainWithItsCaCountsBoth) {
  std::ifstream leaf(certs_.server_cert), ca(certs_.ca);
  std::string chain((std::istreambuf_iterator<char>(leaf)),
                    std::istreambuf_iterator<char>());
  chain.append((std::istreambuf_iterator<char>(ca)),
               std::istreambuf_iterator<char>());
  ASSERT_NO_FATAL_FAILURE(WriteFile(Path("chain.pem"), chain, 0644));

  absl::StatusOr<TlsIdentity> identity =
      ReadTlsIdentity(Path("chain.pem"), "--cert", certs_.server_key, "--key");

  ASSERT_TRUE(identity.ok()) << identity.status();
  EXPECT_EQ(identity->summary.count, 2);
  EXPECT_EQ(identity->summary.subject, "CN=localhost");
}

TEST_F(TlsFilesTest, KeyOfAnotherCertificateIsRefusedNamingBoth) {
  absl::StatusOr<TlsIdentity> identity =
      ReadTlsIdentity(certs_.server_cert, "--grpc_tls_cert", certs_.client_key,
                      "--grpc_tls_key");

  EXPECT_TRUE(HasCodeAndSays(identity.status(),
                             absl::StatusCode::kInvalidArgument,
                             "does not belong to the certificate"));
  EXPECT_TRUE(absl::StrContains(identity.status().message(), "--grpc_tls_key"));
  EXPECT_TRUE(
      absl::StrContains(identity.status().message(), certs_.client_key));
  EXPECT_TRUE(
      absl::StrContains(identity.status().message(), certs_.server_cert));
}

TEST_F(TlsFilesTest, MissingFilesAreNotFoundNamingTheFlag) {
  EXPECT_TRUE(HasCodeAndSays(
      ReadTlsIdentity(Path("nope.pem"), "--grpc_tls_cert", certs_.server_key,
                      "--grpc_tls_key")
          .status(),
      absl::StatusCode::kNotFound, "--grpc_tls_cert: no file at"));
  EXPECT_TRUE(HasCodeAndSays(
      ReadTlsIdentity(certs_.server_cert, "--grpc_tls_cert", Path("nope.key"),
                      "--grpc_tls_key")
          .status(),
      absl::StatusCode::kNotFound, "--grpc_tls_key: no file at"));
  EXPECT_TRUE(HasCodeAndSays(
      ReadCaCertificates(Path("nope.pem"), "--grpc_tls_client_ca").status(),
      absl::StatusCode::kNotFound, "--grpc_tls_client_ca"));
}

TEST_F(TlsFilesTest, KeyReadableByOthersIsRefused) {
  ASSERT_EQ(chmod(certs_.server_key.c_str(), 0604), 0);

  EXPECT_TRUE(
      HasCodeAndSays(ReadTlsIdentity(certs_.server_cert, "--grpc_tls_cert",
                                     certs_.server_key, "--grpc_tls_key")
                         .status(),
                     absl::StatusCode::kFailedPrecondition, "chmod o-rwx"));

  // Group access is the administrator's choice.
  ASSERT_EQ(chmod(certs_.server_key.c_str(), 0640), 0);
  EXPECT_TRUE(ReadTlsIdentity(certs_.server_cert, "--grpc_tls_cert",
                              certs_.server_key, "--grpc_tls_key")
                  .ok());
}

TEST_F(TlsFilesTest, FilesWithoutPemAreRefused) {
  ASSERT_NO_FATAL_FAILURE(
      WriteFile(Path("garbage.pem"), "not a certificate\n", 0600));

  EXPECT_TRUE(HasCodeAndSays(
      ReadTlsIdentity(Path("garbage.pem"), "--grpc_tls_cert", certs_.server_key,
                      "--grpc_tls_key")
          .status(),
      absl::StatusCode::kInvalidArgument, "holds no PEM certificate"));
  EXPECT_TRUE(HasCodeAndSays(
      ReadTlsIdentity(certs_.server_cert, "--grpc_tls_cert",
                      Path("garbage.pem"), "--grpc_tls_key")
          .status(),
      absl::StatusCode::kInvalidArgument, "holds no usable PEM private key"));
  // A key where the CA certificates belong.
  EXPECT_TRUE(HasCodeAndSays(
      ReadCaCertificates(certs_.server_key, "--grpc_tls_client_ca").status(),
      absl::StatusCode::kInvalidArgument, "holds no PEM certificate"));
}

TEST_F(TlsFilesTest, DamagedCertificateAfterAGoodOneIsRefused) {
  std::ifstream leaf(certs_.server_cert);
  const std::string good((std::istreambuf_iterator<char>(leaf)),
                         std::istreambuf_iterator<char>());
  ASSERT_NO_FATAL_FAILURE(
      WriteFile(Path("damaged.pem"),
                absl::StrCat(good,
                             "-----BEGIN CERTIFICATE-----\nAAAA\n"
                             "-----END CERTIFICATE-----\n"),
                0644));

  EXPECT_TRUE(HasCodeAndSays(
      ReadCaCertificates(Path("damaged.pem"), "--grpc_tls_client_ca").status(),
      absl::StatusCode::kInvalidArgument, "does not parse"));
}

TEST_F(TlsFilesTest, EncryptedKeyIsRefusedWithoutPrompting) {
  const std::string encrypted = Path("encrypted.key");
  ASSERT_EQ(std::system(absl::StrCat("openssl pkey -in '", certs_.server_key,
                                     "' -aes256 -passout pass:secret -out '",
                                     encrypted, "' 2>/dev/null")
                            .c_str()),
            0);
  ASSERT_EQ(chmod(encrypted.c_str(), 0600), 0);

  EXPECT_TRUE(HasCodeAndSays(
      ReadTlsIdentity(certs_.server_cert, "--grpc_tls_cert", encrypted,
                      "--grpc_tls_key")
          .status(),
      absl::StatusCode::kInvalidArgument, "an encrypted key cannot be used"));
}

TEST(ProtectedFileTest, RefusesFilesOthersMayAccessAndNonRegularOnes) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/secrets";
  ASSERT_NO_FATAL_FAILURE(WriteFile(path, "s3cret\n", 0600));

  absl::StatusOr<std::string> read = ReadProtectedFile(path, "--x");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, "s3cret\n");
  EXPECT_FALSE(OthersMayAccess(path));

  for (mode_t mode : {0604, 0602, 0601}) {
    SCOPED_TRACE(mode);
    ASSERT_EQ(chmod(path.c_str(), mode), 0);
    EXPECT_TRUE(HasCodeAndSays(ReadProtectedFile(path, "--x").status(),
                               absl::StatusCode::kFailedPrecondition,
                               "other users may access it"));
    EXPECT_TRUE(OthersMayAccess(path));
    // Files without secrets may be read by anyone.
    EXPECT_TRUE(ReadPublicFile(path, "--x").ok());
  }

  EXPECT_TRUE(HasCodeAndSays(ReadProtectedFile(dir.path(), "--x").status(),
                             absl::StatusCode::kInvalidArgument,
                             "is not a regular file"));
}

TEST(ProtectedFileTest, RefusesFilesOverTheSizeLimit) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/big";
  ASSERT_NO_FATAL_FAILURE(
      WriteFile(path, std::string(kMaxConfigFileBytes + 1, 'x'), 0600));

  EXPECT_TRUE(HasCodeAndSays(ReadProtectedFile(path, "--x").status(),
                             absl::StatusCode::kInvalidArgument,
                             "is larger than"));
}

}  // namespace
}  // namespace fanout
