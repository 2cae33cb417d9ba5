// The one conversion between absl::Status and grpc::Status (both directions). Thread-safe.
#ifndef KILN_COMMON_GRPC_STATUS_H_
#define KILN_COMMON_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace kiln::common {

// Same code (the canonical codes are numerically identical) and message.
grpc::Status ToGrpcStatus(const absl::Status& s);
absl::Status FromGrpcStatus(const grpc::Status& s);

}  // namespace kiln::common

#endif  // KILN_COMMON_GRPC_STATUS_H_
