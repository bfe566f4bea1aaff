// The JSON-RPC scanner on arbitrary provider answers and worker requests:
// validation, splitting a response into its parts and a batch answer into its
// items, reading methods and rate-limit errors. Each returns an error or
// views into the input, never crashes; the items of a split batch are
// inside the body.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "server/upstream/json_rpc.h"

namespace json_rpc = switchboard::upstream;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const absl::string_view body = text;
  json_rpc::ValidateJson(body).IgnoreError();
  absl::StatusOr<json_rpc::ResponseParts> parts = json_rpc::SplitResponse(body);
  if (parts.ok()) json_rpc::NumericId(*parts);
  absl::StatusOr<std::vector<absl::string_view>> items = json_rpc::SplitBatchItems(body);
  if (items.ok()) {
    for (absl::string_view item : *items) {
      if (item.data() < body.data() || item.data() + item.size() > body.data() + body.size()) {
        std::abort();  // An item that is not a view into the body.
      }
    }
  }
  json_rpc::RequestMethods(body).IgnoreError();
  json_rpc::IsRateLimitError(body);
  return 0;
}
