// Who may subscribe, and to what: the access tokens of --access_tokens_file,
// each with a name and the event type patterns its holder may read. A
// subscriber sends its token as gRPC metadata, "authorization: Bearer
// <token>"; FanoutService looks it up here and narrows the subscription to
// the token's grant.
//
// The file, one token per line ('#' starts a comment line; fields are
// separated by spaces or tabs):
//
//   <name> <token> <pattern>[,<pattern>...]
//
//   billing  4f1c...e9             ticket.*,appointment.booked
//   audit    sha256:9b71...3ca7    *
//
// A name is 1 to 64 letters, digits, '_', '-' or '.', and appears once; it
// is what logs and errors show. A token is 16 to 512 printable ASCII
// characters without spaces, or "sha256:" and the 64 hex digits of the
// SHA-256 of the token, so that the file need not hold the token itself.
// Patterns are those of subscription_filter.h. Only SHA-256 digests of the
// tokens are kept in memory, and tokens are never logged.
//
// TODO: the file is read at start-up only, so adding or revoking a token
// needs a restart; reloading it on SIGHUP would not.

#ifndef FANOUT_SERVER_GRPC_ACCESS_TOKENS_H_
#define FANOUT_SERVER_GRPC_ACCESS_TOKENS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fanout {

// What one access token lets its holder read.
struct AccessGrant {
  std::string name;
  std::vector<std::string> patterns;
};

class AccessTokens {
 public:
  // Shortest and longest token accepted, in bytes.
  static constexpr size_t kMinTokenBytes = 16;
  static constexpr size_t kMaxTokenBytes = 512;

  // Parses the text of an access tokens file. `source` names it in
  // messages. Returns InvalidArgument naming the line of the first problem
  // (never quoting a token), or when the text holds no token.
  static absl::StatusOr<AccessTokens> Parse(absl::string_view text,
                                            absl::string_view source);

  // Reads and parses the file at `path`, which must not be accessible to
  // other users (see ReadProtectedFile in server/auth/protected_file.h).
  static absl::StatusOr<AccessTokens> ReadFile(const std::string& path);

  // Returns the grant of `token`, or nullptr when no entry holds it. Every
  // entry is compared, in constant time, whichever matches. Thread-safe.
  const AccessGrant* Find(absl::string_view token) const;

  size_t size() const { return entries_.size(); }
  // Every grant, in file order.
  std::vector<AccessGrant> grants() const;

 private:
  using Digest = std::array<uint8_t, 32>;
  struct Entry {
    Digest digest;
    AccessGrant grant;
  };

  static Digest Sha256(absl::string_view text);

  std::vector<Entry> entries_;
};

// Returns the token of an "authorization" metadata value, "Bearer <token>"
// (the scheme in any letter case); InvalidArgument when `value` has
// another form.
absl::StatusOr<absl::string_view> ParseBearerToken(absl::string_view value);

}  // namespace fanout

#endif  // FANOUT_SERVER_GRPC_ACCESS_TOKENS_H_
