// The one table that turns an absl::Status into an HTTP status and a gRPC
// status, so that the two front ends never disagree about an error.

#ifndef FANOUT_SERVER_COMMON_STATUS_MAPPING_H_
#define FANOUT_SERVER_COMMON_STATUS_MAPPING_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace fanout {

// HTTP status for a failed operation with `code` (500 for codes that have
// no closer meaning). kOk maps to 200.
int HttpStatusFor(absl::StatusCode code);

// Lower-case name of `code` for JSON error bodies, e.g. "invalid_argument".
const char* ErrorNameFor(absl::StatusCode code);

// The same status as a grpc::Status (the numeric codes coincide).
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace fanout

#endif  // FANOUT_SERVER_COMMON_STATUS_MAPPING_H_
