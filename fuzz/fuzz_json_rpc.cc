// The JSON-RPC scanner on arbitrary provider answers, provider
// notifications and worker requests (the front door's POST and WebSocket
// messages): validation, splitting a response into its parts, a batch answer
// into its items, a request and a notification into their members, reading
// methods and rate-limit errors, and quoting text as a JSON string. Each
// returns an error or views into the input, never crashes; every view is
// inside the body, and a quoted string is valid JSON.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "server/upstream/json_rpc.h"

namespace json_rpc = switchboard::upstream;

namespace {

// Aborts unless `view` lies inside `body`.
void ExpectInside(absl::string_view view, absl::string_view body) {
  if (view.data() < body.data() || view.data() + view.size() > body.data() + body.size()) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const absl::string_view body = text;
  json_rpc::ValidateJson(body).IgnoreError();
  if (!json_rpc::ValidateJson(json_rpc::JsonString(body)).ok()) std::abort();
  absl::StatusOr<json_rpc::ResponseParts> parts = json_rpc::SplitResponse(body);
  if (parts.ok()) json_rpc::NumericId(*parts);
  absl::StatusOr<std::vector<absl::string_view>> items = json_rpc::SplitBatchItems(body);
  if (items.ok()) {
    for (absl::string_view item : *items) ExpectInside(item, body);
  }
  absl::StatusOr<json_rpc::RequestParts> request = json_rpc::SplitRequest(body);
  if (request.ok()) {
    if (request->id) ExpectInside(*request->id, body);
    if (request->params) {
      ExpectInside(*request->params, body);
      json_rpc::SharingKey(request->method, *request->params);
    }
  }
  absl::StatusOr<json_rpc::NotificationParts> notification = json_rpc::SplitNotification(body);
  if (notification.ok()) {
    ExpectInside(notification->subscription, body);
    ExpectInside(notification->result, body);
  }
  json_rpc::RequestMethods(body).IgnoreError();
  json_rpc::IsRateLimitError(body);
  return 0;
}
