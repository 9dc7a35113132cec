// Reading the files that hold the service's secrets (access tokens, TLS
// private keys), with the checks that make a wrong set-up fail at start-up
// with a message naming the file, rather than later or not at all.

#ifndef FANOUT_SERVER_AUTH_PROTECTED_FILE_H_
#define FANOUT_SERVER_AUTH_PROTECTED_FILE_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fanout {

// Largest file ReadProtectedFile and ReadPublicFile read.
inline constexpr size_t kMaxConfigFileBytes = 1 << 20;

// Returns the contents of the regular file at `path`, which holds secrets.
// `what` names its role in messages, e.g. "--access_tokens_file".
// Returns NotFound when it does not exist, PermissionDenied when it cannot
// be read, FailedPrecondition when users other than its owner and group
// have any access to it (the message says how to fix that), and
// InvalidArgument when it is not a regular file or is larger than
// kMaxConfigFileBytes.
absl::StatusOr<std::string> ReadProtectedFile(const std::string& path,
                                              const std::string& what);

// As ReadProtectedFile, for a file without secrets (certificates): any
// permissions are accepted.
absl::StatusOr<std::string> ReadPublicFile(const std::string& path,
                                           const std::string& what);

// Returns true if users other than the owner and group of the file at
// `path` have any access to it; false also when it cannot be examined.
bool OthersMayAccess(const std::string& path);

}  // namespace fanout

#endif  // FANOUT_SERVER_AUTH_PROTECTED_FILE_H_
