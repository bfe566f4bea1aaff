#include "server/flow/overflow_policy.h"

namespace switchboard::flow {

absl::string_view OverflowPolicyName(OverflowPolicy policy) {
  switch (policy) {
    case OverflowPolicy::kDropOldest:
      return "drop_oldest";
    case OverflowPolicy::kDropNewest:
      return "drop_newest";
    case OverflowPolicy::kDisconnect:
      return "disconnect";
  }
  return "unknown";
}

}  // namespace switchboard::flow
