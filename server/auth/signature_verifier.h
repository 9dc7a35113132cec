// Checks that a webhook delivery was signed by Staffify: HMAC-SHA256 over
// "<timestamp>.<raw body>" with a shared secret, sent as
// "X-Webhook-Signature: sha256=<hex>" beside "X-Webhook-Timestamp: <unix
// seconds>" (or the X-Staffify- spellings of both).
//
// First step of the ingest path: it runs on the body bytes exactly as
// received, before anything parses them, and nothing from a delivery that
// fails it is kept.

#ifndef FANOUT_SERVER_AUTH_SIGNATURE_VERIFIER_H_
#define FANOUT_SERVER_AUTH_SIGNATURE_VERIFIER_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace fanout {

// Why a delivery was refused; also the label of its counter.
enum class SignatureFailure {
  kMissingHeader = 0,  // No signature or no timestamp header.
  kMalformed,          // A header is not in the documented form.
  kStale,              // The timestamp is too far from our clock.
  kMismatch,           // No active secret produces the signature.
};
inline constexpr int kSignatureFailureCount = 4;

// "missing_header", "malformed", "stale", "mismatch".
const char* SignatureFailureName(SignatureFailure failure);

// Returns the "sha256=<hex>" signature of `body` sent at `timestamp` (unix
// seconds, as the decimal string of the header) under `secret`. For senders
// and tests.
std::string SignWebhook(absl::string_view secret, absl::string_view timestamp,
                        absl::string_view body);

// Reads secrets, one per line; blank lines and lines starting with '#' are
// skipped, surrounding whitespace is trimmed. Returns NotFound if the file
// does not exist, InvalidArgument if it holds no secret.
absl::StatusOr<std::vector<std::string>> ReadSecretsFile(
    const std::string& path);

// Writes a new file at `path` holding one random secret (64 hex digits),
// readable by its owner only, and returns the secret. Fails with
// AlreadyExists rather than replace a file.
absl::StatusOr<std::string> CreateSecretsFile(const std::string& path);

// Splits `text` (the value of an environment variable) into secrets at
// commas and newlines, trimming whitespace and dropping empty ones.
std::vector<std::string> ParseSecretsList(absl::string_view text);

struct SignatureVerifierOptions {
  // Every secret that may have signed a delivery; several while a secret is
  // being rotated. REQUIRES: non-empty, no empty secret.
  std::vector<std::string> secrets;
  // How far the signed timestamp may be from our clock, either way.
  absl::Duration tolerance = absl::Minutes(5);
  // The clock; absl::Now when unset. For tests.
  std::function<absl::Time()> clock;
};

class SignatureVerifier {
 public:
  explicit SignatureVerifier(SignatureVerifierOptions options);
  ~SignatureVerifier();

  SignatureVerifier(const SignatureVerifier&) = delete;
  SignatureVerifier& operator=(const SignatureVerifier&) = delete;

  // Checks one delivery. `signature` and `timestamp` are the header values
  // (empty when absent). Returns OK, or Unauthenticated with a short reason
  // that reveals nothing of the secrets, and sets `*failure` when given.
  // Counts each failure. Thread-safe.
  absl::Status Verify(absl::string_view signature, absl::string_view timestamp,
                      absl::string_view body,
                      SignatureFailure* failure = nullptr);

  // Deliveries refused for `failure` so far.
  uint64_t failures(SignatureFailure failure) const {
    return failures_[static_cast<int>(failure)].load();
  }

 private:
  absl::Status Fail(SignatureFailure failure, absl::string_view reason,
                    SignatureFailure* out);

  class KeyedHmac;
  friend std::string SignWebhook(absl::string_view secret,
                                 absl::string_view timestamp,
                                 absl::string_view body);

  // One per secret.
  std::vector<std::unique_ptr<KeyedHmac>> keys_;
  const absl::Duration tolerance_;
  const std::function<absl::Time()> clock_;
  std::array<std::atomic<uint64_t>, kSignatureFailureCount> failures_{};
};

}  // namespace fanout

#endif  // FANOUT_SERVER_AUTH_SIGNATURE_VERIFIER_H_
