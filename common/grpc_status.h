// The one conversion between absl::Status and grpc::Status, both directions. Codes map one to one;
// the message is kept.
#ifndef QUARTET_COMMON_GRPC_STATUS_H_
#define QUARTET_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace quartet::common {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace quartet::common

#endif  // QUARTET_COMMON_GRPC_STATUS_H_
