#include "server/auth/signature_verifier.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace fanout {
namespace {

constexpr absl::string_view kPrefix = "sha256=";
constexpr size_t kDigestBytes = 32;

}  // namespace

// HMAC-SHA256 under one secret. The context keyed once here is copied for
// each signature: keying it (fetching SHA-256 and hashing the padded key)
// costs more than signing a typical delivery.
class SignatureVerifier::KeyedHmac {
 public:
  explicit KeyedHmac(absl::string_view secret) {
    static EVP_MAC* const hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    keyed_ = EVP_MAC_CTX_new(hmac);
    char sha256[] = "SHA256";
    const OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string("digest", sha256, 0),
        OSSL_PARAM_construct_end()};
    EVP_MAC_init(keyed_, reinterpret_cast<const unsigned char*>(secret.data()),
                 secret.size(), params);
  }
  ~KeyedHmac() { EVP_MAC_CTX_free(keyed_); }

  KeyedHmac(const KeyedHmac&) = delete;
  KeyedHmac& operator=(const KeyedHmac&) = delete;

  // HMAC(timestamp + "." + body) into `digest`, without copying the body.
  // Thread-safe: the keyed context is only read.
  void Sign(absl::string_view timestamp, absl::string_view body,
            unsigned char digest[kDigestBytes]) const {
    EVP_MAC_CTX* context = EVP_MAC_CTX_dup(keyed_);
    EVP_MAC_update(context,
                   reinterpret_cast<const unsigned char*>(timestamp.data()),
                   timestamp.size());
    EVP_MAC_update(context, reinterpret_cast<const unsigned char*>("."), 1);
    EVP_MAC_update(context, reinterpret_cast<const unsigned char*>(body.data()),
                   body.size());
    size_t length = 0;
    EVP_MAC_final(context, digest, &length, kDigestBytes);
    EVP_MAC_CTX_free(context);
  }

 private:
  EVP_MAC_CTX* keyed_ = nullptr;
};

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

const char* SignatureFailureName(SignatureFailure failure) {
  switch (failure) {
    case SignatureFailure::kMissingHeader:
      return "missing_header";
    case SignatureFailure::kMalformed:
      return "malformed";
    case SignatureFailure::kStale:
      return "stale";
    case SignatureFailure::kMismatch:
      return "mismatch";
  }
  return "unknown";
}

std::string SignWebhook(absl::string_view secret, absl::string_view timestamp,
                        absl::string_view body) {
  unsigned char digest[kDigestBytes];
  SignatureVerifier::KeyedHmac(secret).Sign(timestamp, body, digest);
  return absl::StrCat(
      kPrefix, absl::BytesToHexString(absl::string_view(
                   reinterpret_cast<const char*>(digest), kDigestBytes)));
}

std::vector<std::string> ParseSecretsList(absl::string_view text) {
  std::vector<std::string> secrets;
  for (absl::string_view part : absl::StrSplit(text, absl::ByAnyChar(",\n"))) {
    part = absl::StripAsciiWhitespace(part);
    if (!part.empty()) secrets.emplace_back(part);
  }
  return secrets;
}

absl::StatusOr<std::vector<std::string>> ReadSecretsFile(
    const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("no secrets file at ", path));
    }
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot read secrets file ", path, ": ", std::strerror(errno)));
  }
  std::vector<std::string> secrets;
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view secret = absl::StripAsciiWhitespace(line);
    if (secret.empty() || absl::StartsWith(secret, "#")) continue;
    secrets.emplace_back(secret);
  }
  if (secrets.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("secrets file ", path, " holds no secret"));
  }
  return secrets;
}

absl::StatusOr<std::string> CreateSecretsFile(const std::string& path) {
  unsigned char random[32];
  if (RAND_bytes(random, sizeof random) != 1) {
    return absl::InternalError("no random bytes for a secret");
  }
  const std::string secret = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(random), sizeof random));

  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(path, " exists"));
    }
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot create secrets file ", path, ": ", std::strerror(errno)));
  }
  const std::string text =
      absl::StrCat("# Development webhook secret, created by fanout-server.\n",
                   secret, "\n");
  const bool written =
      write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  if (!written) {
    unlink(path.c_str());
    return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  return secret;
}

SignatureVerifier::SignatureVerifier(SignatureVerifierOptions options)
    : tolerance_(options.tolerance),
      clock_(options.clock ? std::move(options.clock)
                           : std::function<absl::Time()>(absl::Now)) {
  for (const std::string& secret : options.secrets) {
    keys_.push_back(std::make_unique<KeyedHmac>(secret));
  }
}

SignatureVerifier::~SignatureVerifier() = default;

absl::Status SignatureVerifier::Fail(SignatureFailure failure,
                                     absl::string_view reason,
                                     SignatureFailure* out) {
  failures_[static_cast<int>(failure)].fetch_add(1);
  if (out != nullptr) *out = failure;
  return absl::UnauthenticatedError(reason);
}

absl::Status SignatureVerifier::Verify(absl::string_view signature,
                                       absl::string_view timestamp,
                                       absl::string_view body,
                                       SignatureFailure* failure) {
  if (signature.empty() || timestamp.empty()) {
    return Fail(SignatureFailure::kMissingHeader,
                "missing signature or timestamp header", failure);
  }

  // Plain decimal seconds only: no sign, no spaces, no fraction, and few
  // enough digits that the value cannot overflow.
  if (timestamp.size() > 15 ||
      !std::all_of(timestamp.begin(), timestamp.end(), absl::ascii_isdigit)) {
    return Fail(SignatureFailure::kMalformed,
                "timestamp header is not plain decimal seconds", failure);
  }
  int64_t seconds = 0;
  for (char c : timestamp) seconds = seconds * 10 + (c - '0');
  const absl::Time sent = absl::FromUnixSeconds(seconds);
  if (absl::AbsDuration(clock_() - sent) > tolerance_) {
    return Fail(SignatureFailure::kStale,
                "timestamp is too far from the receiver's clock", failure);
  }

  if (!absl::StartsWith(signature, kPrefix) ||
      signature.size() != kPrefix.size() + 2 * kDigestBytes) {
    return Fail(SignatureFailure::kMalformed,
                "signature header is not sha256=<64 hex digits>", failure);
  }
  unsigned char given[kDigestBytes];
  const absl::string_view hex = signature.substr(kPrefix.size());
  for (size_t i = 0; i < kDigestBytes; ++i) {
    const int high = HexValue(hex[2 * i]);
    const int low = HexValue(hex[2 * i + 1]);
    if (high < 0 || low < 0) {
      return Fail(SignatureFailure::kMalformed,
                  "signature header is not sha256=<64 hex digits>", failure);
    }
    given[i] = static_cast<unsigned char>(high << 4 | low);
  }

  // Every secret is tried, matching or not, so the time taken does not say
  // which one (or whether any) matched.
  bool matched = false;
  for (const std::unique_ptr<KeyedHmac>& key : keys_) {
    unsigned char expected[kDigestBytes];
    key->Sign(timestamp, body, expected);
    matched |= CRYPTO_memcmp(expected, given, kDigestBytes) == 0;
  }
  if (!matched) {
    return Fail(SignatureFailure::kMismatch, "signature does not match",
                failure);
  }
  return absl::OkStatus();
}

}  // namespace fanout
