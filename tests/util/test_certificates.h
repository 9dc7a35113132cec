// Throw-away certificates for TLS tests, made at test time with the openssl
// command in a directory of the test's own: two unrelated CAs, a server
// certificate for 127.0.0.1 and localhost, and a client certificate from
// each CA. Keys are readable by their owner only, as the server requires.

#ifndef FANOUT_TESTS_UTIL_TEST_CERTIFICATES_H_
#define FANOUT_TESTS_UTIL_TEST_CERTIFICATES_H_

#include <string>

#include "absl/status/statusor.h"

namespace fanout::testing {

struct TestCertificates {
  // Writes the files into `dir`, which must exist. Returns Internal, with
  // openssl's output, when a command fails (or openssl is missing).
  static absl::StatusOr<TestCertificates> Create(const std::string& dir);

  // Paths of PEM files.
  std::string ca;           // The CA that signed server and client.
  std::string server_cert;  // For IP 127.0.0.1 and DNS localhost.
  std::string server_key;
  std::string client_cert;  // CN=test-subscriber, for client auth.
  std::string client_key;
  std::string other_ca;           // A CA unrelated to the first.
  std::string other_client_cert;  // Signed by other_ca.
  std::string other_client_key;
};

}  // namespace fanout::testing

#endif  // FANOUT_TESTS_UTIL_TEST_CERTIFICATES_H_
