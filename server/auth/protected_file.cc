#include "server/auth/protected_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace fanout {
namespace {

absl::Status OpenError(const std::string& path, const std::string& what,
                       int error) {
  if (error == ENOENT) {
    return absl::NotFoundError(absl::StrCat(what, ": no file at ", path));
  }
  return absl::PermissionDeniedError(
      absl::StrCat(what, ": cannot read ", path, ": ", std::strerror(error)));
}

absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     const std::string& what,
                                     bool holds_secrets) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return OpenError(path, what, errno);

  // Checked on the descriptor, so that the file examined is the one read.
  struct stat info;
  absl::Status status;
  if (fstat(fd, &info) != 0) {
    status = OpenError(path, what, errno);
  } else if (!S_ISREG(info.st_mode)) {
    status = absl::InvalidArgumentError(
        absl::StrCat(what, ": ", path, " is not a regular file"));
  } else if (holds_secrets && (info.st_mode & S_IRWXO) != 0) {
    status = absl::FailedPreconditionError(absl::StrCat(
        what, ": ", path,
        " holds secrets but other users may access it; run chmod o-rwx ",
        path));
  } else if (static_cast<size_t>(info.st_size) > kMaxConfigFileBytes) {
    status = absl::InvalidArgumentError(absl::StrCat(
        what, ": ", path, " is larger than ", kMaxConfigFileBytes, " bytes"));
  }
  if (!status.ok()) {
    close(fd);
    return status;
  }

  std::string contents;
  char buffer[8192];
  while (true) {
    const ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      status = OpenError(path, what, errno);
      break;
    }
    if (n == 0) break;
    contents.append(buffer, static_cast<size_t>(n));
    if (contents.size() > kMaxConfigFileBytes) {
      status = absl::InvalidArgumentError(absl::StrCat(
          what, ": ", path, " is larger than ", kMaxConfigFileBytes, " bytes"));
      break;
    }
  }
  close(fd);
  if (!status.ok()) return status;
  return contents;
}

}  // namespace

absl::StatusOr<std::string> ReadProtectedFile(const std::string& path,
                                              const std::string& what) {
  return ReadFile(path, what, /*holds_secrets=*/true);
}

absl::StatusOr<std::string> ReadPublicFile(const std::string& path,
                                           const std::string& what) {
  return ReadFile(path, what, /*holds_secrets=*/false);
}

bool OthersMayAccess(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && (info.st_mode & S_IRWXO) != 0;
}

}  // namespace fanout
