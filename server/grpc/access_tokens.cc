#include "server/grpc/access_tokens.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/auth/protected_file.h"
#include "server/fanout/subscription_filter.h"

namespace fanout {
namespace {

constexpr absl::string_view kDigestPrefix = "sha256:";
constexpr size_t kMaxNameBytes = 64;

bool IsNameCharacter(char c) {
  return absl::ascii_isalnum(c) || c == '_' || c == '-' || c == '.';
}

bool IsTokenCharacter(char c) { return c > ' ' && c < 0x7f; }

bool IsHex(absl::string_view text) {
  return std::all_of(text.begin(), text.end(), absl::ascii_isxdigit);
}

}  // namespace

AccessTokens::Digest AccessTokens::Sha256(absl::string_view text) {
  Digest digest;
  unsigned int size = 0;
  EVP_Digest(text.data(), text.size(), digest.data(), &size, EVP_sha256(),
             nullptr);
  return digest;
}

absl::StatusOr<AccessTokens> AccessTokens::Parse(absl::string_view text,
                                                 absl::string_view source) {
  AccessTokens tokens;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || absl::StartsWith(line, "#")) continue;
    const auto invalid = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, " line ", line_number, ": ", what));
    };

    const std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.size() != 3) {
      return invalid(
          "expected \"<name> <token> <pattern>[,<pattern>...]\", with no "
          "space inside the pattern list");
    }

    const absl::string_view name = fields[0];
    if (name.size() > kMaxNameBytes ||
        !std::all_of(name.begin(), name.end(), IsNameCharacter)) {
      return invalid(absl::StrCat("a name is 1 to ", kMaxNameBytes,
                                  " letters, digits, '_', '-' or '.'"));
    }
    for (const Entry& entry : tokens.entries_) {
      if (entry.grant.name == name) {
        return invalid(absl::StrCat("the name \"", name, "\" is used twice"));
      }
    }

    // The token, or the SHA-256 of it. Never quoted in a message.
    const absl::string_view token = fields[1];
    Entry entry;
    if (absl::StartsWith(token, kDigestPrefix)) {
      const absl::string_view hex = token.substr(kDigestPrefix.size());
      if (hex.size() != 2 * entry.digest.size() || !IsHex(hex)) {
        return invalid("a digest is \"sha256:\" and 64 hex digits");
      }
      const std::string bytes = absl::HexStringToBytes(hex);
      std::copy(bytes.begin(), bytes.end(), entry.digest.begin());
    } else {
      if (token.size() < kMinTokenBytes || token.size() > kMaxTokenBytes ||
          !std::all_of(token.begin(), token.end(), IsTokenCharacter)) {
        return invalid(absl::StrCat(
            "a token is ", kMinTokenBytes, " to ", kMaxTokenBytes,
            " printable ASCII characters (e.g. openssl rand -hex 32)"));
      }
      entry.digest = Sha256(token);
    }
    for (const Entry& other : tokens.entries_) {
      if (other.digest == entry.digest) {
        return invalid(absl::StrCat("the token of \"", name,
                                    "\" is also that of \"", other.grant.name,
                                    "\""));
      }
    }

    entry.grant.name = std::string(name);
    for (absl::string_view pattern : absl::StrSplit(fields[2], ',')) {
      entry.grant.patterns.emplace_back(pattern);
    }
    absl::StatusOr<SubscriptionFilter> valid =
        SubscriptionFilter::Create(entry.grant.patterns);
    if (!valid.ok()) return invalid(valid.status().message());
    tokens.entries_.push_back(std::move(entry));
  }
  if (tokens.entries_.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, " holds no access token"));
  }
  return tokens;
}

absl::StatusOr<AccessTokens> AccessTokens::ReadFile(const std::string& path) {
  absl::StatusOr<std::string> text =
      ReadProtectedFile(path, "--access_tokens_file");
  if (!text.ok()) return text.status();
  return Parse(*text, path);
}

const AccessGrant* AccessTokens::Find(absl::string_view token) const {
  const Digest digest = Sha256(token);
  const AccessGrant* found = nullptr;
  for (const Entry& entry : entries_) {
    const bool same =
        CRYPTO_memcmp(entry.digest.data(), digest.data(), digest.size()) == 0;
    if (same) found = &entry.grant;
  }
  return found;
}

std::vector<AccessGrant> AccessTokens::grants() const {
  std::vector<AccessGrant> grants;
  for (const Entry& entry : entries_) grants.push_back(entry.grant);
  return grants;
}

absl::StatusOr<absl::string_view> ParseBearerToken(absl::string_view value) {
  constexpr absl::string_view kScheme = "bearer";
  if (value.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme) ||
      (value[kScheme.size()] != ' ' && value[kScheme.size()] != '\t')) {
    return absl::InvalidArgumentError(
        "authorization metadata is not \"Bearer <token>\"");
  }
  const absl::string_view token =
      absl::StripAsciiWhitespace(value.substr(kScheme.size()));
  if (token.empty() ||
      !std::all_of(token.begin(), token.end(), IsTokenCharacter)) {
    return absl::InvalidArgumentError(
        "authorization metadata is not \"Bearer <token>\"");
  }
  return token;
}

}  // namespace fanout
