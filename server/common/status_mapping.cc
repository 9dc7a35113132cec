#include "server/common/status_mapping.h"

#include <string>

namespace fanout {
namespace {

struct Mapping {
  absl::StatusCode code;
  int http_status;
  const char* name;
};

constexpr Mapping kMappings[] = {
    {absl::StatusCode::kOk, 200, "ok"},
    {absl::StatusCode::kCancelled, 499, "cancelled"},
    {absl::StatusCode::kUnknown, 500, "unknown"},
    {absl::StatusCode::kInvalidArgument, 400, "invalid_argument"},
    {absl::StatusCode::kDeadlineExceeded, 504, "deadline_exceeded"},
    {absl::StatusCode::kNotFound, 404, "not_found"},
    {absl::StatusCode::kAlreadyExists, 409, "already_exists"},
    {absl::StatusCode::kPermissionDenied, 403, "permission_denied"},
    {absl::StatusCode::kResourceExhausted, 429, "resource_exhausted"},
    {absl::StatusCode::kFailedPrecondition, 400, "failed_precondition"},
    {absl::StatusCode::kAborted, 409, "aborted"},
    {absl::StatusCode::kOutOfRange, 400, "out_of_range"},
    {absl::StatusCode::kUnimplemented, 501, "unimplemented"},
    {absl::StatusCode::kInternal, 500, "internal"},
    {absl::StatusCode::kUnavailable, 503, "unavailable"},
    {absl::StatusCode::kDataLoss, 500, "data_loss"},
    {absl::StatusCode::kUnauthenticated, 401, "unauthenticated"},
};

const Mapping& Find(absl::StatusCode code) {
  for (const Mapping& mapping : kMappings) {
    if (mapping.code == code) return mapping;
  }
  return kMappings[2];  // unknown
}

}  // namespace

int HttpStatusFor(absl::StatusCode code) { return Find(code).http_status; }

const char* ErrorNameFor(absl::StatusCode code) { return Find(code).name; }

grpc::Status ToGrpcStatus(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

}  // namespace fanout
